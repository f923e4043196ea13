"""The shared mask helpers in samiam.masks, on hand-made masks."""

import numpy as np
import pytest

from samiam import masks as masklib
from samiam.errors import MaskSetError


def test_bounding_boxes_have_exclusive_ends_and_zeros_when_empty():
    masks = np.zeros((3, 6, 8), bool)
    masks[0, 1:3, 2:5] = True          # rows 1-2, columns 2-4
    masks[1, 5, 7] = True              # one pixel in the last corner
    assert masklib.bounding_boxes(masks).tolist() == [[1, 2, 3, 5], [5, 7, 6, 8], [0, 0, 0, 0]]


def test_area_weighted_mean():
    masks = np.zeros((2, 4, 4), bool)
    masks[0, :1] = True                # 4 px, value 1.0
    masks[1, 1:] = True                # 12 px, value 0.2
    assert masklib.area_weighted_mean(masks, np.array([1.0, 0.2])) == pytest.approx((4 + 12 * 0.2) / 16)
    assert masklib.area_weighted_mean(np.zeros((2, 4, 4), bool), np.array([1.0, 1.0])) == 0.0


def test_label_map_lets_the_smaller_mask_win_and_round_trips():
    masks = np.zeros((2, 5, 5), bool)
    masks[0] = True
    masks[1, 1:3, 1:3] = True
    labels = masklib.to_label_map(masks)
    assert labels[0, 0] == 1 and labels[1, 1] == 2 and labels.dtype == np.uint16
    back = masklib.from_label_map(labels)
    assert np.array_equal(back[1], masks[1]) and np.array_equal(back[0], masks[0] & ~masks[1])


def test_coco_rle_round_trip_and_a_bad_count():
    mask = np.random.default_rng(0).random((7, 5)) > 0.5
    rle = masklib.rle_encode(mask)
    assert np.array_equal(masklib.rle_decode(rle), mask)
    with pytest.raises(MaskSetError, match="sum to"):
        masklib.rle_decode({"size": [2, 2], "counts": [1, 1]})


def test_mask_stack_validation_names_the_problem():
    with pytest.raises(MaskSetError, match=r"\(N, H, W\)"):
        masklib.as_mask_stack(np.zeros((2, 2, 2, 2), bool))
    with pytest.raises(MaskSetError, match="0/1"):
        masklib.as_mask_stack(np.full((1, 2, 2), 3))
    assert masklib.as_mask_stack(np.ones((2, 3), np.uint8)).shape == (1, 2, 3)
