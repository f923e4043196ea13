"""Mask removal by geometry: the paper's Algorithm 1, vectorised over all pairs.

For masks A (parent candidate) and B (child candidate) with intersection I = |A & B|, using
the thresholds of :class:`~samiam.settings.RemovalSettings`:

* **redundant**: I/|B| > redundant_overlap and I/|A| > redundant_overlap. The smaller mask is
  removed (on an exact area tie the one with the higher index).
* **child**: B is a child of A when I/|B| > child_inside and I/|A| < child_inside (strict,
  as in the authors' code, pnnl/SAMIAm).
* **tiny child**: a child B of A with I/|A| < tiny_child is removed.
* **compound**: a parent A whose children with I/|A| > tiny_child cover more than
  compound_covered of it is removed. The cover is the *sum* of the children's fractions, as
  the authors compute it, so overlapping children count twice; it is computed as
  ``sum(I) / |A|`` in integers, which is the same number without rounding.
* **island**: a mask smaller than the island area (see :func:`island_area_pixels`) that is
  no mask's child, and whose surroundings are unsegmented — less than island_surrounded
  (default: all) of a ring island_ring px wide around it is covered by other masks — is
  removed (the paper's "island within a greater surrounding region that was not segmented";
  a particle cut out of its segmented support stays). A small mask that is a child is judged by the tiny-child rule.
* **empty**: a mask without pixels is removed.

Every rule is evaluated on the original set (removals do not cascade); the removed set is the
union. Each removed mask gets one reason, by priority: empty, redundant, tiny_child,
compound, island.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from samiam import masks as masklib
from samiam.booster.overlaps import pairwise_intersections
from samiam.settings import REFERENCE_SIDE, RemovalSettings, scale_to_image

REASONS = ("empty", "redundant", "tiny_child", "compound", "island")
"""Removal reasons, in priority order (a mask removed by several rules gets the first)."""
_DEFAULTS = RemovalSettings()


@dataclass(frozen=True)
class RemovalResult:
    """Outcome of :func:`remove_masks` for N proposals.

    keep: (N,) bool, True for the masks that survive.
    reasons: (N,) object, None for kept masks, else one of :data:`REASONS`.
    intersections: (N, N) int64, exact pairwise intersection pixel counts (diagonal = areas).
    """

    keep: np.ndarray
    reasons: np.ndarray
    intersections: np.ndarray


def island_area_pixels(settings: RemovalSettings, height: int, width: int) -> float:
    """Island area threshold in pixels for a ``height`` x ``width`` image.

    ``settings.island_area`` is an *area* given at the 1024 x 1024 reference, so it scales with
    the pixel count: ``island_area * height * width / 1024**2`` (the square of
    :func:`samiam.settings.scale_to_image`'s length scaling).
    """
    return settings.island_area * (height * width) / REFERENCE_SIDE ** 2


def ring_width(settings: RemovalSettings, height: int, width: int) -> int:
    """Island ring width in pixels for a ``height`` x ``width`` image (at least 1)."""
    return max(1, round(scale_to_image(settings.island_ring, height, width)))


def ring_coverage(masks: np.ndarray, candidates: np.ndarray, ring: int) -> np.ndarray:
    """Fraction of a ``ring``-pixel band around each candidate mask covered by the other masks.

    masks: (N, H, W) bool; candidates: (N,) bool -> (N,) float64 (0 where not a candidate or
    where the band is empty). The band is the mask dilated by a (2 ring + 1)² square, minus the
    mask; only each candidate's bounding box (grown by ``ring``) is touched.
    """
    import cv2

    coverage = np.zeros(len(masks))
    square = np.ones((2 * ring + 1, 2 * ring + 1), np.uint8)
    for i in np.flatnonzero(candidates):
        (top, left, bottom, right), = masklib.bounding_boxes(masks[i:i + 1])  # a view, no copy
        y0, y1 = max(top - ring, 0), min(bottom + ring, masks.shape[1])
        x0, x1 = max(left - ring, 0), min(right + ring, masks.shape[2])
        window = masks[:, y0:y1, x0:x1]
        own = window[i]
        band = cv2.dilate(own.view(np.uint8), square, borderType=cv2.BORDER_CONSTANT, borderValue=0) \
            .astype(bool) & ~own
        others = window.sum(axis=0, dtype=np.int32) > own  # some other mask covers the pixel
        coverage[i] = (band & others).sum() / band.sum() if band.any() else 0.0
    return coverage


def remove_masks(masks: np.ndarray, settings: RemovalSettings = _DEFAULTS) -> RemovalResult:
    """Decide which proposals to drop, by the geometric rules above.

    masks: (N, H, W) bool (N may be 0) -> :class:`RemovalResult`.

    >>> m = np.zeros((3, 100, 100), bool)
    >>> m[0] = True; m[1, :50] = True; m[2, 50:] = True   # a parent and its two halves
    >>> remove_masks(m).reasons.tolist()
    ['compound', None, None]
    """
    masks = masklib.as_mask_stack(masks)
    n, height, width = masks.shape
    inter = pairwise_intersections(masks)
    area = np.diagonal(inter).copy()
    related = (inter > 0) & ~np.eye(n, dtype=bool)  # [a, b]: parent candidate a, child b
    with np.errstate(divide="ignore", invalid="ignore"):
        of_child = np.where(related, inter / area[None, :], 0.0)   # I / |b|
        of_parent = np.where(related, inter / area[:, None], 0.0)  # I / |a|
    index = np.arange(n)
    smaller = (area[None, :] < area[:, None]) | \
        ((area[None, :] == area[:, None]) & (index[None, :] > index[:, None]))
    redundant = (of_child > settings.redundant_overlap) & (of_parent > settings.redundant_overlap)
    child = related & (of_child > settings.child_inside) & (of_parent < settings.child_inside)
    covered = np.where(child & (of_parent > settings.tiny_child), inter, 0).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cover = np.where(area > 0, covered / area, 0.0)
    small_orphan = (area > 0) & (area < island_area_pixels(settings, height, width)) & ~child.any(axis=0)
    removed_by = (
        area == 0,
        (redundant & smaller).any(axis=0),
        (child & (of_parent < settings.tiny_child)).any(axis=0),
        cover > settings.compound_covered,
        small_orphan & (ring_coverage(masks, small_orphan, ring_width(settings, height, width))
                        < settings.island_surrounded),
    )
    reasons = np.full(n, None, dtype=object)
    for reason, flagged in zip(reversed(REASONS), reversed(removed_by)):  # first reason wins
        reasons[flagged] = reason
    return RemovalResult(keep=~np.any(removed_by, axis=0), reasons=reasons, intersections=inter)
