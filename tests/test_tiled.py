"""Tiled proposals: tiles, compact masks, merging across seams, and the tiny SAM run per tile."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from tiny_sam import install_tiny_sam, save_tiny_checkpoint, tiny_sam_settings

from samiam.errors import SettingsError
from samiam.io import Micrograph, load_micrograph
from samiam.pipeline import Engine
from samiam.proposals import make_proposer, tiled
from samiam.proposals.base import Proposals
from samiam.settings import ProposalSettings, Settings

SHAPE = (200, 200)
TILE, OVERLAP = 120, 40
"""Four tiles, starts 0 and 80 on each axis: the seams' overlap bands are rows / columns 80..120."""


def rectangle(y0, x0, y1, x1, shape=SHAPE) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def disk(cy, cx, radius, shape=SHAPE) -> np.ndarray:
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2


def proposals_per_tile(regions: list[np.ndarray], boxes: np.ndarray) -> list[Proposals]:
    """What a perfect proposer gives for each tile: every region's part inside it (parts without
    pixels left out)."""
    result = []
    for y0, x0, y1, x1 in boxes:
        parts = np.array([r[y0:y1, x0:x1] for r in regions if r[y0:y1, x0:x1].any()], bool)
        parts = parts.reshape(-1, y1 - y0, x1 - x0)
        result.append(Proposals(parts, np.linspace(0.5, 1.0, len(parts), dtype=np.float32)))
    return result


def as_set(stack: np.ndarray) -> set[bytes]:
    return {np.packbits(mask).tobytes() for mask in stack}


def png_micrograph(image: np.ndarray) -> Micrograph:
    """``image: (H, W) float in [0, 1]`` as the 8-bit PNG a user gives, decoded."""
    buffer = io.BytesIO()
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(buffer, "PNG")
    return load_micrograph(buffer.getvalue())


class BrightBlobs:
    """A local, deterministic proposer: each connected bright area (grey > 0.5) is one mask."""

    name = "bright-blobs"

    def __init__(self):
        self.tile_shapes: list[tuple[int, int]] = []

    def propose(self, micrograph: Micrograph) -> Proposals:
        self.tile_shapes.append(micrograph.shape)
        labels, count = ndimage.label(micrograph.grey > 0.5)
        masks = labels[None] == np.arange(1, count + 1)[:, None, None]
        return Proposals(masks, np.ones(count, np.float32))


def test_tiles_cover_the_image_and_overlap_by_at_least_the_overlap():
    for shape in [(200, 200), (1900, 1000), (8192, 8192), (100, 3000)]:
        boxes = tiled.tile_boxes(shape, 1024 if max(shape) > 200 else TILE, 128 if max(shape) > 200 else OVERLAP)
        covered = np.zeros(shape, np.int64)
        for y0, x0, y1, x1 in boxes:
            covered[y0:y1, x0:x1] += 1
        assert covered.min() >= 1
        assert boxes.dtype == np.int64 and boxes.shape[1] == 4
        for axis in (0, 1):
            starts = np.unique(boxes[:, axis])
            ends = np.unique(boxes[:, axis + 2])
            assert (ends[:-1] - starts[1:] >= (128 if max(shape) > 200 else OVERLAP)).all()
    assert len(tiled.tile_boxes((8192, 8192), 1024, 128)) == 81
    assert len(tiled.tile_boxes(SHAPE, TILE, OVERLAP)) == 4


def test_box_masks_keep_crops_and_give_back_the_same_stack():
    masks = np.array([rectangle(10, 20, 30, 60, (50, 70)), np.zeros((50, 70), bool), disk(40, 50, 8, (50, 70))])
    compact = tiled.BoxMasks.from_stack(masks, np.array([0.3, 0.9, 0.6]), (100, 7), (200, 300))

    assert len(compact) == 2  # the empty mask is dropped
    assert compact.boxes.tolist()[0] == [110, 27, 130, 67]
    assert compact.crops[0].shape == (20, 40) and compact.crops[0].dtype == bool
    stack = compact.to_stack()
    assert stack.shape == (2, 200, 300) and stack.dtype == bool
    np.testing.assert_array_equal(stack[1, 100:150, 7:77], masks[2])
    assert stack[0].sum() == masks[0].sum()
    np.testing.assert_allclose(compact.scores, [0.3, 0.6])


def test_a_region_across_a_seam_and_one_at_a_four_tile_corner_become_one_mask_each():
    across_seam = rectangle(10, 30, 50, 170)          # top tiles only, crosses the vertical seam
    at_corner = disk(100, 100, 30)                     # in all four tiles
    inside_one_tile = rectangle(150, 10, 190, 60)      # bottom-left tile only
    child = rectangle(20, 40, 40, 70)                  # nested in across_seam, left tile only
    regions = [across_seam, at_corner, inside_one_tile, child]
    boxes = tiled.tile_boxes(SHAPE, TILE, OVERLAP)

    merged = tiled.merge_across_seams(SHAPE, boxes, proposals_per_tile(regions, boxes), seam_iou=0.5)

    assert as_set(merged.to_stack()) == as_set(np.array(regions))
    assert len(merged) == 4


def test_two_regions_touching_at_a_seam_stay_two():
    left, right = rectangle(140, 20, 190, 100), rectangle(140, 100, 190, 180)  # meet at column 100
    boxes = tiled.tile_boxes(SHAPE, TILE, OVERLAP)

    merged = tiled.merge_across_seams(SHAPE, boxes, proposals_per_tile([left, right], boxes), seam_iou=0.5)

    assert as_set(merged.to_stack()) == {np.packbits(m).tobytes() for m in (left, right)}


def test_slightly_different_boundaries_in_the_overlap_are_joined_without_a_seam_artifact():
    region = rectangle(60, 10, 140, 190)
    boxes = tiled.tile_boxes(SHAPE, TILE, OVERLAP)
    per_tile = proposals_per_tile([region], boxes)
    right_top = int(np.flatnonzero((boxes[:, 0] == 0) & (boxes[:, 1] == 80))[0])
    moved = per_tile[right_top].masks.copy()
    moved[0, 55:60, :] = True  # this tile sees the region's top edge 5 px higher (rows 55..60)
    per_tile[right_top] = Proposals(moved, per_tile[right_top].scores)

    merged = tiled.merge_across_seams(SHAPE, boxes, per_tile, seam_iou=0.5)

    assert len(merged) == 1
    union = merged.to_stack()[0]
    assert union[60:140, 10:190].all()
    assert union[55:60, 80:200].all() and not union[55:60, :80].any()
    assert union.sum() == region.sum() + 5 * 120


def test_a_seam_iou_above_the_overlap_parts_iou_keeps_the_pieces_apart():
    region = rectangle(10, 30, 50, 170)
    boxes = tiled.tile_boxes(SHAPE, TILE, OVERLAP)
    per_tile = proposals_per_tile([region], boxes)
    right_top = int(np.flatnonzero((boxes[:, 0] == 0) & (boxes[:, 1] == 80))[0])
    moved = per_tile[right_top].masks.copy()
    moved[0, :, :20] = False  # this tile misses the region's first 20 columns: band IoU 20/40
    per_tile[right_top] = Proposals(moved, per_tile[right_top].scores)

    assert len(tiled.merge_across_seams(SHAPE, boxes, per_tile, seam_iou=0.5)) == 1
    assert len(tiled.merge_across_seams(SHAPE, boxes, per_tile, seam_iou=0.6)) == 2


def test_tiled_local_proposer_gives_the_untiled_masks():
    image = np.full(SHAPE, 0.1)
    for region in (rectangle(10, 30, 50, 170), disk(100, 100, 30), rectangle(150, 10, 190, 60),
                   rectangle(140, 130, 190, 199)):
        image[region] = 0.9
    micrograph = png_micrograph(image)
    settings = Settings().replace({"proposals.tiling": "on", "proposals.tile_size": TILE,
                                   "proposals.tile_overlap": OVERLAP})
    proposer = BrightBlobs()

    whole = proposer.propose(micrograph)
    proposer.tile_shapes.clear()
    per_tile = tiled.propose(proposer, micrograph, settings)

    assert proposer.tile_shapes == [(120, 120)] * 4
    assert per_tile.masks.shape == (4, *SHAPE) and per_tile.masks.dtype == bool
    assert per_tile.scores.shape == (4,) and per_tile.scores.dtype == np.float32
    assert as_set(per_tile.masks) == as_set(whole.masks)


def test_auto_tiles_large_images_for_sam_never_for_classical():
    class Named:
        def __init__(self, name):
            self.name = name

    auto = ProposalSettings(tiling="auto", tile_size=1024)
    assert tiled.uses_tiles(Named("sam-vit_l"), (2048, 2048), auto)
    assert not tiled.uses_tiles(Named("sam-vit_l"), (1024, 1000), auto)
    assert not tiled.uses_tiles(make_proposer(ProposalSettings(proposer="classical")), (8192, 8192), auto)
    assert tiled.uses_tiles(Named("classical"), (2048, 2048), ProposalSettings(tiling="on"))
    assert not tiled.uses_tiles(Named("sam-vit_l"), (8192, 8192), ProposalSettings(tiling="off"))
    assert not tiled.uses_tiles(Named("sam-vit_l"), (8192, 8192), ProposalSettings())  # off by default


@pytest.mark.parametrize("overrides, named", [
    ({"tiling": "sometimes"}, "proposals.tiling"),
    ({"tiling": "on", "tile_size": 32}, "proposals.tile_size"),
    ({"tiling": "on", "tile_overlap": 600}, "proposals.tile_overlap"),
    ({"tiling": "on", "tile_overlap": -1}, "proposals.tile_overlap"),
    ({"tiling": "on", "seam_iou": 0.0}, "proposals.seam_iou"),
])
def test_bad_tiling_settings_are_named_errors(overrides, named):
    with pytest.raises(SettingsError, match=named):
        tiled.uses_tiles(BrightBlobs(), (2048, 2048), ProposalSettings(**overrides))


@pytest.mark.slow
def test_tiny_sam_proposes_per_tile_through_the_real_loading_path(tmp_path, monkeypatch):
    install_tiny_sam(monkeypatch, save_tiny_checkpoint(tmp_path))
    settings = tiny_sam_settings(tmp_path, points_per_side=2, crop_n_layers=0, pred_iou_thresh=0.0,
                                 stability_score_thresh=0.0, tiling="on", tile_size=96, tile_overlap=32)
    rng = np.random.default_rng(0)
    image = ndimage.gaussian_filter(rng.random((96, 160)), 4)
    micrograph = png_micrograph((image - image.min()) / np.ptp(image))
    engine = Engine(settings)
    seen = []
    real_propose = engine.proposer.propose

    def recording(tile: Micrograph) -> Proposals:
        seen.append(tile.shape)
        result = real_propose(tile)
        assert result.masks.shape[1:] == tile.shape
        return result

    monkeypatch.setattr(engine.proposer, "propose", recording)
    seg = engine.segment(micrograph)

    assert seen == [(96, 96)] * 2  # one row of two tiles, overlapping in columns 64..96
    assert seg.proposer == "sam-vit_b"
    assert len(seg.proposals) > 0
    assert seg.proposals.shape[1:] == (96, 160) and seg.proposals.dtype == bool
    assert seg.materials.shape[1:] == (96, 160) and seg.materials.sum(axis=0).max() <= 1
