"""Mask removal (paper Algorithm 1) and the exact pairwise intersections behind it."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from removal_oracle import oracle_remove

from samiam.booster import overlaps
from samiam.booster.overlaps import pairwise_intersections
from samiam.booster.removal import island_area_pixels, remove_masks
from samiam.errors import MaskSetError
from samiam.settings import RemovalSettings

SIDE = 100  # island threshold at 100 x 100: 3600 * 1e4 / 1024**2 = 34.3 px


def naive_intersections(masks):
    return (masks[:, None] & masks[None]).sum((2, 3))


def stack(*boxes, shape=(SIDE, SIDE)):
    """One mask per (y0, y1, x0, x1) box; None gives an empty mask."""
    masks = np.zeros((len(boxes), *shape), bool)
    for mask, box in zip(masks, boxes):
        if box is not None:
            y0, y1, x0, x1 = box
            mask[y0:y1, x0:x1] = True
    return masks


def flat(masks):
    """A constant image under ``masks``: no mask stands out, so only the paper's rules speak."""
    return np.zeros(masks.shape[1:])


def reasons_of(masks, **overrides):
    result = remove_masks(masks, flat(masks), RemovalSettings(**overrides))
    assert result.keep.tolist() == [r is None for r in result.reasons]
    assert result.reasons.tolist() == oracle_remove(masks, RemovalSettings(**overrides))
    return result.reasons.tolist()


# --- the rules on hand-made masks ------------------------------------------------------------

def test_tiny_child_is_removed_and_its_parent_kept():
    # child 10x10 = 100 px is 2.8 % of the 60x60 parent (< 5 %)
    assert reasons_of(stack((0, 60, 0, 60), (20, 30, 20, 30))) == [None, "tiny_child"]


def test_child_of_exactly_the_tiny_fraction_is_kept():
    # 5x100 = 500 px is exactly 5 % of its parent: not below the threshold
    assert reasons_of(stack((0, 100, 0, 100), (0, 5, 0, 100))) == [None, None]


def test_small_child_that_is_not_tiny_is_kept_even_below_island_area():
    # 5x5 = 25 px (< 34.3 px island area) is 6.25 % of its 20x20 parent: a child, not tiny
    assert reasons_of(stack((0, 20, 0, 20), (5, 10, 5, 10))) == [None, None]


def test_parent_covered_by_large_children_is_compound():
    # halves of 50 % and 40 % of the parent: 90 % covered > 70 %
    masks = stack((0, 100, 0, 100), (0, 50, 0, 100), (50, 90, 0, 100))
    assert reasons_of(masks) == ["compound", None, None]


def test_parent_with_one_large_child_is_kept():
    # one child covering 40 % of its parent: neither tiny nor enough for compound
    assert reasons_of(stack((0, 100, 0, 100), (0, 40, 0, 100))) == [None, None]


def test_compound_needs_strictly_more_than_the_threshold():
    # 7 non-tiny children of 10 % each cover exactly 70 %: not compound; 8 would be
    rows = [(10 * k, 10 * k + 10, 0, 100) for k in range(7)]
    assert reasons_of(stack((0, 100, 0, 100), *rows))[0] is None
    assert reasons_of(stack((0, 100, 0, 100), *rows, (70, 80, 0, 100)))[0] == "compound"


def test_redundant_pair_keeps_the_larger_and_on_a_tie_the_lower_index():
    masks = stack((0, 50, 0, 50), (0, 50, 0, 50))
    masks[0, 0, :20] = False  # mask 0 is 20 px smaller: > 90 % of each inside the other
    assert reasons_of(masks) == ["redundant", None]
    assert reasons_of(stack((0, 50, 0, 50), (0, 50, 0, 50))) == [None, "redundant"]


def test_island_is_removed_and_redundant_wins_over_island():
    masks = stack((0, 100, 0, 50), (10, 14, 70, 74), (50, 53, 80, 83), (50, 53, 80, 83))
    # a 4x4 blob and a duplicated 3x3 blob alone in an unsegmented region
    assert reasons_of(masks) == [None, "island", "island", "redundant"]


def test_small_mask_ringed_by_segmented_support_is_a_particle_not_an_island():
    # a 4x4 particle cut out of the support mask around it (no overlap, so no child)
    support = stack((0, 100, 0, 100))[0]
    support[40:44, 40:44] = False
    particle = stack((40, 44, 40, 44))[0]
    assert reasons_of(np.stack([support, particle])) == [None, None]
    # the same particle with less than half its ring covered (support stops at column 41) is an island
    half = support.copy()
    half[:, 41:] = False
    assert reasons_of(np.stack([half, particle])) == [None, "island"]


def test_island_area_scales_with_the_pixel_count():
    removal = RemovalSettings()
    assert island_area_pixels(removal, 1024, 1024) == removal.island_area
    assert island_area_pixels(removal, 2048, 2048) == 4 * removal.island_area
    assert island_area_pixels(removal, 512, 1024) == removal.island_area / 2


def test_empty_mask():
    assert reasons_of(stack((0, 100, 0, 100), None)) == [None, "empty"]


def test_no_masks_and_one_mask():
    result = remove_masks(np.zeros((0, 8, 8), bool), np.zeros((8, 8)))
    assert result.keep.shape == (0,) and result.reasons.shape == (0,)
    assert result.intersections.shape == (0, 0)
    assert reasons_of(stack((0, 50, 0, 50))) == [None]
    assert reasons_of(stack((0, 2, 0, 2))) == ["island"]


def test_decisions_do_not_cascade():
    # island threshold 286 px here: mask 0 (400 px) is compound, its two 200 px halves are
    # its children; they stay children of the removed parent, so they are no islands
    masks = stack((0, 20, 0, 20), (0, 10, 0, 20), (10, 20, 0, 20))
    assert reasons_of(masks, island_area=300000.0) == ["compound", None, None]
    assert reasons_of(masks[1:2], island_area=300000.0) == ["island"]


def test_result_carries_the_exact_intersections():
    masks = stack((0, 60, 0, 60), (30, 90, 30, 90))
    assert remove_masks(masks, flat(masks)).intersections.tolist() == [[3600, 900], [900, 3600]]


def test_bad_input_raises_mask_set_error():
    with pytest.raises(MaskSetError):
        remove_masks(np.zeros((2, 3, 4, 5), bool), np.zeros((4, 5)))
    with pytest.raises(MaskSetError, match="the image is 4x5"):
        remove_masks(np.zeros((2, 4, 6), bool), np.zeros((4, 5)))


# --- pairwise intersections -------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(5, 37, 53), (6, 64, 64), (4, 8, 8), (3, 1, 1), (4, 9, 100), (1, 5, 5)])
def test_intersections_equal_the_naive_sum(shape):
    rng = np.random.default_rng(sum(shape))
    masks = rng.random(shape) < rng.random((shape[0], 1, 1))
    masks[0] = True
    masks[-1] = False
    got = pairwise_intersections(masks)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, naive_intersections(masks))


def test_intersections_of_blocky_and_non_contiguous_masks():
    rng = np.random.default_rng(7)
    masks = np.zeros((8, 72, 88), bool)
    for mask in masks:
        y0, x0 = rng.integers(0, 60, 2)
        mask[y0:y0 + rng.integers(1, 40), x0:x0 + rng.integers(1, 60)] = True
    masks[1] ^= rng.random((72, 88)) < 0.02  # noise on a rectangle
    np.testing.assert_array_equal(pairwise_intersections(masks), naive_intersections(masks))
    view = masks[::2, 3:, ::3]
    np.testing.assert_array_equal(pairwise_intersections(view), naive_intersections(view))


def test_intersections_in_small_batches(monkeypatch):
    monkeypatch.setattr(overlaps, "_PAIR_BATCH", 5)
    monkeypatch.setattr(overlaps, "_GEMM_BYTES", 8 * 9 * 3)
    monkeypatch.setattr(overlaps, "_CHUNK_BYTES", 64 * 20)
    rng = np.random.default_rng(3)
    masks = rng.random((9, 45, 70)) < 0.6
    masks[2:4] = True
    np.testing.assert_array_equal(pairwise_intersections(masks), naive_intersections(masks))


def test_intersections_are_exact_at_4096():
    # 2**24 px: the limit of float32's exact integers; full masks give that count exactly
    side = 4096
    masks = np.ones((3, side, side), bool)
    masks[2, :, side // 2 + 1:] = False
    masks[2, ::7, ::3] = False
    got = pairwise_intersections(masks)
    expected = [[int(np.logical_and(a, b).sum()) for b in masks] for a in masks]
    assert got.tolist() == expected
    assert got[0, 1] == side * side


# --- the fast path agrees with the oracle on SAM-like mask sets ------------------------------

def _shape(draw, grid, masks):
    """Draw one SAM-like mask on ``grid`` given the masks drawn so far."""
    h, w = grid
    yy, xx = np.mgrid[:h, :w]
    kind = draw(st.sampled_from(["rect", "ellipse", "union", "child", "duplicate", "noise", "empty"]))
    if kind in ("child", "duplicate") and not masks:
        kind = "rect"
    y0, y1 = sorted(draw(st.tuples(st.integers(0, h), st.integers(0, h))))
    x0, x1 = sorted(draw(st.tuples(st.integers(0, w), st.integers(0, w))))
    rect = (yy >= y0) & (yy < y1) & (xx >= x0) & (xx < x1)
    ellipse = ((yy - (y0 + y1) / 2) / max(1, (y1 - y0) / 2)) ** 2 + \
        ((xx - (x0 + x1) / 2) / max(1, (x1 - x0) / 2)) ** 2 <= 1
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    if kind == "rect":
        return rect
    if kind == "ellipse":
        return ellipse
    if kind == "union":
        return rect | np.roll(ellipse, draw(st.integers(-h, h)), axis=0)
    if kind == "noise":
        return rect ^ (rng.random(grid) < 0.1)
    if kind == "empty":
        return np.zeros(grid, bool)
    source = masks[draw(st.integers(0, len(masks) - 1))]
    if kind == "child":
        return source & (rect | ellipse)
    return source ^ (rng.random(grid) < draw(st.sampled_from([0.0, 0.01, 0.05])))  # duplicate


@st.composite
def mask_sets(draw):
    grid = draw(st.sampled_from([(37, 53), (64, 64)]))
    masks = []
    for _ in range(draw(st.integers(0, 9))):
        masks.append(_shape(draw, grid, masks))
    return np.array(masks, bool).reshape(len(masks), *grid)


@st.composite
def removal_settings(draw):
    return RemovalSettings(
        child_inside=draw(st.sampled_from([0.9, 0.8])),
        tiny_child=draw(st.sampled_from([0.05, 0.2])),
        compound_covered=draw(st.sampled_from([0.7, 0.5])),
        redundant_overlap=draw(st.sampled_from([0.9, 0.8])),
        island_area=draw(st.sampled_from([3600.0, 60000.0])),
        population_contrast=draw(st.sampled_from([1.0, 3.0])),
        population_spread=draw(st.sampled_from([10.0, 1.5])),
        population_members=draw(st.sampled_from([10, 2, 1])),
    )


@st.composite
def images_under(draw, masks):
    """A noisy image in which some of ``masks`` are brighter or darker than the rest, or a flat one."""
    grid = masks.shape[1:]
    if draw(st.booleans()):
        return np.zeros(grid)
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    grey = rng.normal(size=grid)
    for mask in masks:
        grey[mask] += draw(st.sampled_from([0.0, 4.0, -4.0, 40.0]))
    return grey


@hyp_settings(max_examples=150, deadline=None)
@given(data=st.data(), masks=mask_sets(), removal=removal_settings())
def test_fast_removal_agrees_with_the_oracle(data, masks, removal):
    grey = data.draw(images_under(masks))
    result = remove_masks(masks, grey, removal)
    assert result.reasons.tolist() == oracle_remove(masks, removal, grey)
    assert result.keep.tolist() == [r is None for r in result.reasons]
    np.testing.assert_array_equal(result.intersections, naive_intersections(masks))
