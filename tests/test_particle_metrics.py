"""Particle detection scoring against drawn boxes (samiam.particle_metrics)."""

import numpy as np
import pytest

from samiam.particle_metrics import box_iou, match_boxes, score_detections, yolo_boxes


def test_box_iou_of_identical_half_and_disjoint_boxes():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [20, 20, 30, 30]])
    assert box_iou(a, b).tolist() == [[1.0, 0.5, 0.0]]


def test_matching_is_one_to_one_and_needs_the_threshold():
    predicted = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]])
    true = np.array([[0, 0, 10, 10], [52, 52, 62, 62]])
    rows, cols = match_boxes(predicted, true)
    assert rows.tolist() == [0] and cols.tolist() == [0]  # the near-duplicate gets no second box
    rows, _ = match_boxes(predicted, true, iou_threshold=0.4)
    assert sorted(rows.tolist()) == [0, 2]


def test_score_detections_counts_and_diameters():
    instances = np.zeros((64, 64), np.int32)
    yy, xx = np.ogrid[:64, :64]
    instances[(yy - 16) ** 2 + (xx - 16) ** 2 <= 36] = 1   # a disc of radius 6 in its 13 px box
    instances[40:44, 40:44] = 2                            # a particle nobody drew
    true = np.array([[9.5, 9.5, 22.5, 22.5], [50, 5, 60, 15]])
    scores = score_detections(instances, true)
    assert (scores.predicted, scores.true, scores.matched) == (2, 2, 1)
    assert scores.precision == scores.recall == scores.f1 == 0.5
    area = (instances == 1).sum()
    assert scores.median_diameter_error == pytest.approx(abs(np.sqrt(4 * area / np.pi) - 13) / 13)


def test_yolo_boxes_are_in_pixels():
    boxes = yolo_boxes("0 0.5 0.25 0.1 0.2\n\n", height=200, width=100)
    assert boxes.tolist() == [[45.0, 30.0, 55.0, 70.0]]
