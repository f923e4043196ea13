"""Mask proposers: SAM's automatic mask generator, or a weight-free classical fallback.

>>> from samiam.settings import ProposalSettings
>>> proposer = make_proposer(ProposalSettings(proposer="classical"))
>>> proposer.name
'classical'
"""

from __future__ import annotations

import logging

from samiam import sam_extra
from samiam.errors import SamSupportMissingError, SettingsError
from samiam.proposals.base import Proposals, Proposer
from samiam.proposals.checkpoints import checkpoint_path, download_command
from samiam.proposals.classical import ClassicalProposer
from samiam.proposals.sam import SamProposer
from samiam.settings import ProposalSettings

__all__ = ["ClassicalProposer", "Proposals", "Proposer", "SamProposer", "make_proposer"]

log = logging.getLogger(__name__)


def make_proposer(settings: ProposalSettings) -> Proposer:
    """The proposer named by ``settings.proposer``: ``sam``, ``classical`` or ``auto``.

    ``auto`` is SAM when its checkpoint file exists and the SAM extra (torch, segment-anything)
    is installed, else the classical proposer with a warning (SAM's own errors, e.g. a bad
    checksum, still propagate once both are there). ``sam`` without the extra raises
    :class:`~samiam.errors.SamSupportMissingError`.
    """
    if settings.proposer == "sam":
        return SamProposer(settings)
    if settings.proposer == "classical":
        return ClassicalProposer(settings)
    if settings.proposer == "auto":
        path = checkpoint_path(settings)
        if not path.is_file():
            return _classical_instead(settings, f"no SAM {settings.model_type} checkpoint found at {path}",
                                      f" Fetch the checkpoint with: "
                                      f"{download_command(settings.model_type, settings.model_dir)}")
        try:
            sam_extra.require(f"the SAM checkpoint {path} was found, but SAM")
        except SamSupportMissingError as error:
            return _classical_instead(settings, str(error))
        return SamProposer(settings)
    raise SettingsError(f"unknown proposals.proposer {settings.proposer!r}; use 'sam', 'classical' or 'auto'")


def _classical_instead(settings: ProposalSettings, reason: str, advice: str = "") -> ClassicalProposer:
    """The classical proposer, after a warning saying why SAM is not used."""
    log.warning("%s: using the weight-free classical proposer, whose masks are weaker.%s", reason, advice)
    return ClassicalProposer(settings)
