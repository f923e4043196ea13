"""The paper's evaluation metrics, as its authors' evaluation code computes them.

For one image with ground-truth masks G_1..G_n and predicted masks P_1..P_m:

* **matching** -- G_j is matched by every P_k with IoU(P_k, G_j) > tau (a prediction may match
  several ground-truth masks);
* **per ground-truth mask** -- the *mean* of each pair metric (IoU, recall, precision, F1) over
  its matched predictions (0 when none matches), and the false-positive rate FPR_j: the sum of
  the IoUs of every matched prediction except the best one;
* **per image** -- the (optionally weighted) mean over ground-truth masks, in percent;
* **boundary variant** -- the same pair metrics between the boundary bands of the matched pairs;
* **panoptic quality** (Kirillov et al. 2019) as a one-to-one summary next to them.

See ``docs/metrics.md`` for the formulas, a worked example and where samiam deliberately differs
from the reference code.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from samiam import masks as masklib
from samiam.errors import MaskSetError
from samiam.settings import MetricSettings

PAIR_METRICS = ("iou", "recall", "precision", "f1", "fpr")
"""Metrics averaged over ground-truth masks, computed on whole masks and on boundary bands."""
METRICS = (*PAIR_METRICS, *(f"boundary_{m}" for m in PAIR_METRICS), "pq", "sq", "rq")
"""Every percentage field of :class:`ImageScores`, in table order."""
ALL = "all"
"""Name of the summary row over every image, whatever its difficulty."""


@dataclass(frozen=True)
class PairStats:
    """Pixel counts of every (prediction, ground truth) pair.

    intersection: (M, G) float, |P_k ∩ G_j|; pred_area: (M,) float; gt_area: (G,) float.
    """

    intersection: np.ndarray
    pred_area: np.ndarray
    gt_area: np.ndarray

    @property
    def iou(self) -> np.ndarray:
        """(M, G) float64, |P∩G| / |P∪G| (0 when both are empty)."""
        union = self.pred_area[:, None] + self.gt_area[None, :] - self.intersection
        return _ratio(self.intersection, union)

    @property
    def recall(self) -> np.ndarray:
        """(M, G) float64, |P∩G| / |G|."""
        return _ratio(self.intersection, self.gt_area[None, :])

    @property
    def precision(self) -> np.ndarray:
        """(M, G) float64, |P∩G| / |P|."""
        return _ratio(self.intersection, self.pred_area[:, None])

    @property
    def f1(self) -> np.ndarray:
        """(M, G) float64, harmonic mean of precision and recall (0 when either is 0)."""
        precision, recall = self.precision, self.recall
        return _ratio(2 * precision * recall, precision + recall)


@dataclass(frozen=True)
class ImageScores:
    """The paper's metrics of one image, in percent (0-100), except the counts.

    ``fpr`` is an IoU-weighted count of superfluous masks per ground-truth mask, times 100: two
    extra fragments each overlapping a material with IoU 0.3 give 60.
    """

    iou: float
    recall: float
    precision: float
    f1: float
    fpr: float
    boundary_iou: float
    boundary_recall: float
    boundary_precision: float
    boundary_f1: float
    boundary_fpr: float
    pq: float
    sq: float
    rq: float
    n_gt: int
    n_pred: int

    def as_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)


def pair_stats(pred: np.ndarray, gt: np.ndarray) -> PairStats:
    """Intersections and areas of every pair, counted exactly on bit-packed masks.

    pred: (M, H, W) bool; gt: (G, H, W) bool -> :class:`PairStats` with (M, G) intersections.
    One vectorised AND + popcount over all predictions per ground-truth mask (G is small).
    """
    if pred.shape[1:] != gt.shape[1:]:
        raise MaskSetError(f"predictions are {pred.shape[1]}x{pred.shape[2]} (HxW) but the ground truth "
                           f"is {gt.shape[1]}x{gt.shape[2]}")
    pixels = pred.shape[1] * pred.shape[2]
    packed_pred = np.packbits(pred.reshape(len(pred), pixels), axis=1)
    packed_gt = np.packbits(gt.reshape(len(gt), pixels), axis=1)
    intersection = np.zeros((len(pred), len(gt)))
    for j, packed in enumerate(packed_gt):
        intersection[:, j] = np.bitwise_count(packed_pred & packed).sum(axis=1)
    return PairStats(intersection=intersection, pred_area=masklib.areas(pred).astype(np.float64),
                     gt_area=masklib.areas(gt).astype(np.float64))


def boundary_width(height: int, width: int, ratio: float = MetricSettings.boundary_ratio) -> int:
    """Band width d = round(ratio * image diagonal), at least 1 px (Cheng et al. 2021)."""
    return max(1, round(ratio * math.hypot(height, width)))


def boundary_masks(masks: np.ndarray, width: int | None = None) -> np.ndarray:
    """Boundary band of each mask: the mask minus its erosion by ``width`` iterations of a 3x3
    square, with everything outside the image counting as background (so a mask touching the
    image border has a band along it).

    masks: (N, H, W) bool -> (N, H, W) bool. ``width`` defaults to :func:`boundary_width`.
    """
    masks = masklib.as_mask_stack(masks)
    width = boundary_width(*masks.shape[1:]) if width is None else width
    # `width` 3x3 erosions = one erosion by a (2*width+1) square: a separable minimum filter.
    side = 2 * width + 1
    eroded = ndimage.minimum_filter(masks, size=(1, side, side), mode="constant", cval=False)
    return masks & ~eroded


def masks_from_labels(labels: np.ndarray) -> np.ndarray:
    """Label map -> its non-empty masks: ``(H, W) int -> (K, H, W) bool`` (label 0 is background)."""
    masks = masklib.from_label_map(np.asarray(labels))
    return masks[masklib.areas(masks) > 0]


def score_image(pred: np.ndarray, gt: np.ndarray, iou_threshold: float | None = None,
                weights: Sequence[float] | None = None,
                settings: MetricSettings | None = None) -> ImageScores:
    """Score the predictions of one image against its ground truth.

    pred: (M, H, W) bool masks (may overlap; M may be 0) or an (H, W) integer label map.
    gt: (G, H, W) bool, one mask per ground-truth region.
    iou_threshold: a prediction matches a ground-truth mask when IoU > this (default
        ``settings.iou_threshold``, 0.05). Matching always uses whole masks; the boundary metrics
        are computed over the same matched pairs.
    weights: (G,) non-negative weights of the ground-truth masks for the per-image mean (the
        paper's "weighted" variant); None weighs every mask equally.
    settings: the evaluation knobs (boundary band ratio, panoptic match threshold); defaults
        to ``MetricSettings()``.

    Empty masks carry no region and are ignored (an empty ground-truth mask drops its weight too).
    Raises :class:`MaskSetError` when no non-empty ground-truth mask is left or shapes differ.
    """
    settings = settings or MetricSettings()
    iou_threshold = settings.iou_threshold if iou_threshold is None else iou_threshold
    gt = masklib.as_mask_stack(gt)
    pred = np.asarray(pred)
    pred = masks_from_labels(pred) if pred.ndim == 2 and pred.dtype != bool else masklib.as_mask_stack(pred)
    weights = np.ones(len(gt)) if weights is None else np.asarray(weights, np.float64)
    if weights.shape != (len(gt),) or (weights < 0).any():
        raise MaskSetError(f"need one non-negative weight per ground-truth mask ({len(gt)}); "
                           f"got {weights.tolist()}")
    gt_kept = masklib.areas(gt) > 0
    gt, weights = gt[gt_kept], weights[gt_kept]
    pred = pred[masklib.areas(pred) > 0]
    if not len(gt) or weights.sum() == 0:
        raise MaskSetError("no ground-truth mask with pixels and positive weight: nothing to score")

    stats = pair_stats(pred, gt)
    matched = stats.iou > iou_threshold
    width = boundary_width(*gt.shape[1:], settings.boundary_ratio)
    boundary = pair_stats(boundary_masks(pred, width), boundary_masks(gt, width))
    region_scores = _image_means(stats, matched, weights)
    boundary_scores = _image_means(boundary, matched, weights)
    return ImageScores(
        **region_scores, **{f"boundary_{k}": v for k, v in boundary_scores.items()},
        **panoptic_quality(stats.iou, settings.pq_iou_threshold), n_gt=len(gt), n_pred=len(pred))


def panoptic_quality(iou: np.ndarray, threshold: float = MetricSettings.pq_iou_threshold) -> dict[str, float]:
    """PQ, SQ and RQ in percent from the (M, G) IoU matrix (Kirillov et al. 2019).

    Pairs with IoU > ``threshold`` are matched one-to-one, highest IoU first (for disjoint masks
    and threshold 0.5 such pairs are unique anyway; raw proposals may overlap).
    PQ = sum IoU(TP) / (TP + FP/2 + FN/2), SQ = sum IoU(TP) / TP, RQ = TP / (TP + FP/2 + FN/2).
    """
    n_pred, n_gt = iou.shape
    used_pred, used_gt, matched_iou = set(), set(), []
    candidates = np.argwhere(iou > threshold)
    for k, j in candidates[np.argsort(-iou[tuple(candidates.T)], kind="stable")]:
        if k not in used_pred and j not in used_gt:
            used_pred.add(k)
            used_gt.add(j)
            matched_iou.append(iou[k, j])
    tp = len(matched_iou)
    denominator = tp + (n_pred - tp) / 2 + (n_gt - tp) / 2
    total = float(sum(matched_iou))
    return {"pq": 100 * _safe_div(total, denominator), "sq": 100 * _safe_div(total, tp),
            "rq": 100 * _safe_div(tp, denominator)}


def summarize(rows: Iterable[dict], metrics: Sequence[str] = METRICS) -> list[dict]:
    """Mean of per-image values per difficulty class, then over every image.

    rows: dicts with a ``"difficulty"`` key (None when unknown) and the ``metrics`` keys.
    Returns one dict per difficulty class (sorted) and a last one with difficulty :data:`ALL`,
    each with ``n_images`` and the mean of every metric. The ``ALL`` row is the mean over images,
    not over classes. Classes are listed only when at least one row has a difficulty.
    """
    rows = list(rows)
    groups: dict[object, list[dict]] = defaultdict(list)
    for row in rows:
        if row.get("difficulty") is not None:
            groups[row["difficulty"]].append(row)
    ordered = [(key, groups[key]) for key in sorted(groups, key=_natural_key)] + [(ALL, rows)]
    return [{"difficulty": key, "n_images": len(group),
             **{m: float(np.mean([r[m] for r in group])) if group else 0.0 for m in metrics}}
            for key, group in ordered]


def _image_means(stats: PairStats, matched: np.ndarray, weights: np.ndarray) -> dict[str, float]:
    """Per-GT means over matched predictions and the FPR, then the weighted mean over GT, in %."""
    n_matched = matched.sum(axis=0)
    per_gt = {name: _ratio((getattr(stats, name) * matched).sum(axis=0), n_matched)
              for name in ("iou", "recall", "precision", "f1")}
    matched_iou = stats.iou * matched
    best = matched_iou.max(axis=0) if len(matched_iou) else np.zeros(matched.shape[1])
    per_gt["fpr"] = matched_iou.sum(axis=0) - best
    return {name: 100 * float(np.average(values, weights=weights)) for name, values in per_gt.items()}


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Elementwise numerator / denominator, 0 where the denominator is 0."""
    numerator = np.asarray(numerator, np.float64)
    denominator = np.asarray(denominator, np.float64)
    out = np.zeros(np.broadcast_shapes(numerator.shape, denominator.shape))
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _safe_div(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def _natural_key(value: object) -> tuple:
    """Sort difficulty classes numerically when they are numbers, else by text."""
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))
