"""Mask removal by geometry, the paper's Algorithm 1 vectorised over all pairs, and by contrast: populations.

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
* **population** (beyond the paper, issue #16): tiny children and islands (not redundant ones)
  that share an intensity distinct from their surroundings are a material — nanoparticles,
  precipitates, voids — and are kept. A candidate's contrast is its mean grey value minus the
  median of a ring island_ring px wide around it (other candidates left out), in the ring's
  robust noise, at least the image's pixel noise (:func:`ring_contrast`). The candidates at least population_contrast bright (or dark), no
  more than population_spread times the median contrast of those, are a population when there are
  at least population_members of them (:func:`populations`). Noise islands still go: those
  like their surroundings (weak contrast), unlike each other (either sign, or far stronger than
  the others) or too few to be a population.

Every rule is evaluated on the original set (removals do not cascade); the removed set is the
union, less the populations' members. Each removed mask gets one reason, by priority: empty,
redundant, tiny_child, compound, island.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from samiam import masks as masklib
from samiam.booster.overlaps import pairwise_intersections
from samiam.errors import MaskSetError, SettingsError
from samiam.settings import REFERENCE_SIDE, RemovalSettings, scale_to_image

REASONS = ("empty", "redundant", "tiny_child", "compound", "island")
"""Removal reasons, in priority order (a mask removed by several rules gets the first)."""
_DEFAULTS = RemovalSettings()
ROBUST_SIGMA = 1.4826
"""Median absolute deviation -> standard deviation, for normal noise."""


@dataclass(frozen=True)
class RemovalResult:
    """Outcome of :func:`remove_masks` for N proposals.

    keep: (N,) bool, True for the masks that survive.
    reasons: (N,) object, None for kept masks, else one of :data:`REASONS`.
    intersections: (N, N) int64, exact pairwise intersection pixel counts (diagonal = areas).
    population: (N,) int64, the population each kept tiny child or island belongs to (0, 1: the
        bright one first; see :func:`populations`), -1 for every other mask.
    """

    keep: np.ndarray
    reasons: np.ndarray
    intersections: np.ndarray
    population: np.ndarray


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


def _bands(masks: np.ndarray, candidates: np.ndarray,
           ring: int) -> Iterator[tuple[int, tuple[int, int, int, int], np.ndarray, np.ndarray]]:
    """For each candidate mask i of ``masks: (N, H, W) bool`` (``candidates: (N,) bool``): ``i``,
    the window (y0, y1, x0, x1) of its bounding box grown by ``ring``, its mask in that window and
    the band around it there: (h, w) bool each, the mask dilated by a (2 ring + 1)² square, minus
    the mask."""
    import cv2

    square = np.ones((2 * ring + 1, 2 * ring + 1), np.uint8)
    for i in np.flatnonzero(candidates):
        (top, left, bottom, right), = masklib.bounding_boxes(masks[i:i + 1])  # a view, no copy
        y0, y1 = max(top - ring, 0), min(bottom + ring, masks.shape[1])
        x0, x1 = max(left - ring, 0), min(right + ring, masks.shape[2])
        own = masks[i, y0:y1, x0:x1]
        band = cv2.dilate(own.view(np.uint8), square, borderType=cv2.BORDER_CONSTANT, borderValue=0) \
            .astype(bool) & ~own
        yield i, (y0, y1, x0, x1), own, band


def ring_coverage(masks: np.ndarray, candidates: np.ndarray, ring: int) -> np.ndarray:
    """Fraction of a ``ring``-pixel band around each candidate mask covered by the other masks.

    masks: (N, H, W) bool; candidates: (N,) bool -> (N,) float64 (0 where not a candidate or
    where the band is empty). The band is the mask dilated by a (2 ring + 1)² square, minus the
    mask; only each candidate's bounding box (grown by ``ring``) is touched.
    """
    coverage = np.zeros(len(masks))
    for i, (y0, y1, x0, x1), own, band in _bands(masks, candidates, ring):
        others = masks[:, y0:y1, x0:x1].sum(axis=0, dtype=np.int32) > own  # another mask covers the pixel
        coverage[i] = (band & others).sum() / band.sum() if band.any() else 0.0
    return coverage


def ring_contrast(grey: np.ndarray, masks: np.ndarray, candidates: np.ndarray, ring: int) -> np.ndarray:
    """Contrast of each candidate mask against the ``ring``-pixel band around it, in the band's
    robust noise: (mean of ``grey`` in the mask - median in the band) / (1.4826 x the band's median
    absolute deviation, at least the image's :func:`pixel_noise`).

    grey: (H, W) float; masks: (N, H, W) bool; candidates: (N,) bool -> (N,) float64, 0 where not a
    candidate. The band (as in :func:`ring_coverage`) leaves out every candidate's pixels, so that
    neighbouring particles do not count as surroundings; an empty band gives 0, a constant band
    +-inf (0 when the mask has the band's value too).
    """
    contrast = np.zeros(len(masks))
    if not candidates.any():
        return contrast
    others = np.any(masks, axis=0, where=candidates[:, None, None])  # no copy of the candidates' stack
    floor = pixel_noise(grey)
    for i, (y0, y1, x0, x1), own, band in _bands(masks, candidates, ring):
        window = grey[y0:y1, x0:x1]
        around = window[band & ~others[y0:y1, x0:x1]]
        if len(around) == 0:
            continue
        centre = np.median(around)
        step = float(window[own].mean() - centre)
        noise = max(ROBUST_SIGMA * float(np.median(np.abs(around - centre))), floor)
        contrast[i] = step / noise if noise > 0 else (0.0 if step == 0 else np.copysign(np.inf, step))
    return contrast


def pixel_noise(grey: np.ndarray) -> float:
    """Robust standard deviation of ``grey: (H, W)``'s pixel noise: 1.4826 x the median absolute
    difference of horizontal neighbours, over sqrt(2) (texture smoother than a pixel cancels)."""
    step = np.abs(np.diff(np.asarray(grey, np.float64), axis=1))
    return ROBUST_SIGMA * float(np.median(step)) / np.sqrt(2.0) if step.size else 0.0


def populations(contrast: np.ndarray, candidates: np.ndarray, settings: RemovalSettings) -> np.ndarray:
    """Which candidates form a population (rule of the module docstring), from their
    :func:`ring_contrast`.

    contrast: (N,) float; candidates: (N,) bool -> (N,) int64, 0 for the members of the bright
    population, 1 for those of the dark one (numbered in that order, only those that exist), -1
    for every other mask.
    """
    population = np.full(len(contrast), -1, np.int64)
    found = 0
    for sign in (1.0, -1.0):
        strength = sign * contrast
        distinct = candidates & (strength >= settings.population_contrast)
        if not distinct.any():
            continue
        typical = float(np.median(strength[distinct]))
        alike = distinct & (strength <= settings.population_spread * typical)
        if alike.sum() >= settings.population_members:
            population[alike] = found
            found += 1
    return population


def check_settings(settings: RemovalSettings) -> None:
    """Raise :class:`~samiam.errors.SettingsError` naming every population setting out of range."""
    problems = [f"removal.{name} must be {rule}; got {value!r}" for name, value, ok, rule in (
        ("population_contrast", settings.population_contrast, settings.population_contrast > 0, "positive"),
        ("population_spread", settings.population_spread, settings.population_spread >= 1, "at least 1"),
        ("population_members", settings.population_members, settings.population_members >= 1, "at least 1"),
    ) if not ok]
    if problems:
        raise SettingsError("; ".join(problems))


def remove_masks(masks: np.ndarray, grey: np.ndarray, settings: RemovalSettings = _DEFAULTS) -> RemovalResult:
    """Decide which proposals to drop, by the geometric rules and the population rule above.

    masks: (N, H, W) bool (N may be 0); grey: (H, W) float, the image they were proposed on (the
    population rule reads it; a constant image makes no population) -> :class:`RemovalResult`.

    >>> m = np.zeros((3, 100, 100), bool)
    >>> m[0] = True; m[1, :50] = True; m[2, 50:] = True   # a parent and its two halves
    >>> remove_masks(m, np.zeros((100, 100))).reasons.tolist()
    ['compound', None, None]
    """
    check_settings(settings)
    masks = masklib.as_mask_stack(masks)
    n, height, width = masks.shape
    grey = np.asarray(grey, np.float64)
    if grey.shape != (height, width):
        raise MaskSetError(f"the masks are {height}x{width} (HxW) but the image is "
                           f"{'x'.join(map(str, grey.shape))}")
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
    ring = ring_width(settings, height, width)
    tiny = (child & (of_parent < settings.tiny_child)).any(axis=0)
    island = small_orphan & (ring_coverage(masks, small_orphan, ring) < settings.island_surrounded)
    duplicate = (redundant & smaller).any(axis=0)
    candidates = (tiny | island) & ~duplicate
    population = populations(ring_contrast(grey, masks, candidates, ring), candidates, settings)
    member = population >= 0
    removed_by = (area == 0, duplicate, tiny & ~member, cover > settings.compound_covered, island & ~member)
    reasons = np.full(n, None, dtype=object)
    for reason, flagged in zip(reversed(REASONS), reversed(removed_by)):  # first reason wins
        reasons[flagged] = reason
    return RemovalResult(keep=~np.any(removed_by, axis=0), reasons=reasons, intersections=inter,
                         population=population)
