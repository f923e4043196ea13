"""SAM v1's automatic mask generator ("SAM+" in the paper) as a :class:`Proposer`."""

from __future__ import annotations

import logging
import pickle
import zipfile
from pathlib import Path

import numpy as np

from samiam import sam_extra
from samiam.errors import CheckpointError, SettingsError
from samiam.io import Micrograph
from samiam.proposals.base import Proposals
from samiam.proposals.checkpoints import ensure_checkpoint
from samiam.settings import ProposalSettings

log = logging.getLogger(__name__)


def resolve_device(name: str) -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a GPU, else ``"cpu"``; other names are checked.

    Raises :class:`SettingsError` for a malformed name or a CUDA device torch cannot use.
    """
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise SettingsError(f"proposals.device {name!r} is not a torch device: {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SettingsError(f"proposals.device is {name!r} but torch sees no CUDA GPU; use 'auto' or 'cpu'")
    return name


class SamProposer:
    """Masks from ``SamAutomaticMaskGenerator`` with every knob taken from :class:`ProposalSettings`.

    The checkpoint is found, verified and loaded once, through
    ``segment_anything.sam_model_registry[settings.model_type]``. Without the SAM extra it raises
    :class:`~samiam.errors.SamSupportMissingError`.
    """

    def __init__(self, settings: ProposalSettings):
        sam_extra.require("the SAM proposer (proposals.proposer=sam)")
        from samiam.proposals.fast_amg import FastMaskGenerator

        deepest = settings.points_per_side // settings.crop_n_points_downscale_factor ** settings.crop_n_layers
        if deepest < 1:
            raise SettingsError(
                f"proposals.points_per_side={settings.points_per_side} leaves no prompt in crop layer "
                f"{settings.crop_n_layers} (divided by crop_n_points_downscale_factor="
                f"{settings.crop_n_points_downscale_factor} per layer); raise it or use fewer crop layers")
        self.settings = settings
        self.name = f"sam-{settings.model_type}"
        self.device = resolve_device(settings.device)
        self.checkpoint = ensure_checkpoint(settings)
        self.model = load_sam(settings.model_type, self.checkpoint).to(self.device)
        """The loaded ``Sam`` module (the interactive predictor shares it)."""
        self._generator = FastMaskGenerator(
            self.model,
            points_per_side=settings.points_per_side,
            points_per_batch=settings.points_per_batch,
            pred_iou_thresh=settings.pred_iou_thresh,
            stability_score_thresh=settings.stability_score_thresh,
            crop_n_layers=settings.crop_n_layers,
            crop_n_points_downscale_factor=settings.crop_n_points_downscale_factor,
            min_mask_region_area=settings.min_mask_region_area,
        )
        log.info("loaded SAM %s from %s on %s", settings.model_type, self.checkpoint, self.device)

    def propose(self, micrograph: Micrograph) -> Proposals:
        """Masks ``(N, H, W) bool`` and SAM's ``predicted_iou`` (clipped to [0, 1]) as scores.

        The masks are exactly ``SamAutomaticMaskGenerator.generate``'s, in its order, computed
        without its per-mask RLE bookkeeping (:mod:`samiam.proposals.fast_amg`). Masks without
        pixels (SAM keeps them when its thresholds are low) are dropped.
        """
        import torch

        with torch.inference_mode():
            return as_proposals(self._generator.generate_arrays(micrograph.rgb))


def as_proposals(generated) -> Proposals:
    """A generator's :class:`~samiam.proposals.fast_amg.GeneratedMasks` without its empty masks,
    scores clipped to [0, 1]."""
    keep = generated.areas > 0
    return Proposals(masks=generated.masks[keep], scores=np.clip(generated.scores[keep], 0.0, 1.0))


def load_sam(model_type: str, checkpoint: Path):
    """``sam_model_registry[model_type](checkpoint=...)``, with load failures as :class:`CheckpointError`."""
    from segment_anything import sam_model_registry

    if model_type not in sam_model_registry:
        raise SettingsError(f"unknown SAM model type {model_type!r}; "
                            f"known: {', '.join(sorted(sam_model_registry))}")
    try:
        return sam_model_registry[model_type](checkpoint=str(checkpoint))
    except RuntimeError as error:
        if "state_dict" in str(error):
            raise CheckpointError(
                f"{checkpoint} does not fit SAM model type {model_type!r} (its tensor names or shapes "
                f"differ): set proposals.model_type to the type the checkpoint was made for "
                f"({', '.join(sorted(sam_model_registry))})") from None
        raise CheckpointError(_unreadable(checkpoint, error)) from None
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, KeyError, TypeError,
            AttributeError) as error:
        raise CheckpointError(_unreadable(checkpoint, error)) from None


def _unreadable(checkpoint: Path, error: Exception) -> str:
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    return (f"cannot read {checkpoint} as a PyTorch SAM checkpoint (corrupt, truncated or not a "
            f"state dict): {reason}")
