"""Tests of samiam.outputs on a hand-built Segmentation (rectangles), without running the engine."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from samiam.errors import MaskSetError
from samiam.io import Micrograph
from samiam.masks import rle_decode
from samiam.outputs import PALETTE, TINT_OPACITY, render_overlay, write_outputs
from samiam.pipeline import Segmentation
from samiam.settings import Settings

H, W = 192, 256
# (material, y0, y1, x0, x1): material 2 has two parts, one touching the right and bottom edges
RECTANGLES = [(0, 110, 150, 40, 120), (1, 100, 130, 150, 256), (1, 170, 192, 200, 256),
              (2, 150, 180, 10, 60)]
BOXES = {1: [40, 110, 80, 40], 2: [150, 100, 106, 92], 3: [10, 150, 50, 30]}  # [x, y, w, h] by hand
SCORES = np.array([0.93, 0.5, 0.125], np.float32)


def micrograph() -> Micrograph:
    grey = np.tile(np.linspace(0, 1, W, dtype=np.float32), (H, 1))
    rgb = np.repeat(np.rint(grey * 255).astype(np.uint8)[..., None], 3, axis=2)
    return Micrograph(name="sample", raw=rgb[..., 0], grey=grey, rgb=rgb, bit_depth=8, pixel_size=0.25,
                      pixel_unit="nm", source="in/sample.dm3", signal="HAADF")


def materials() -> np.ndarray:
    stack = np.zeros((3, H, W), bool)
    for k, y0, y1, x0, x1 in RECTANGLES:
        stack[k, y0:y1, x0:x1] = True
    return stack


def segmentation(stack: np.ndarray | None = None, scores: np.ndarray = SCORES) -> Segmentation:
    stack = materials() if stack is None else stack
    return Segmentation(
        materials=stack, scores=scores, proposals=stack, removed=np.full(len(stack), None, object),
        assignment=np.arange(len(stack)), proposer="given", embedder="test-embedder",
        settings=Settings().replace({"merging.materials": 3}),
        timings={"proposals_s": np.float64(1.25), "removal_s": 0.5})


@pytest.fixture
def written(tmp_path):
    seg = segmentation()
    return write_outputs(tmp_path / "out", micrograph(), seg), seg


def test_paths(written, tmp_path):
    paths, _ = written
    assert paths == {"labels": tmp_path / "out" / "sample.labels.png",
                     "overlay": tmp_path / "out" / "sample.overlay.png",
                     "json": tmp_path / "out" / "sample.json"}
    assert all(path.is_file() for path in paths.values())


def test_label_map_round_trips(written):
    paths, seg = written
    expected = np.zeros((H, W), np.uint16)
    for k, y0, y1, x0, x1 in RECTANGLES:
        expected[y0:y1, x0:x1] = k + 1
    np.testing.assert_array_equal(seg.label_map(), expected)
    with Image.open(paths["labels"]) as image:
        from_pillow = np.asarray(image)
    from_cv2 = cv2.imread(str(paths["labels"]), cv2.IMREAD_UNCHANGED)
    assert from_cv2.dtype == np.uint16
    np.testing.assert_array_equal(from_pillow, expected)
    np.testing.assert_array_equal(from_cv2, expected)


def test_json_document(written):
    paths, seg = written
    document = json.loads(paths["json"].read_text())
    assert document["image"] == {"name": "sample", "height": H, "width": W, "bit_depth": 8, "pixel_size": 0.25,
                                 "pixel_unit": "nm", "source": "in/sample.dm3", "signal": "HAADF"}
    assert document["proposer"] == "given" and document["embedder"] == "test-embedder"
    assert document["settings"] == json.loads(json.dumps(seg.settings.to_dict()))
    assert document["settings"]["merging"]["materials"] == 3
    assert document["timings"] == {"proposals_s": 1.25, "removal_s": 0.5}
    stack = materials()
    assert [m["id"] for m in document["materials"]] == [1, 2, 3]
    for entry, mask, score in zip(document["materials"], stack, SCORES):
        np.testing.assert_array_equal(rle_decode(entry["segmentation"]), mask)
        assert entry["area"] == sum((y1 - y0) * (x1 - x0) for k, y0, y1, x0, x1 in RECTANGLES
                                    if k + 1 == entry["id"])
        assert entry["bbox"] == BOXES[entry["id"]]
        assert entry["score"] == pytest.approx(float(score))
    assert document["score"] == pytest.approx(seg.score)


def test_empty_segmentation_writes_valid_files(tmp_path):
    seg = segmentation(np.zeros((0, H, W), bool), np.zeros(0, np.float32))
    paths = write_outputs(tmp_path, micrograph(), seg)
    assert json.loads(paths["json"].read_text())["materials"] == []
    assert not cv2.imread(str(paths["labels"]), cv2.IMREAD_UNCHANGED).any()
    with Image.open(paths["overlay"]) as image:
        np.testing.assert_array_equal(np.asarray(image.convert("RGB")), micrograph().rgb)


def test_empty_material_has_zero_box(tmp_path):
    stack = materials()
    stack[2] = False
    document = json.loads(write_outputs(tmp_path, micrograph(), segmentation(stack))["json"].read_text())
    assert document["materials"][2]["bbox"] == [0, 0, 0, 0] and document["materials"][2]["area"] == 0


def test_overlay_file_is_the_rendered_overlay_in_rgb_order(written):
    paths, seg = written
    names = [f"material {k} (score {s:.2f})" for k, s in enumerate(SCORES, 1)]
    with Image.open(paths["overlay"]) as image:
        assert image.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(image), render_overlay(micrograph().rgb, seg.materials, names))


def test_overlay_tints_and_outlines_each_material():
    rgb = micrograph().rgb
    overlay = render_overlay(rgb, materials())
    assert overlay.dtype == np.uint8 and overlay.shape == (H, W, 3)
    stack = materials()
    interior = [cv2.erode(mask.astype(np.uint8), np.ones((9, 9), np.uint8), borderType=cv2.BORDER_CONSTANT,
                          borderValue=0).astype(bool) for mask in stack]  # away from the outlines
    for k, inside in enumerate(interior):
        expected = np.rint((1 - TINT_OPACITY) * rgb[inside] + TINT_OPACITY * PALETTE[k])
        np.testing.assert_array_equal(overlay[inside], expected)
    # the outline of material 1 (left, top, right edge of its rectangle) is in its colour
    _, y0, y1, x0, x1 = RECTANGLES[0]
    for y, x in ((y0, (x0 + x1) // 2), ((y0 + y1) // 2, x0), (y1 - 1, (x0 + x1) // 2)):
        np.testing.assert_array_equal(overlay[y, x], PALETTE[0])
    # the lower half has no legend: unsegmented pixels there are untouched
    outside = ~stack.any(axis=0)
    outside[: H // 2] = False
    np.testing.assert_array_equal(overlay[outside], rgb[outside])
    assert len({tuple(PALETTE[k]) for k in range(3)}) == 3


def test_overlay_legend_lists_names_in_the_top_left_corner():
    rgb, stack = micrograph().rgb, materials()
    plain = render_overlay(rgb, stack)
    named = render_overlay(rgb, stack, ["alpha", "beta", "gamma"])
    changed = np.argwhere((plain != named).any(axis=2))
    assert len(changed) > 0
    assert changed[:, 0].max() < H // 2 and changed[:, 1].min() < W // 4
    # the legend box darkens the image behind it
    assert plain[2, W // 4].sum() < rgb[2, W // 4].sum()


def test_overlay_colours_cycle_past_the_palette():
    rgb = np.full((H, W, 3), 100, np.uint8)
    stack = np.zeros((len(PALETTE) + 1, H, W), bool)
    for k in range(len(stack)):
        stack[k, H // 2:, 30 * k: 30 * k + 20] = True
    overlay = render_overlay(rgb, stack)
    centres = overlay[H - 5, 30 * np.arange(len(stack)) + 10]
    assert len({tuple(colour) for colour in centres}) == len(PALETTE)
    np.testing.assert_array_equal(centres[0], centres[len(PALETTE)])


def test_overlay_rejects_masks_of_another_size():
    with pytest.raises(MaskSetError, match="image is"):
        render_overlay(micrograph().rgb, np.zeros((1, H + 1, W), bool))
