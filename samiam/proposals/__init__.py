"""Mask proposers: SAM's automatic mask generator, or a weight-free classical fallback.

>>> from samiam.settings import ProposalSettings
>>> proposer = make_proposer(ProposalSettings(proposer="classical"))
>>> proposer.name
'classical'
"""

from __future__ import annotations

import logging

from samiam.errors import SettingsError
from samiam.proposals.base import Proposals, Proposer
from samiam.proposals.checkpoints import checkpoint_path, download_command
from samiam.proposals.classical import ClassicalProposer
from samiam.proposals.sam import SamProposer
from samiam.settings import ProposalSettings

__all__ = ["ClassicalProposer", "Proposals", "Proposer", "SamProposer", "make_proposer"]

log = logging.getLogger(__name__)


def make_proposer(settings: ProposalSettings) -> Proposer:
    """The proposer named by ``settings.proposer``: ``sam``, ``classical`` or ``auto``.

    ``auto`` is SAM when its checkpoint file exists, else the classical proposer with a warning
    (SAM's own errors, e.g. a bad checksum, still propagate once a file is there).
    """
    if settings.proposer == "sam":
        return SamProposer(settings)
    if settings.proposer == "classical":
        return ClassicalProposer(settings)
    if settings.proposer == "auto":
        path = checkpoint_path(settings)
        if path.is_file():
            return SamProposer(settings)
        log.warning("no SAM %s checkpoint found at %s: using the weight-free classical proposer, whose "
                    "masks are weaker. Fetch the checkpoint with: %s", settings.model_type, path,
                    download_command(settings.model_type, settings.model_dir))
        return ClassicalProposer(settings)
    raise SettingsError(f"unknown proposals.proposer {settings.proposer!r}; use 'sam', 'classical' or 'auto'")
