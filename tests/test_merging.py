import dataclasses
import itertools

import numpy as np
import pytest

from samiam.booster.crops import CropGrid
from samiam.booster.embedders import make_embedder
from samiam.booster.grouping import (
    NESTED_T2_FACTOR,
    StepTest,
    count_late_groups,
    group_masks,
    separation,
    step_ratio,
)
from samiam.booster.merging import crop_side, merge_masks
from samiam.errors import MaskSetError, SettingsError
from samiam.settings import MergingSettings

SIZE = 256


def lattice(period, angle, level, rng, noise=0.02):
    """A square cosine lattice over the whole image, mean ``level``, with Gaussian noise."""
    y, x = np.mgrid[:SIZE, :SIZE].astype(float)
    u = x * np.cos(angle) + y * np.sin(angle)
    v = y * np.cos(angle) - x * np.sin(angle)
    clean = level + (np.cos(2 * np.pi * u / period) + np.cos(2 * np.pi * v / period)) / 8
    return clean + rng.normal(0, noise, clean.shape)


@pytest.fixture(scope="module")
def scene():
    """Two textures (period 5 px, and period 9 px rotated and a little brighter), left | right
    with a wavy interface; proposals split each region into pieces like antiphase boundaries do."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:SIZE, :SIZE]
    left = x < 120 + 10 * np.sin(y / 30)
    right_texture = lattice(9, 0.5, 0.6, rng).astype(np.float32)
    grey = np.where(left, lattice(5, 0.0, 0.45, rng), right_texture).astype(np.float32)
    pieces = []
    for region, cuts in ((left, (0, 100, SIZE)), (~left, (0, 70, 150, SIZE))):
        for top, bottom in itertools.pairwise(cuts):
            band = (y >= top) & (y < bottom)
            pieces.append(region & band)
    return grey, np.stack(pieces), np.stack([left, ~left]), right_texture


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


def merge(grey, masks, **changes):
    settings = dataclasses.replace(MergingSettings(), **changes)
    scores = np.linspace(0.9, 1.0, len(masks)).astype(np.float32)
    return merge_masks(grey, masks, scores, settings, make_embedder(settings))


def assert_disjoint(materials):
    assert materials.dtype == bool
    assert materials.sum(axis=0).max(initial=0) <= 1


@pytest.mark.parametrize("materials", [2, None])
def test_split_regions_merge_into_the_two_textures(scene, materials):
    grey, masks, truth, _ = scene
    result = merge(grey, masks, materials=materials)
    assert len(result.materials) == 2
    assert_disjoint(result.materials)
    assert result.n_materials_estimated == (2 if materials is None else None)
    for region in truth:
        assert max(iou(region, m) for m in result.materials) > 0.95
    # masks 0-1 are the left texture, 2-4 the right one
    assert len(set(result.assignment[:2])) == 1 and len(set(result.assignment[2:])) == 1
    assert result.assignment[0] != result.assignment[2]
    areas = result.materials.sum(axis=(1, 2))
    assert (np.diff(areas) <= 0).all(), "largest material first"
    assert result.scores.dtype == np.float32 and ((result.scores > 0) & (result.scores <= 1)).all()


def test_one_texture_is_one_material(scene):
    grey, masks, truth, _ = scene
    result = merge(grey, masks[2:], materials=None)
    assert result.n_materials_estimated == 1
    assert len(result.materials) == 1
    assert iou(result.materials[0], truth[1]) > 0.99


def test_overlapping_inputs_give_disjoint_output_and_a_child_survives(scene):
    grey, masks, _, right_texture = scene
    y, x = np.mgrid[:SIZE, :SIZE]
    # a child of the right texture inside the left one
    child = (np.abs(y - 128) < 25) & (np.abs(x - 60) < 25)
    grey = np.where(child, right_texture, grey)
    overlapping = masks.copy()
    overlapping[1] |= masks[3]  # a left piece that spills into the right texture
    result = merge(grey, np.concatenate([overlapping, child[None]]), materials=2)
    assert_disjoint(result.materials)
    child_material = result.assignment[-1]
    assert child_material == result.assignment[2] != result.assignment[0]
    assert result.materials[child_material][child].all(), "the child stays visible inside its parent"
    assert not result.materials[result.assignment[0]][child].any()


def test_no_more_masks_than_clusters_means_no_merge(scene):
    grey, masks, _, _ = scene
    result = merge(grey, masks[[0, 1]], materials=3)
    assert len(result.materials) == 2
    np.testing.assert_array_equal(np.sort(result.assignment), [0, 1])
    for i, mask in enumerate(masks[[0, 1]]):
        np.testing.assert_array_equal(result.materials[result.assignment[i]], mask)
    np.testing.assert_allclose(np.sort(result.scores), [0.9, 1.0], rtol=1e-6)  # support 1 x score


def test_empty_and_single_inputs(scene):
    grey, masks, _, _ = scene
    none = merge(grey, masks[:0])
    assert none.materials.shape == (0, SIZE, SIZE) and none.scores.shape == (0,)
    assert none.assignment.shape == (0,) and none.n_materials_estimated == 0
    one = merge(grey, masks[:1])
    np.testing.assert_array_equal(one.materials, masks[:1])
    np.testing.assert_array_equal(one.assignment, [0])
    assert one.n_materials_estimated == 1


def test_small_masks_vote_through_one_crop_and_islands_are_dropped(scene):
    grey, masks, _, _ = scene
    side = crop_side(MergingSettings(), SIZE, SIZE)
    y, x = np.mgrid[:SIZE, :SIZE]
    # a thin strip in the right texture: too narrow for any grid crop, big enough to vote
    strip = (np.abs(x - 200) < side // 2 - 2) & (y > 20) & (y < 60)
    island = (np.abs(x - 200) < 2) & (np.abs(y - 200) < 2)
    result = merge(grey, np.concatenate([masks, strip[None], island[None]]), materials=2)
    assert result.assignment[-2] == result.assignment[2]
    assert result.assignment[-1] == -1
    assert not np.isin(-1, result.assignment[:-1])


def test_deterministic(scene):
    grey, masks, _, _ = scene
    first, second = merge(grey, masks), merge(grey, masks)
    np.testing.assert_array_equal(first.materials, second.materials)
    np.testing.assert_array_equal(first.assignment, second.assignment)
    np.testing.assert_array_equal(first.scores, second.scores)


def test_bad_settings_and_masks_are_named(scene):
    grey, masks, _, _ = scene
    with pytest.raises(SettingsError, match="merging.materials"):
        merge(grey, masks, materials=0)
    with pytest.raises(SettingsError, match="merging.crop_inside"):
        merge(grey, masks, crop_inside=1.5)
    with pytest.raises(SettingsError, match="merging.k_estimator"):
        merge(grey, masks, k_estimator="guess")
    with pytest.raises(MaskSetError):
        merge(grey[:100], masks)


def halves(shift, gain):
    """One cosine lattice (period 6 px) over the image; the right half shifted by ``shift`` px
    (half a period: an antiphase boundary) and brighter by the factor ``gain``; masks left | right."""
    y, x = np.mgrid[:SIZE, :SIZE].astype(float)
    right = x >= SIZE // 2
    xs = np.where(right, x + shift, x)
    clean = 0.5 + (np.cos(2 * np.pi * xs / 6) + np.cos(2 * np.pi * y / 6)) / 8
    grey = np.where(right, gain * clean, clean) + np.random.default_rng(1).normal(0, 0.02, clean.shape)
    return grey.astype(np.float32), np.stack([~right, right])


@pytest.mark.parametrize("shift, gain, expected", [(3, 1.0, 1), (0, 1.04, 2), (3, 1.04, 2)])
def test_separation_estimator_keeps_an_antiphase_boundary_and_splits_four_percent(shift, gain, expected):
    grey, masks = halves(shift, gain)
    result = merge(grey, masks, k_estimator="separation")
    assert result.n_materials_estimated == expected
    assert len(result.materials) == expected


def test_separation_is_the_mean_squared_welch_t():
    rng = np.random.default_rng(2)
    a, b = rng.normal(0, 1, (6, 3)), rng.normal(0.5, 2, (9, 3))
    expected = []
    for j in range(3):  # plain Welch t, one column at a time
        ma, mb = sum(a[:, j]) / 6, sum(b[:, j]) / 9
        va = sum((v - ma) ** 2 for v in a[:, j]) / 5
        vb = sum((v - mb) ** 2 for v in b[:, j]) / 8
        expected.append((ma - mb) ** 2 / (va / 6 + vb / 9))
    assert separation(a, b) == pytest.approx(sum(expected) / 3)
    constant = np.ones((4, 1))
    assert separation(constant, constant) == 0 and separation(constant, 2 * constant) == np.inf


def test_group_masks_merges_closest_first_up_to_the_threshold_and_the_cap():
    rng = np.random.default_rng(3)
    # masks 0 and 2 share a mean, mask 1 is 5 standard deviations away, mask 3 50 away
    centres = {0: 0.0, 1: 5.0, 2: 0.0, 3: 50.0}
    owner = np.repeat(np.arange(4), 20)
    features = np.array([centres[m] for m in owner])[:, None] + rng.normal(0, 1, (80, 1))
    np.testing.assert_array_equal(group_masks(features, owner, np.arange(4), 5.0, 6), [0, 1, 0, 2])
    np.testing.assert_array_equal(group_masks(features, owner, np.arange(4), 5.0, 2), [0, 0, 0, 1])
    np.testing.assert_array_equal(group_masks(features, owner, np.array([3, 1]), 1e9, 6), [0, 0])



def test_a_material_of_masks_too_small_to_found_a_group_is_still_counted():
    """Founders 0 and 1 (20 crops, one material); masks of 3 crops: 2 and 4 show a material 50
    standard deviations away (counted once), 3 the founders' own (not counted)."""
    rng = np.random.default_rng(6)
    centres = {0: 0.0, 1: 0.0, 2: 50.0, 3: 0.3, 4: 50.0}
    owner = np.concatenate([np.repeat([0, 1], 20), np.repeat([2, 3, 4], 3)])
    features = np.array([centres[m] for m in owner])[:, None] + rng.normal(0, 1, (len(owner), 1))
    founders = np.array([0, 1])
    groups = group_masks(features, owner, founders, 5.0, 6)
    np.testing.assert_array_equal(groups, [0, 0])
    assert count_late_groups(features, owner, founders, groups, np.array([2, 3, 4]), 20.0) == 1
    assert count_late_groups(features, owner, founders, groups, np.array([3]), 20.0) == 0

def test_a_mask_nested_in_another_is_its_material_unless_far_apart():
    """Mask 1 is a part of mask 0 (all its 20 grid crops are mask 0's too; mask 0 has 20 more).
    A shift of one standard deviation between their crop samples (separation about 10, above the
    threshold 5) is one material; 50 standard deviations are two. Two masks side by side
    (no crop shared) with the same shift stay apart: there the whole-group test decides."""
    rng = np.random.default_rng(7)
    owner = np.repeat([0, 1], 20)
    noise = rng.normal(0, 1, (40, 1))
    nested_grid = CropGrid(boxes=np.zeros((40, 4), np.int64),
                           owned=np.stack([np.ones(40, bool), np.arange(40) >= 20]), near=np.ones((2, 40), bool))
    beside_grid = dataclasses.replace(nested_grid, owned=np.stack([np.arange(40) < 20, np.arange(40) >= 20]))
    for shift, grid, expected in ((1.0, nested_grid, [0, 0]), (50.0, nested_grid, [0, 1]), (1.0, beside_grid, [0, 1])):
        features = noise + np.where(owner == 1, shift, 0.0)[:, None]
        step = StepTest(grid, features, max_ratio=0.0, min_crops=5)
        if shift == 1.0:
            assert 5.0 < separation(features[:20], features[20:]) < NESTED_T2_FACTOR * 5.0
        np.testing.assert_array_equal(group_masks(features, owner, np.arange(2), 5.0, 6, step), expected)
        np.testing.assert_array_equal(group_masks(features, owner, np.arange(2), 5.0, 6), [0, 1])  # no step test


def ramp_lattice(gain_of_row, noise=0.02):
    """The period-6 px lattice of :func:`halves`, its brightness scaled row by row by
    ``gain_of_row: (SIZE,) float``, plus Gaussian ``noise``; three horizontal bands as masks."""
    y, x = np.mgrid[:SIZE, :SIZE].astype(float)
    clean = 0.5 + (np.cos(2 * np.pi * x / 6) + np.cos(2 * np.pi * y / 6)) / 8
    grey = gain_of_row[:, None] * clean + np.random.default_rng(4).normal(0, noise, clean.shape)
    rows = np.arange(SIZE)
    bands = np.stack([(rows >= top) & (rows < top + SIZE // 3 + 1) for top in (0, SIZE // 3, 2 * SIZE // 3)])
    return grey.astype(np.float32), np.repeat(bands[:, :, None], SIZE, axis=2)


def test_separation_estimator_keeps_a_brightness_ramp_as_one_material():
    ramp = np.linspace(0.8, 1.2, SIZE)  # 40 % brighter from top to bottom, no step
    grey, masks = ramp_lattice(ramp)
    # the whole-band test alone sees three materials ...
    assert merge(grey, masks, k_estimator="separation", step_ratio=0.0, step_reach=0.0).n_materials_estimated == 3
    # ... the step test across the band boundaries sees a gradient
    result = merge(grey, masks, k_estimator="separation")
    assert result.n_materials_estimated == 1 and len(result.materials) == 1


def test_separation_estimator_splits_a_four_percent_step_between_two_lattices():
    # the bottom band is a second lattice 4 % brighter; the top two bands are one lattice
    grey, masks = ramp_lattice(np.where(np.arange(SIZE) >= 2 * SIZE // 3, 1.04, 1.0))
    result = merge(grey, masks, k_estimator="separation")
    assert result.n_materials_estimated == 2
    assert result.assignment[0] == result.assignment[1] != result.assignment[2]


def test_a_boundary_drawn_a_strip_into_the_brighter_material_is_still_a_step():
    """A bright fine lattice over a dark coarse one, their masks' border drawn 7 px (half a crop)
    inside the bright one, as the classical proposer's window can draw it: the crops nearest the
    border on both sides then hold the bright lattice, yet the two are two materials."""
    rng = np.random.default_rng(6)
    rows = np.arange(SIZE)[:, None] * np.ones((1, SIZE))
    grey = np.where(rows < 80, lattice(4, 0.0, 0.8, rng), lattice(11, 0.3, 0.3, rng)).astype(np.float32)
    masks = np.stack([rows < 73, rows >= 73])
    assert merge(grey, masks, k_estimator="separation_all").n_materials_estimated == 2


def test_step_ratio_is_the_projected_near_difference_with_its_standard_error():
    rng = np.random.default_rng(5)
    all_a, all_b = rng.normal(0, 1, (30, 2)), rng.normal(0, 1, (40, 2)) + [2.0, 0.0]
    spread = np.sqrt((all_a.var(axis=0) + all_b.var(axis=0)) / 2)
    whole = (all_a.mean(axis=0) - all_b.mean(axis=0)) / spread
    near_a, near_b = all_a[:10], all_b[:10]
    near = (near_a.mean(axis=0) - near_b.mean(axis=0)) / spread
    expected = (near[0] * whole[0] + near[1] * whole[1]) / (whole[0] ** 2 + whole[1] ** 2)
    projected_a = (near_a / spread) @ whole / (whole @ whole)
    projected_b = (near_b / spread) @ whole / (whole @ whole)
    error = np.sqrt(np.var(projected_a, ddof=1) / 10 + np.var(projected_b, ddof=1) / 10)
    assert step_ratio(near_a, near_b, all_a, all_b) == pytest.approx((expected, error))
    assert step_ratio(all_a, all_b, all_a, all_b)[0] == pytest.approx(1.0)
    assert step_ratio(near_a, near_b, all_a, all_a) == (np.inf, np.inf)



def test_a_step_seen_by_few_noisy_crops_is_not_taken_for_a_gradient():
    """Two lattices 6 % apart under strong noise meet only along a 64 px bridge (a gap elsewhere):
    the few crops near the bridge cannot show the step, and that is no evidence of a gradient,
    so the whole-group test decides: two materials."""
    grey, _ = ramp_lattice(np.where(np.arange(SIZE) >= SIZE // 2, 1.06, 1.0), noise=0.12)
    rows, cols = np.mgrid[:SIZE, :SIZE]
    gap = (abs(rows - SIZE // 2 + 0.5) < 12) & (cols >= 64)
    masks = np.stack([(rows < SIZE // 2) & ~gap, (rows >= SIZE // 2) & ~gap])
    assert merge(grey, masks, k_estimator="separation", step_ratio=0.0, step_reach=0.0).n_materials_estimated == 2
    assert merge(grey, masks, k_estimator="separation").n_materials_estimated == 2
