"""Compact spots (nanoparticles, precipitates, voids) of a micrograph, at every scale and both
polarities, with their outlines at full resolution.

1. The image is shrunk to at most :data:`WORK_SIDE` px per side (a spot a few px across at 2048
   px is still one or two px there) and stretched to 0..1 between its 0.5 and 99.5 percentiles.
2. Scale space: the scale-normalised Laplacian of Gaussian ``-sigma^2 LoG`` (bright spots
   positive; the image negated for dark ones) at sigmas ``r / sqrt(2)`` for radii ``r`` from
   ``min_radius`` up to 1/16 of the shorter side, a factor ``sqrt(2)`` apart. Candidates are its
   local maxima over space and scale; a weaker candidate whose centre lies inside a stronger
   one's radius is the same spot.
3. A candidate of radius ``r`` is a spot when its core (radius ``r / 2``) stands out from the
   median of a ring ``1.5 r .. 2.5 r`` around it by ``spot_contrast`` of the stretched range and
   by ``spot_noise`` times the pixel noise (1.4826 median absolute deviations of the image minus
   its 1 px Gaussian blur): the support's lumps are wide and low, a particle is bright (HAADF)
   or dark (bright field) against what surrounds it.
4. Polarity: one per image, the sign of the intensity's skewness (:func:`polarity`): bright
   spots in a bright-field image are the gaps between dark particles, and the other way round.
5. Outlines, at full resolution: each spot's pixels within ``2 r`` of its centre, connected to
   it, where the intensity (blurred over :data:`OUTLINE_SIGMA` px of the working image) is above
   half way between the ring's median and the core's mean (the half-maximum contour of a blurred
   particle); touching spots are split by a watershed of the intensity from their centres.

The thresholds were set on the particles set's tuning half (``shared/data/particles``: Cu,
PtCo, PtW; see ``docs/benchmarks.md``), never on its reporting half.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WORK_SIDE = 1024
"""Spots are detected on the image shrunk to at most this many px per side."""
STRETCH_PERCENTILES = (0.5, 99.5)
"""The working image is stretched to 0..1 between these percentiles."""
SCALE_STEP = np.sqrt(2.0)
"""Consecutive radii of the scale space differ by this factor."""
MAX_RADIUS_SIDES = 16
"""The largest spot radius is the working image's shorter side over this."""
CORE = 0.5
"""A spot's core, whose mean is its brightness, has this fraction of its radius."""
RING = (1.5, 2.5)
"""A spot's surroundings: the ring between these multiples of its radius."""
REACH = 2.0
"""A spot's outline lies within this multiple of its radius from its centre."""
OUTLINE_SIGMA = 0.7
"""The outline is found on the image blurred over this many working-image px."""
LOG_FLOOR = 0.01
"""Scale-space maxima below this (in the stretched range) are not candidates (noise; saves time)."""
MAD_TO_STD = 1.4826


@dataclass(frozen=True)
class Spots:
    """Spots of one image.

    labels: (H, W) int32 at the image's resolution, 0 outside spots, 1..S.
    polarity: (S,) int8, +1 for a bright spot, -1 for a dark one.
    contrast: (S,) float32, core mean minus ring median, in the stretched 0..1 range (>0 for both polarities).
    centres: (S, 2) float64, (row, col) of each spot's centre in image px.
    radii: (S,) float64, the scale-space radius of each spot in image px.
    scores: (S,) float32 in (0, 1), ``contrast / (contrast + least)``, where ``least`` is the
        contrast a spot needs (0.5 for a spot just at the threshold, 0.75 at three times it).
    """

    labels: np.ndarray
    polarity: np.ndarray
    contrast: np.ndarray
    centres: np.ndarray
    radii: np.ndarray
    scores: np.ndarray

    @property
    def count(self) -> int:
        return len(self.polarity)


@dataclass(frozen=True)
class _Candidates:
    """Spots of one polarity at the working resolution: centres (S, 2) int, radii (S,), contrast (S,)."""

    centres: np.ndarray
    radii: np.ndarray
    contrast: np.ndarray


def find_spots(grey: np.ndarray, contrast: float, noise: float, min_radius: float = 1.0) -> Spots:
    """Spots of ``grey: (H, W) float`` standing out by ``contrast`` (of the stretched range) and
    ``noise`` pixel-noise standard deviations, at least ``min_radius`` image px in radius
    (a lattice's atom columns are below its period) -> :class:`Spots`.

    >>> yy, xx = np.mgrid[:128, :128]
    >>> image = np.random.default_rng(0).normal(0.2, 0.01, (128, 128))
    >>> for y, x in [(30, 30), (30, 90), (90, 60)]:
    ...     image[(yy - y) ** 2 + (xx - x) ** 2 <= 25] += 0.5
    >>> spots = find_spots(image, contrast=0.15, noise=3)
    >>> spots.count, spots.polarity.tolist()
    (3, [1, 1, 1])
    """
    import cv2
    from skimage.transform import downscale_local_mean

    grey = np.asarray(grey, np.float32)
    factor = max(1, int(np.ceil(max(grey.shape) / WORK_SIDE)))
    work = downscale_local_mean(grey, (factor, factor)).astype(np.float32) if factor > 1 else grey
    low, high = np.percentile(work, STRETCH_PERCENTILES)
    work = (work - low) / (high - low if high > low else 1.0)
    fine = cv2.GaussianBlur(work, (0, 0), 1.0)
    pixel_noise = MAD_TO_STD * float(np.median(np.abs((work - fine) - np.median(work - fine))))
    radii = _radii(max(min_radius / factor, 1.0), min(work.shape) / MAX_RADIUS_SIDES)
    floor = max(contrast, noise * pixel_noise)
    sign = polarity(work)
    return _outlines(grey, work, factor, [(sign, _candidates(work, fine, sign, radii, floor))], floor)


def polarity(image: np.ndarray) -> int:
    """+1 when the spots of ``image: (h, w)`` are bright (HAADF), -1 when dark (bright field):
    the sign of the intensity's skewness. Particles are the minority of the pixels, so they make
    the long tail of the histogram (on the particles set this names all 6 bright-field images
    and the 27 others right)."""
    values = image.ravel().astype(np.float64)
    centred = values - values.mean()
    return 1 if float(np.mean(centred ** 3)) >= 0 else -1


def _radii(smallest: float, largest: float) -> np.ndarray:
    """Spot radii of the scale space, ``smallest`` times powers of :data:`SCALE_STEP` up to ``largest``."""
    count = max(1, int(np.floor(np.log(max(largest, smallest) / smallest) / np.log(SCALE_STEP))) + 1)
    return smallest * SCALE_STEP ** np.arange(count)


def _candidates(work: np.ndarray, fine: np.ndarray, sign: float, radii: np.ndarray,
                floor: float) -> _Candidates:
    """Spots of one polarity (``sign`` +1 bright, -1 dark) of the stretched ``work: (h, w)``
    image (``fine``: it blurred over 1 px) whose core stands out from their ring by ``floor``."""
    from scipy import ndimage

    image = sign * work
    stack = np.stack([-(r / np.sqrt(2)) ** 2 * ndimage.gaussian_laplace(image, r / np.sqrt(2), mode="reflect")
                      for r in radii])
    peaks = (stack == ndimage.maximum_filter(stack, size=3, mode="nearest")) & (stack > LOG_FLOOR)
    scale, rows, cols = np.nonzero(peaks)
    order = np.argsort(-stack[scale, rows, cols], kind="stable")
    scale, rows, cols = scale[order], rows[order], cols[order]
    taken = np.zeros(work.shape, bool)
    centres, kept_radii, contrasts = [], [], []
    smooth = sign * fine
    for k, y, x in zip(scale, rows, cols):
        if taken[y, x]:
            continue
        radius = radii[k]
        window, (y0, x0), distance = _window(smooth, y, x, RING[1] * radius)
        levels = _core_and_ring(window, distance, radius)
        difference = levels[0] - levels[1] if levels else 0.0
        if difference < floor:
            continue
        inside = distance <= radius
        taken[y0:y0 + window.shape[0], x0:x0 + window.shape[1]] |= inside
        centres.append((y, x))
        kept_radii.append(radius)
        contrasts.append(difference)
    return _Candidates(np.asarray(centres, np.int64).reshape(-1, 2), np.asarray(kept_radii, np.float64),
                       np.asarray(contrasts, np.float64))


def _window(image: np.ndarray, y: float, x: float,
            reach: float) -> tuple[np.ndarray, tuple[int, int], np.ndarray]:
    """The part of ``image`` within ``reach`` px (a square) of ``(y, x)``, its top-left corner, and
    each of its pixels' distance from ``(y, x)`` (same shape as the part)."""
    reach = int(np.ceil(reach))
    y0, x0 = max(0, int(y) - reach), max(0, int(x) - reach)
    window = image[y0:int(y) + reach + 1, x0:int(x) + reach + 1]
    distance = np.hypot(*np.ogrid[y0 - y:y0 - y + window.shape[0], x0 - x:x0 - x + window.shape[1]])
    return window, (y0, x0), distance


def _core_and_ring(window: np.ndarray, distance: np.ndarray, radius: float) -> tuple[float, float] | None:
    """A spot's core mean and ring median (:data:`CORE`, :data:`RING`) in ``window``, whose pixels
    lie ``distance`` from its centre; None when the window holds no ring or no core."""
    ring = window[(distance > RING[0] * radius) & (distance <= RING[1] * radius)]
    core = window[distance <= max(CORE * radius, 1.0)]
    if not ring.size or not core.size:
        return None
    return float(core.mean()), float(np.median(ring))

def _outlines(grey: np.ndarray, work: np.ndarray, factor: int,
              kept: list[tuple[int, _Candidates]], least: float) -> Spots:
    """Full-resolution outlines of the ``kept`` spots of each polarity (see the module docstring)."""
    import cv2
    from scipy import ndimage
    from skimage.segmentation import watershed

    shape = grey.shape
    stretched = (np.asarray(grey, np.float32) - grey.min()) / max(float(np.ptp(grey)), 1e-12)
    blurred = cv2.GaussianBlur(stretched, (0, 0), OUTLINE_SIGMA * factor)
    labels = np.zeros(shape, np.int32)
    markers = np.zeros(shape, np.int32)
    polarity, contrast, centres, radii = [], [], [], []
    flooded = np.zeros(shape, np.float32)
    for sign, found in kept:
        image = sign * blurred
        for (y, x), radius, difference in zip(found.centres, found.radii, found.contrast):
            cy, cx, r = (y + 0.5) * factor - 0.5, (x + 0.5) * factor - 0.5, radius * factor
            window, (y0, x0), distance = _window(image, cy, cx, RING[1] * r)
            levels = _core_and_ring(window, distance, r)
            if levels is None:
                continue
            half = sum(levels) / 2
            region = (window >= half) & (distance <= REACH * r)
            pieces = ndimage.label(region)[0]
            centre = pieces[min(round(cy) - y0, window.shape[0] - 1), min(round(cx) - x0, window.shape[1] - 1)]
            if centre == 0:
                continue
            index = len(polarity) + 1
            part = labels[y0:y0 + window.shape[0], x0:x0 + window.shape[1]]
            part[(pieces == centre) & (part == 0)] = index
            markers[min(round(cy), shape[0] - 1), min(round(cx), shape[1] - 1)] = index
            flooded[y0:y0 + window.shape[0], x0:x0 + window.shape[1]][pieces == centre] = -window[pieces == centre]
            polarity.append(sign)
            contrast.append(difference)
            centres.append((cy, cx))
            radii.append(r)
    if polarity:
        labels = watershed(flooded, markers=markers, mask=labels > 0).astype(np.int32)
    present = np.bincount(labels.ravel(), minlength=len(polarity) + 1)[1:] > 0  # a spot swallowed by a neighbour
    renumber = np.zeros(len(polarity) + 1, np.int32)
    renumber[1:][present] = np.arange(1, present.sum() + 1)
    contrast = np.asarray(contrast, np.float32)[present]
    return Spots(renumber[labels], np.asarray(polarity, np.int8)[present], contrast,
                 np.asarray(centres, np.float64).reshape(-1, 2)[present], np.asarray(radii, np.float64)[present],
                 (contrast / (contrast + least)).astype(np.float32))
