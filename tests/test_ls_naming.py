"""The Label Studio side of naming: annotations -> masks, learned names -> region labels, versions."""

from __future__ import annotations

import numpy as np
import pytest
from label_studio_sdk.converter.brush import mask2rle

from samiam.booster.prototypes import LabelPrototype, Prototypes
from samiam.errors import AnnotationError
from samiam.labelstudio.config import BrushConfig
from samiam.labelstudio.results import (
    annotation_materials,
    predictions_from_segmentation,
    region_labels,
    versioned,
)

CONFIG = BrushConfig(from_name="tag", to_name="image", value_key="image", labels=("SrTiO3", "Ge", "Pt/C"))


def _brush(mask: np.ndarray, label: str, from_name: str = "tag", **changes) -> dict:
    """A brush result as Label Studio stores an annotator's stroke (RLE by label-studio-sdk)."""
    result = {"id": label[:3], "from_name": from_name, "to_name": "image", "type": "brushlabels",
              "original_width": mask.shape[1], "original_height": mask.shape[0], "image_rotation": 0,
              "value": {"format": "rle", "rle": mask2rle(mask.astype(np.uint8) * 255), "brushlabels": [label]}}
    value = changes.pop("value", {})
    return {**result, **changes, "value": {**result["value"], **value}}


def _regions() -> np.ndarray:
    masks = np.zeros((3, 12, 16), bool)
    masks[0, :4] = True
    masks[1, 4:8, :9] = True
    masks[2, 8:, 3:] = True
    return masks


def test_annotation_decodes_sdk_rle_merges_regions_of_one_label_in_config_order():
    masks = _regions()
    results = [_brush(masks[2], "Ge"), _brush(masks[0], "SrTiO3"), _brush(masks[1], "Ge"),
               {"type": "choices", "value": {"choices": ["ok"]}, "from_name": "quality"},
               _brush(masks[1], "Other", from_name="another_brush")]
    decoded, names = annotation_materials(results, CONFIG, shape=(12, 16))
    assert names == ("SrTiO3", "Ge")
    assert np.array_equal(decoded, np.stack([masks[0], masks[1] | masks[2]]))


def test_annotation_without_brush_results_is_empty():
    decoded, names = annotation_materials([], CONFIG, shape=(12, 16))
    assert decoded.shape == (0, 12, 16) and names == ()


@pytest.mark.parametrize("results, problem", [
    ({"result": []}, "list of objects"),
    ([_brush(_regions()[0], "Quartz")], "not one of the config's"),
    ([_brush(_regions()[0], "Ge", value={"brushlabels": []})], "no label"),
    ([_brush(_regions()[0], "Ge", value={"rle": "abc"})], "list of bytes"),
    ([_brush(_regions()[0], "Ge", value={"rle": [300, 1, 2, 3, 4]})], "list of bytes"),
    ([_brush(_regions()[0], "Ge", original_width=15)], "holds 768 values, not 12 x 15 x 4"),
    ([_brush(_regions()[0], "Ge"), _brush(np.ones((5, 5), bool), "Ge")], "disagree on the image size"),
    ([_brush(_regions()[0], "Ge", original_width=-16, original_height=-12)], "positive integers"),
    ([_brush(_regions()[0], "Ge", original_width=100_000, original_height=100_000)], "at most"),
    ([_brush(_regions()[0], "Ge", value={"rle": _brush(_regions()[0], "Ge")["value"]["rle"][:6]})], "corrupt RLE"),
    ([_brush(np.ones((12, 15), bool), "Ge")], "the image is 16 x 12"),
])
def test_bad_annotations_raise_named_errors(results, problem):
    with pytest.raises(AnnotationError, match=problem):
        annotation_materials(results, CONFIG, shape=(12, 16))


def test_region_labels_keep_recognised_names_and_fill_the_rest_in_config_order():
    assert region_labels([None, None], CONFIG.labels) == [("SrTiO3", False), ("Ge", False)]
    assert region_labels(["Pt/C", None, "SrTiO3"], CONFIG.labels) == [
        ("Pt/C", True), ("Ge", False), ("SrTiO3", True)]
    # A name outside the config, or one already taken, is not trusted.
    assert region_labels(["Quartz", "Ge", "Ge"], CONFIG.labels) == [
        ("SrTiO3", False), ("Ge", True), ("Pt/C", False)]
    with pytest.raises(ValueError, match="only 3 labels"):
        region_labels([None] * 4, CONFIG.labels)


def test_predictions_carry_learned_names_and_low_scores_for_unrecognised_regions():
    masks = _regions()
    prediction = predictions_from_segmentation(masks, np.array([0.9, 0.8, 0.7]), CONFIG, "v",
                                               names=["Ge", None, "SrTiO3"], unnamed_score=0.05)
    regions = prediction["result"]
    assert [r["value"]["brushlabels"] for r in regions] == [["Ge"], ["Pt/C"], ["SrTiO3"]]
    assert [r["score"] for r in regions] == [0.9, 0.05, 0.7]
    unnamed = predictions_from_segmentation(masks, np.array([0.9, 0.8, 0.7]), CONFIG, "v")
    assert [r["value"]["brushlabels"] for r in unnamed["result"]] == [["SrTiO3"], ["Ge"], ["Pt/C"]]
    assert [r["score"] for r in unnamed["result"]] == [0.9, 0.8, 0.7]


def test_model_version_changes_with_the_prototypes():
    empty = Prototypes(embedder="lbp", blocks=(1,))
    one = Prototypes(embedder="lbp", blocks=(1,), labels=(LabelPrototype("Ge", np.ones((2, 1), np.float32), 2, 1),))
    two = Prototypes(embedder="lbp", blocks=(1,), labels=(LabelPrototype("Ge", np.zeros((2, 1), np.float32), 2, 1),))
    assert versioned("samiam-v1", None) == versioned("samiam-v1", empty) == "samiam-v1"
    assert versioned("samiam-v1", one) == f"samiam-v1+p{one.version}"
    assert len(one.version) == 8 and int(one.version, 16) >= 0
    assert versioned("samiam-v1", one) != versioned("samiam-v1", two)
