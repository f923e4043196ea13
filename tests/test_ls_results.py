import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from label_studio_sdk.converter.brush import decode_rle, mask2rle

from samiam.errors import AnnotationError
from samiam.labelstudio.config import BrushConfig
from samiam.labelstudio.results import mask_to_rle, materials_from_results, predictions_from_segmentation

CONFIG = BrushConfig(from_name="tag", to_name="image", value_key="image", labels=("A", "B", "C"))


def _sdk_rle(mask: np.ndarray) -> list[int]:
    return mask2rle(mask.astype(np.uint8) * 255)


@st.composite
def masks(draw):
    h = draw(st.integers(1, 64))
    w = draw(st.integers(1, 64))
    kind = draw(st.sampled_from(["noise", "blobs", "empty", "full"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "noise":
        return rng.random((h, w)) < draw(st.floats(0.05, 0.95))
    if kind == "empty":
        return np.zeros((h, w), bool)
    if kind == "full":
        return np.ones((h, w), bool)
    mask = np.zeros((h, w), bool)
    for _ in range(draw(st.integers(1, 4))):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        mask[y0:y0 + rng.integers(1, h + 1), x0:x0 + rng.integers(1, w + 1)] = True
    return mask


@settings(max_examples=300, deadline=None)
@given(masks())
def test_rle_equals_the_sdk_encoder_and_decodes_back(mask):
    rle = mask_to_rle(mask)
    assert rle == _sdk_rle(mask)
    flat = decode_rle(rle)
    assert np.array_equal(flat, np.repeat(mask.ravel(), 4).astype(np.uint8) * 255)


@pytest.mark.parametrize("run", [1, 2, 3, 4, 5, 64, 65, 16383, 16384, 16385, 32768, 32769, 40000])
def test_long_runs_split_like_the_sdk(run):
    # 4 values per pixel: runs of 4*run values cross the 3/4/8/16-bit fields and the 2**16 chunking.
    mask = np.zeros((1, run + 3), bool)
    mask[0, 1:run + 1] = True
    assert mask_to_rle(mask) == _sdk_rle(mask)
    assert mask_to_rle(mask.T) == _sdk_rle(mask.T)


def test_rle_is_bytes_and_refuses_non_2d():
    rle = mask_to_rle(np.eye(7, dtype=bool))
    assert all(isinstance(b, int) and 0 <= b <= 255 for b in rle)
    with pytest.raises(ValueError, match="2-D"):
        mask_to_rle(np.zeros((2, 3, 4), bool))


def test_predictions_one_region_per_material_in_order():
    materials = np.zeros((2, 5, 8), bool)
    materials[0, :3] = True          # 24 px
    materials[1, 3:, :4] = True      # 8 px
    scores = np.array([0.9, 0.5])
    prediction = predictions_from_segmentation(materials, scores, CONFIG, "samiam-test")
    assert prediction["model_version"] == "samiam-test"
    assert prediction["score"] == pytest.approx((0.9 * 24 + 0.5 * 8) / 32)
    regions = prediction["result"]
    assert [r["value"]["brushlabels"] for r in regions] == [["A"], ["B"]]
    assert [r["score"] for r in regions] == [0.9, 0.5]
    assert len({r["id"] for r in regions}) == 2
    for region, mask in zip(regions, materials):
        assert region["from_name"] == "tag" and region["to_name"] == "image"
        assert region["type"] == "brushlabels" and region["image_rotation"] == 0
        assert (region["original_width"], region["original_height"]) == (8, 5)
        assert region["value"]["format"] == "rle"
        assert region["value"]["rle"] == _sdk_rle(mask)
    decoded, labels = materials_from_results(regions)
    assert np.array_equal(decoded, materials)
    assert labels == ["A", "B"]


def test_predictions_without_materials_score_zero():
    prediction = predictions_from_segmentation(np.zeros((0, 4, 4), bool), np.zeros(0), CONFIG, "v")
    assert prediction == {"result": [], "score": 0.0, "model_version": "v"}


def test_more_materials_than_labels_is_refused():
    with pytest.raises(ValueError, match="only 3 labels"):
        predictions_from_segmentation(np.ones((4, 2, 2), bool), np.ones(4), CONFIG, "v")


def test_materials_from_results_skips_other_results_and_checks_sizes():
    region = predictions_from_segmentation(np.ones((1, 2, 3), bool), np.ones(1), CONFIG, "v")["result"][0]
    choice = {"type": "choices", "value": {"choices": ["x"]}}
    masks, labels = materials_from_results([choice, region])
    assert masks.shape == (1, 2, 3) and masks.all() and labels == ["A"]
    other = dict(region, original_width=2, original_height=3)
    with pytest.raises(AnnotationError, match="image size"):
        materials_from_results([region, other])
