"""Tiny, randomly initialised SAM checkpoints for tests (about 4.8 M parameters, 19 MB).

They are built with segment-anything's own classes and loaded through the real registry path:
:func:`install_tiny_sam` swaps ``sam_model_registry[model_type]`` for a builder of the tiny
size and enters the file's true SHA-256 in samiam's checkpoint table, so that
``SamProposer`` finds, verifies, ``torch.load``-s and runs it exactly as it would a real one.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from pathlib import Path

import torch
from segment_anything import sam_model_registry
from segment_anything.build_sam import _build_sam

from samiam.proposals import checkpoints

TINY_SIZES = {"encoder_embed_dim": 32, "encoder_depth": 2, "encoder_num_heads": 2,
              "encoder_global_attn_indexes": [1]}
TINY_MODEL_TYPE = "vit_b"
"""The registry entry the tiny builder replaces (its real builder has another size)."""


def build_tiny_sam(checkpoint: str | None = None):
    """A tiny ``Sam`` model; with ``checkpoint`` its weights are ``torch.load``-ed from that file."""
    return _build_sam(**TINY_SIZES, checkpoint=checkpoint)


def save_tiny_checkpoint(directory: Path, seed: int = 0, model_type: str = TINY_MODEL_TYPE) -> Path:
    """Save a tiny SAM's ``state_dict()`` under the official file name of ``model_type``."""
    torch.manual_seed(seed)
    path = Path(directory) / checkpoints.OFFICIAL_CHECKPOINTS[model_type].file_name
    torch.save(build_tiny_sam().state_dict(), path)
    return path


def install_tiny_sam(monkeypatch, path: Path, model_type: str = TINY_MODEL_TYPE) -> None:
    """Make ``model_type`` mean the tiny SAM, with ``path``'s own hash and size as the official ones."""
    monkeypatch.setitem(sam_model_registry, model_type, functools.partial(_build_sam, **TINY_SIZES))
    entry = dataclasses.replace(checkpoints.OFFICIAL_CHECKPOINTS[model_type],
                                sha256=hashlib.sha256(Path(path).read_bytes()).hexdigest(),
                                size=Path(path).stat().st_size)
    monkeypatch.setitem(checkpoints.OFFICIAL_CHECKPOINTS, model_type, entry)


def tiny_sam_settings(model_dir: Path, **proposals):
    """Engine settings that load the tiny SAM (installed with :func:`install_tiny_sam`) from
    ``model_dir`` on the CPU; ``proposals`` sets more ``proposals.*`` fields by name."""
    from samiam.settings import Settings

    return Settings().replace({
        "proposals.proposer": "sam", "proposals.model_type": TINY_MODEL_TYPE,
        "proposals.model_dir": str(model_dir), "proposals.device": "cpu",
        **{f"proposals.{name}": value for name, value in proposals.items()}})
