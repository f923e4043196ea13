"""The optional extra ``samiam[sam]``: torch, torchvision and segment-anything.

samiam imports them only when SAM or a torch embedder is asked for, so the weight-free path, the
web tier, ``import``, ``evaluate`` and ``synth`` run without them. :func:`require` turns their
absence into a :class:`~samiam.errors.SamSupportMissingError` that says how to install them.
"""

from __future__ import annotations

import importlib

from samiam.errors import SamSupportMissingError

EXTRA = "pip install 'samiam[sam]'"

SAM_MODULES = ("torch", "torchvision", "segment_anything")
"""What SAM needs (``samiam.proposals.fast_amg`` imports all three)."""
TORCH_MODULES = ("torch", "torchvision")
"""What a torch embedder (ResNet-18) needs."""


def require(purpose: str, modules: tuple[str, ...] = SAM_MODULES) -> None:
    """Import ``modules``; raises :class:`SamSupportMissingError` naming ``purpose`` (e.g. "the SAM
    proposer") and the first one missing."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            raise SamSupportMissingError(
                f"{purpose} needs {name}, which is not installed (the SAM extra: {EXTRA})") from None
