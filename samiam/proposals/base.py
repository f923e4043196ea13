"""What every mask proposer returns, and the protocol it follows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from samiam import masks as masklib
from samiam.errors import MaskSetError
from samiam.io import Micrograph


@dataclass(frozen=True)
class Proposals:
    """Candidate masks for one image.

    masks: (N, H, W) bool, possibly overlapping (SAM) or disjoint (classical); N may be 0.
    scores: (N,) float32 in [0, 1], the proposer's confidence in each mask.
    """

    masks: np.ndarray
    scores: np.ndarray

    def __post_init__(self):
        masks = masklib.as_mask_stack(self.masks)
        scores = np.asarray(self.scores, np.float32)
        if scores.shape != (len(masks),):
            raise MaskSetError(f"scores have shape {scores.shape}, expected ({len(masks)},)")
        object.__setattr__(self, "masks", masks)
        object.__setattr__(self, "scores", scores)

    @classmethod
    def empty(cls, shape: tuple[int, int]) -> Proposals:
        """No masks for an image of ``shape`` (H, W): ``(0, H, W)`` masks, ``(0,)`` scores."""
        return cls(np.zeros((0, *shape), bool), np.zeros(0, np.float32))


class Proposer(Protocol):
    """Turns a micrograph into candidate masks. Models are loaded in ``__init__``, once."""

    name: str
    """Short identifier recorded with results, e.g. ``"sam-vit_l"`` or ``"classical"``."""

    def propose(self, micrograph: Micrograph) -> Proposals:
        """Masks of ``micrograph`` (shape ``micrograph.shape``)."""
        ...
