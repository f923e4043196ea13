import numpy as np
import pytest

from samiam.booster.crops import (
    crop_grid,
    cut_crops,
    grid_coverage,
    interior_boxes,
    interior_crops,
    sample_crops,
)


def _masks(rng, n=6, size=96):
    """Random blobs, rectangles and one tiny mask."""
    y, x = np.mgrid[:size, :size]
    out = []
    for _ in range(n - 1):
        cy, cx, r = rng.integers(0, size, 2).tolist() + [int(rng.integers(8, 40))]
        out.append((y - cy) ** 2 + (x - cx) ** 2 < r * r)
    tiny = np.zeros((size, size), bool)
    tiny[40:47, 40:47] = True
    out.append(tiny)
    return np.stack(out)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_crop_lies_enough_inside_its_owner(seed):
    rng = np.random.default_rng(seed)
    masks = _masks(rng)
    size, inside = 12, 0.9
    sample = sample_crops(masks, size, per_mask=4, inside=inside, rng=np.random.default_rng(seed))
    assert len(sample.boxes) > 0
    for (y0, x0, y1, x1), owner in zip(sample.boxes, sample.owner):
        assert (y1 - y0, x1 - x0) == (size, size)
        assert masks[owner, y0:y1, x0:x1].sum() >= inside * size * size
    assert np.bincount(sample.owner, minlength=len(masks)).max() <= 4
    assert (sample.owner != len(masks) - 1).all(), "the 7x7 mask cannot hold a 12x12 crop"


def test_coverage_matches_direct_sums():
    masks = _masks(np.random.default_rng(5), size=70)
    for size in (10, 11, 70):
        ys, xs, covered = grid_coverage(masks, size)
        assert ys[-1] + size <= 70 and (np.diff(ys) == size // 2).all()
        direct = np.array([[[m[y:y + size, x:x + size].sum() for x in xs] for y in ys] for m in masks])
        np.testing.assert_array_equal(covered, direct)


def test_masks_with_enough_candidates_get_exactly_per_mask_and_sampling_is_seeded():
    masks = np.zeros((2, 64, 64), bool)
    masks[0, :, :40] = True
    masks[1, :, 40:] = True
    first = sample_crops(masks, 8, 5, 0.9, np.random.default_rng(3))
    again = sample_crops(masks, 8, 5, 0.9, np.random.default_rng(3))
    other = sample_crops(masks, 8, 5, 0.9, np.random.default_rng(4))
    np.testing.assert_array_equal(first.boxes, again.boxes)
    np.testing.assert_array_equal(first.owner, again.owner)
    assert not np.array_equal(first.boxes, other.boxes)
    np.testing.assert_array_equal(first.counts(2), [5, 5])
    assert len(np.unique(first.boxes[first.owner == 0], axis=0)) == 5, "drawn without replacement"


def test_empty_stack_and_crop_larger_than_image():
    none = sample_crops(np.zeros((0, 32, 32), bool), 8, 3, 0.9, np.random.default_rng(0))
    assert none.boxes.shape == (0, 4) and none.owner.shape == (0,)
    big = sample_crops(np.ones((2, 16, 16), bool), 20, 3, 0.9, np.random.default_rng(0))
    assert big.boxes.shape == (0, 4)


def test_cut_crops_and_interior_boxes():
    grey = np.arange(40 * 50, dtype=np.float32).reshape(40, 50)
    boxes = np.array([[0, 0, 6, 6], [30, 44, 36, 50]])
    crops = cut_crops(grey, boxes)
    assert crops.shape == (2, 6, 6) and crops.dtype == np.float32
    np.testing.assert_array_equal(crops[1], grey[30:36, 44:50])

    ring = np.zeros((1, 40, 50), bool)
    ring[0, 10:21, 20:31] = True  # an 11x11 square: most interior pixel at (15, 25)
    np.testing.assert_array_equal(interior_boxes(ring, 6), [[12, 22, 18, 28]])
    corner = np.zeros((1, 40, 50), bool)
    corner[0, :3, :3] = True
    np.testing.assert_array_equal(interior_boxes(corner, 6), [[0, 0, 6, 6]])


def test_a_compact_mask_gets_one_interior_crop_and_a_long_strip_one_per_width_along_it():
    yy, xx = np.mgrid[:120, :300]
    grey = (np.sin(xx / 2.0) + yy / 120).astype(np.float32)
    masks = np.zeros((2, 120, 300), bool)
    masks[0] = (yy - 60) ** 2 + (xx - 40) ** 2 <= 15 ** 2  # a disc of radius 15
    masks[1, 50:62, 100:290] = True  # a strip 12 px wide, 190 px long
    crops, owner = interior_crops(grey, masks, 24, per_mask=10)
    assert crops.shape == (len(owner), 24, 24) and owner.tolist().count(0) == 1
    assert 8 <= owner.tolist().count(1) <= 10  # about one per 12 px of its 190 px, at most per_mask
    few, few_owner = interior_crops(grey, masks, 24, per_mask=3)
    assert few_owner.tolist() == [0, 1, 1, 1]
    np.testing.assert_array_equal(few[0], crops[0])  # the deepest spot first, whatever per_mask


@pytest.mark.parametrize("reach", [0, 1, 2])
def test_crop_grid_keeps_every_owned_candidate_and_marks_those_near_each_mask(reach):
    masks = _masks(np.random.default_rng(6), size=80)
    size, inside = 10, 0.9
    grid = crop_grid(masks, size, inside, reach)
    step = size // 2
    origins = range(0, 80 - size + 1, step)
    expected_boxes, expected_owned, expected_near = [], [], []
    for y in origins:
        for x in origins:
            owned = [m[y:y + size, x:x + size].sum() >= inside * size * size for m in masks]
            if not any(owned):
                continue
            # near: some candidate within `reach` steps in rows and columns overlaps the mask
            near = [any(m[v:v + size, u:u + size].any()
                        for v in origins if abs(v - y) <= reach * step
                        for u in origins if abs(u - x) <= reach * step) for m in masks]
            expected_boxes.append((y, x, y + size, x + size))
            expected_owned.append(owned)
            expected_near.append(near)
    np.testing.assert_array_equal(grid.boxes, expected_boxes)
    np.testing.assert_array_equal(grid.owned, np.array(expected_owned).T)
    np.testing.assert_array_equal(grid.near, np.array(expected_near).T)
