"""Particle detection scored against boxes drawn by people (``shared/data/particles``).

A predicted particle is an instance region; a true one is a box. They are paired one to one by
**box IoU** (the region's bounding box against the drawn box), maximising the summed IoU over
pairs of at least ``iou_threshold`` (0.5, the usual detection rule; :func:`match_boxes`).
Precision = matched / predicted, recall = matched / true, F1 their harmonic mean.

Size: each matched pair's *equivalent-circle diameters*, the region's ``sqrt(4 area / pi)``
against the box's ``sqrt(w h)`` (the diameter of a circle with the area of the ellipse inscribed
in the box), and the relative error ``|d_region - d_box| / d_box``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DETECTION_IOU = 0.5
"""Box IoU from which a predicted particle and a drawn box may be paired."""


@dataclass(frozen=True)
class DetectionScores:
    """Counts and diameters of one image (or pooled over several).

    diameter_errors: (M,) float64, relative equivalent-diameter error of each matched pair.
    """

    predicted: int
    true: int
    matched: int
    diameter_errors: np.ndarray

    @property
    def precision(self) -> float:
        return self.matched / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        return self.matched / self.true if self.true else 0.0

    @property
    def f1(self) -> float:
        total = self.predicted + self.true
        return 2 * self.matched / total if total else 0.0

    @property
    def median_diameter_error(self) -> float:
        """Median relative diameter error of the matched pairs (NaN when none matched)."""
        return float(np.median(self.diameter_errors)) if len(self.diameter_errors) else float("nan")

    def __add__(self, other: DetectionScores) -> DetectionScores:
        return DetectionScores(self.predicted + other.predicted, self.true + other.true,
                               self.matched + other.matched,
                               np.concatenate([self.diameter_errors, other.diameter_errors]))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every pair of boxes ``a: (A, 4)`` and ``b: (B, 4)``, each ``(x0, y0, x1, y1)`` in
    px with exclusive ends -> ``(A, B) float64``."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match_boxes(predicted: np.ndarray, true: np.ndarray,
                iou_threshold: float = DETECTION_IOU) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one pairs of ``predicted: (A, 4)`` and ``true: (B, 4)`` boxes with IoU of at least
    ``iou_threshold``, maximising the summed IoU -> ``(rows, cols)``, each ``(M,) int64``."""
    from scipy.optimize import linear_sum_assignment

    iou = box_iou(predicted, true)
    if iou.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    eligible = iou >= iou_threshold
    rows, cols = linear_sum_assignment(np.where(eligible, iou, 0.0), maximize=True)
    keep = eligible[rows, cols]
    return rows[keep].astype(np.int64), cols[keep].astype(np.int64)


def instance_boxes(instances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounding boxes ``(P, 4)`` (x0, y0, x1, y1, exclusive ends) and areas ``(P,)`` of the
    labels 1..P of ``instances: (H, W) int`` (0 = no particle); labels without pixels are skipped."""
    from scipy import ndimage

    boxes, areas = [], []
    counts = np.bincount(instances.ravel())
    for label, found in enumerate(ndimage.find_objects(instances), start=1):
        if found is None:
            continue
        rows, cols = found
        boxes.append((cols.start, rows.start, cols.stop, rows.stop))
        areas.append(counts[label])
    return np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(areas, np.float64)


def score_detections(instances: np.ndarray, true_boxes: np.ndarray,
                     iou_threshold: float = DETECTION_IOU) -> DetectionScores:
    """Score the particle ``instances: (H, W) int`` (0 = none, one label per particle) against
    ``true_boxes: (B, 4)`` (x0, y0, x1, y1 in px), by the rule of the module docstring."""
    boxes, areas = instance_boxes(instances)
    rows, cols = match_boxes(boxes, true_boxes, iou_threshold)
    true_boxes = np.asarray(true_boxes, np.float64).reshape(-1, 4)
    d_region = np.sqrt(4 * areas[rows] / np.pi)
    d_box = np.sqrt((true_boxes[cols, 2] - true_boxes[cols, 0]) * (true_boxes[cols, 3] - true_boxes[cols, 1]))
    return DetectionScores(len(boxes), len(true_boxes), len(rows), np.abs(d_region - d_box) / d_box)


def yolo_boxes(text: str, height: int, width: int) -> np.ndarray:
    """Boxes of a YOLO label file (``class cx cy w h`` per line, normalised to 0..1) as
    ``(B, 4)`` (x0, y0, x1, y1) in px of a ``height`` x ``width`` image."""
    rows = [line.split() for line in text.splitlines() if line.strip()]
    values = np.asarray([[float(v) for v in row[1:5]] for row in rows], np.float64).reshape(-1, 4)
    cx, cy, w, h = values[:, 0] * width, values[:, 1] * height, values[:, 2] * width, values[:, 3] * height
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
