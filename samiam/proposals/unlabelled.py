"""Areas that belong to no material: vacuum and dark gap bands along interfaces.

In a Z-contrast (HAADF, ADF) micrograph, vacuum is the darkest area of the image, with no signal
but noise, and an interface often carries a thin dark band (a gap, an amorphous interlayer) that
belongs to neither neighbour. Both are left out of the proposals, so that they are not counted as
a material of their own nor smeared into a neighbour's mask.

* **Vacuum**: connected areas, at least one texture window in area, where the intensity smoothed
  over half a lattice period (``level``, in the image's stretched 0..1 range) is below
  ``classical_vacuum_level``, grown within the reach of the smoothing over the pixels darker
  than half the median level elsewhere (so that its edge lies half-way up to the material).
* **Gap bands**: thin dark valleys. The black top-hat of ``level`` over a square of two lattice
  periods (its grey closing minus ``level``), relative to the closing, is the depth of a valley
  narrower than two periods below its surroundings; a step between two materials has none. Its
  connected areas deeper than ``classical_gap_depth`` that run at least
  :data:`GAP_MIN_LENGTH` of the image's shorter side and are on average at most
  :data:`GAP_MAX_THICKNESS` periods thick are gap bands (dark speckle of an amorphous film is
  deep too, but neither long nor thin). Each band grows, within the reach of the smoothing, over
  the pixels at least half as deep, so that its edges lie half-way down the valley.
"""

from __future__ import annotations

import numpy as np

GAP_MIN_LENGTH = 0.25
"""A gap band spans at least this fraction of the image's shorter side (its bounding box's longer side)."""
GAP_MAX_THICKNESS = 2.0
"""A gap band is on average at most this many lattice periods thick (area / length)."""
CLOSING_PERIODS = 2.0
"""Side of the grey closing's square, in lattice periods: valleys narrower than this are filled."""
EDGE_SIGMAS = 2.0
"""Vacuum and gap bands grow by this many smoothing sigmas (half a period) to their half-level edges."""


def unlabelled_areas(level: np.ndarray, period: float, window: float, vacuum_level: float,
                     gap_depth: float) -> np.ndarray:
    """Vacuum and gap bands (module docstring) of ``level: (h, w) float``, the image smoothed over
    half a lattice ``period`` (px), with a texture ``window`` sigma (px) -> ``(h, w) bool``."""
    from scipy import ndimage

    vacuum = _vacuum(level, period, window, vacuum_level)
    side = max(3, round(CLOSING_PERIODS * period) | 1)
    closing = ndimage.grey_closing(level, size=(side, side), mode="reflect")
    depth = (closing - level) / np.maximum(closing, 1e-6)
    valleys, count = ndimage.label(depth > gap_depth)
    if count == 0:
        return vacuum
    area = np.bincount(valleys.ravel(), minlength=count + 1)
    length = np.zeros(count + 1)
    for index, box in enumerate(ndimage.find_objects(valleys), start=1):
        length[index] = max(box[0].stop - box[0].start, box[1].stop - box[1].start)
    band = ((length >= GAP_MIN_LENGTH * min(level.shape))
            & (area <= GAP_MAX_THICKNESS * period * np.maximum(length, 1)))
    band[0] = False
    core = band[valleys]
    reach = max(1, int(np.ceil(EDGE_SIGMAS * period / 2)))
    near = ndimage.binary_dilation(core, np.ones((2 * reach + 1, 2 * reach + 1), bool))
    return vacuum | core | (near & (depth > gap_depth / 2))


def _vacuum(level: np.ndarray, period: float, window: float, vacuum_level: float) -> np.ndarray:
    """Vacuum of ``level: (h, w)``: its large areas below ``vacuum_level``, grown by the reach of
    the smoothing (half a period, times :data:`EDGE_SIGMAS`) over the pixels darker than half the
    median level elsewhere, so that the edge lies where the signal is half-way up, not where the
    smoothed tail of the material first dips below ``vacuum_level``."""
    from scipy import ndimage

    core = _large(level < vacuum_level, np.pi * window ** 2)
    if not core.any() or core.all():
        return core
    reach = max(1, int(np.ceil(EDGE_SIGMAS * period / 2)))
    half = 0.5 * float(np.median(level[~core]))
    near = ndimage.binary_dilation(core, np.ones((2 * reach + 1, 2 * reach + 1), bool))
    return core | (near & (level < half))


def _large(mask: np.ndarray, min_area: float) -> np.ndarray:
    """Connected areas of ``mask: (h, w) bool`` with at least ``min_area`` pixels."""
    from scipy import ndimage

    parts, count = ndimage.label(mask)
    if count == 0:
        return mask
    area = np.bincount(parts.ravel(), minlength=count + 1)
    large = area >= min_area
    large[0] = False
    return large[parts]
