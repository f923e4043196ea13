"""FastMaskGenerator against segment-anything's own SamAutomaticMaskGenerator, run on the same model.

The oracle is upstream's ``generate(...)`` (RLE bookkeeping, binary masks decoded from RLEs):
the fast generator must give the same masks, scores and areas in the same order. Random SAM
weights give noisy masks spanning the whole image, which box NMS collapses into one; so most
cases use :class:`LocalisedPredictor`, the tiny SAM's predictor with the encoder skipped and
decoder outputs that are noisy discs near each prompt, which leaves many masks in several crops
and exercises thresholds, both NMS rounds, the crop-edge filter and uncropping.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything import SamAutomaticMaskGenerator, SamPredictor
from tiny_sam import build_tiny_sam

from samiam.proposals.fast_amg import FastMaskGenerator, MaskGenerator

SHAPES = [(96, 160), (200, 120)]
THRESHOLDS = {"zero": (0.0, 0.0), "mid": (0.3, 0.6), "paper": (0.88, 0.92), "none": (0.0, 1.01)}


class LocalisedPredictor(SamPredictor):
    """SamPredictor whose logits are discs near each prompt, roughened by the image; no encoder.

    Logits at pixel p for prompt q and output k: ``gain * (radius_k - |p - centre_k(q)|) +
    4 * (grey(p) - 0.5)``; predicted IoUs are a fixed hash of (q, k) in [0, 1).
    """

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        self.reset_image()
        self.original_size = image.shape[:2]
        self.input_size = self.transform.get_preprocess_shape(*self.original_size, self.transform.target_length)
        self.grey = torch.as_tensor(image.mean(axis=-1) / 255, dtype=torch.float32)
        self.is_image_set = True

    def predict_torch(self, point_coords, point_labels, boxes=None, mask_input=None,
                      multimask_output=True, return_logits=False):
        h, w = self.original_size
        points = point_coords[:, 0, :].float() * torch.tensor([w / self.input_size[1], h / self.input_size[0]])
        k = torch.arange(3, dtype=torch.float32)
        shift = (k[:, None] - 1) * torch.tensor([3.0, -2.0])
        centres = points[:, None, :] + shift[None]  # (B, 3, 2) x, y
        hashed = torch.sin(points[:, None, 0] * 12.9898 + points[:, None, 1] * 78.233 + k * 37.719) * 43758.5453
        iou = hashed - torch.floor(hashed)
        # Outputs 1 and 2 nearly coincide (box NMS removes one); output 0 is empty when its IoU is low.
        radius = min(h, w) * torch.tensor([0.06, 0.2, 0.22]).expand(len(points), 3).clone()
        radius[:, 0] = torch.where(iou[:, 0] < 0.2, -10.0, radius[:, 0])
        gain = 0.5 + 4 * torch.frac(hashed * 7.0).abs()
        ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                                indexing="ij")
        distance = torch.hypot(xs - centres[..., 0, None, None], ys - centres[..., 1, None, None])
        logits = gain[..., None, None] * (radius[..., None, None] - distance) + 4 * (self.grey - 0.5)
        return logits, iou, torch.zeros(len(points), 3, 256, 256)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_tiny_sam().eval()


def image(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8: smooth blobs plus noise, so that masks get ragged edges."""
    rng = np.random.default_rng(seed)
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w]
    grey = 0.5 + 0.25 * np.sin(xs / 7.0 + rng.random() * 6) * np.cos(ys / 5.0) + 0.2 * rng.random(shape)
    return np.repeat(np.clip(grey * 255, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)


def generators(model, oracle_class, localised: bool, **kwargs):
    oracle, fast = oracle_class(model, **kwargs), FastMaskGenerator(model, **kwargs)
    if localised:
        oracle.predictor = LocalisedPredictor(model)
        fast.predictor = LocalisedPredictor(model)
    return oracle, fast


def assert_same_as_upstream(oracle, fast, picture: np.ndarray) -> list[dict]:
    with torch.inference_mode():
        records = oracle.generate(picture)
        got = fast.generate_arrays(picture)
    assert got.masks.shape == (len(records), *picture.shape[:2]) and got.masks.dtype == bool
    assert got.scores.dtype == np.float32 and got.areas.shape == (len(records),)
    for index, record in enumerate(records):
        assert np.array_equal(got.masks[index], record["segmentation"]), f"mask {index} differs"
    np.testing.assert_allclose(got.scores, [r["predicted_iou"] for r in records], rtol=0, atol=1e-7)
    assert got.areas.tolist() == [r["area"] for r in records]
    return records


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("crop_n_layers", [0, 1])
@pytest.mark.parametrize("points", [4, 8])
@pytest.mark.parametrize("thresholds", sorted(THRESHOLDS))
def test_same_masks_scores_and_order_as_upstream(model, shape, crop_n_layers, points, thresholds):
    iou, stability = THRESHOLDS[thresholds]
    # Upstream fails when no mask survives in any crop; MaskGenerator is upstream with that fixed.
    oracle_class = MaskGenerator if crop_n_layers else SamAutomaticMaskGenerator
    oracle, fast = generators(model, oracle_class, localised=True, points_per_side=points,
                              crop_n_layers=crop_n_layers, crop_n_points_downscale_factor=2,
                              pred_iou_thresh=iou, stability_score_thresh=stability)
    records = assert_same_as_upstream(oracle, fast, image(shape, seed=points))
    if thresholds == "none":
        assert records == []
    elif thresholds != "paper":
        assert len(records) > 1  # the comparison covers ordering
    if thresholds == "zero" and crop_n_layers:
        assert len({tuple(r["crop_box"]) for r in records}) > 1  # uncropping and the crop NMS ran


def test_thresholds_remove_some_masks_but_not_all(model):
    kwargs = {"points_per_side": 8, "crop_n_layers": 1, "crop_n_points_downscale_factor": 2}
    counts = {}
    for name in ("zero", "mid", "paper"):
        iou, stability = THRESHOLDS[name]
        fast = generators(model, SamAutomaticMaskGenerator, localised=True, pred_iou_thresh=iou,
                          stability_score_thresh=stability, **kwargs)[1]
        with torch.inference_mode():
            counts[name] = len(fast.generate_arrays(image(SHAPES[1])).masks)
    assert counts["zero"] > counts["mid"] > 0 and counts["zero"] > counts["paper"] > 0


def test_small_region_clean_up_takes_upstreams_path(model):
    picture = image(SHAPES[0])
    oracle, fast = generators(model, SamAutomaticMaskGenerator, localised=True, points_per_side=4,
                              pred_iou_thresh=0.0, stability_score_thresh=0.0, min_mask_region_area=30)
    records = assert_same_as_upstream(oracle, fast, picture)
    plain = generators(model, SamAutomaticMaskGenerator, localised=True, points_per_side=4,
                       pred_iou_thresh=0.0, stability_score_thresh=0.0)[1]
    with torch.inference_mode():
        unclean = plain.generate_arrays(picture)
    assert len(records) != len(unclean.masks) or not np.array_equal(np.stack([r["segmentation"] for r in records]),
                                                                     unclean.masks)


@pytest.mark.slow
def test_same_as_upstream_with_the_real_tiny_sam(model):
    # Without NMS, as random weights give masks whose boxes all cover the whole image.
    oracle, fast = generators(model, MaskGenerator, localised=False, points_per_side=4, crop_n_layers=1,
                              crop_n_points_downscale_factor=2, pred_iou_thresh=0.0,
                              stability_score_thresh=0.0, box_nms_thresh=1.0, crop_nms_thresh=1.0)
    records = assert_same_as_upstream(oracle, fast, image((64, 112)))
    assert len(records) > 1
