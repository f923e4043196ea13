"""Physical scale of a micrograph: how many nm one pixel measures, and the booster's lengths in px.

The booster looks at textures through crops and judges islands by their area; both are lengths on
the specimen. With ``image.scale`` ``physical`` they are given in nm and converted per image:
island area and ring are those lengths; the crop keeps the reference rule's share of the field
(so a mask holds as many crops as its share of the view gives, at any magnification: SAM's masks
are parts of the view, and the K estimator counts crops) but is held between
``merging.crop_min_nm`` (a few lattice cells: a texture needs them) and ``merging.crop_nm``.
The scale comes from

1. the file's pixel size (:attr:`samiam.io.Micrograph.pixel_size`, in any length unit
   :data:`NM_PER_UNIT` knows), else
2. the lattice period estimated from the image's power spectrum (:func:`lattice_period`), taken
   to measure ``image.period_nm``, else
3. none: the reference rule (px at the 1024 px reference side, scaled with the image size).

:func:`settings_for_image` turns a :class:`~samiam.settings.Settings` into the one for a given image,
whose pixel-valued lengths at the reference side give those nm on that image; the booster's
modules read only those.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from samiam.errors import SettingsError
from samiam.settings import REFERENCE_SIDE, MergingSettings, Settings, scale_to_image

SCALE_RULES = ("physical", "reference")
"""Values of ``image.scale``."""
NM_PER_UNIT = {"pm": 1e-3, "Å": 0.1, "nm": 1.0, "µm": 1e3, "mm": 1e6, "m": 1e9}
"""nm per unit, for the units :func:`samiam.calibration.normalise_unit` writes (others: unknown)."""
MIN_CROP_PX = 12
"""Smallest crop side in px a physical length becomes (a texture needs a few px per fringe)."""
MAX_CROP_FRACTION = 0.25
"""Largest crop side a physical length becomes, as a fraction of the image's shorter side."""
SPECTRUM_TILE = 1024
"""The power spectrum is averaged over square tiles of at most this side (bounded memory)."""
MAX_TILES_PER_AXIS = 3
"""At most this many tiles per axis, spread evenly over the image."""
MIN_PERIODS_PER_TILE = 8
"""Periods are searched among those that fit at least this often in a tile's side."""
MIN_PERIOD_PX = 2.5
"""Shortest period searched, in px (above the 2 px Nyquist period, where the spectrum is cut)."""
BACKGROUND_SPAN = 0.3
"""The smooth background under a spectral peak at ring r is the median of the profile over
rings r / (1 + span) .. r * (1 + span) (broad humps, such as amorphous speckle, follow it)."""
MIN_PEAK_CONTRAST = 2.0
"""A lattice peak rises at least this many times above its background ..."""
MIN_PEAK_SIGNIFICANCE = 10.0
"""... and by at least this many standard errors of the ring's mean power (a ring of n
frequencies averages n exponential powers: relative standard error 1 / sqrt(n)) ..."""
MIN_PEAK_SHARE = 0.005
"""... and its power above the background is at least this fraction of the image's variance
(lattices on the synthetic scenes: 5-40 %; a smooth image's spectrum ends in ripples of ~1e-9)."""


@dataclass(frozen=True)
class ImageScale:
    """What one pixel of an image measures: ``nm_per_px``; ``source`` is ``"file"`` (its stated
    pixel size) or ``"lattice"`` (estimated from its lattice period)."""

    nm_per_px: float
    source: str


def pixel_nm(pixel_size: float | None, pixel_unit: str | None) -> float | None:
    """A file's pixel size in nm; None when it states none, or in a unit that is no length."""
    per_unit = NM_PER_UNIT.get(pixel_unit or "")
    if pixel_size is None or per_unit is None or not math.isfinite(pixel_size) or pixel_size <= 0:
        return None
    return pixel_size * per_unit


def lattice_period(grey: np.ndarray) -> float | None:
    """The strongest lattice period in px of ``grey: (H, W) float``, or None without a clear lattice.

    The power spectrum (Hann-windowed, averaged over up to :data:`MAX_TILES_PER_AXIS` squared
    tiles of side ``min(H, W, SPECTRUM_TILE)``) is averaged over rings of equal |frequency|
    (ring r: period tile / r). Among periods from :data:`MIN_PERIOD_PX` to
    tile / :data:`MIN_PERIODS_PER_TILE`, the rings that rise above the median of their
    neighbourhood (:data:`BACKGROUND_SPAN`) by :data:`MIN_PEAK_CONTRAST`,
    :data:`MIN_PEAK_SIGNIFICANCE` and :data:`MIN_PEAK_SHARE` are peaks; the period is that of the
    peak with the most power above its background, refined by a parabola through its neighbours.
    Noise, amorphous speckle and smooth gradients have no peak: None.
    """
    h, w = np.shape(grey)
    tile = min(h, w, SPECTRUM_TILE)
    lowest, highest = MIN_PERIODS_PER_TILE, int(tile / MIN_PERIOD_PX)
    if highest <= lowest + 2:
        return None
    profile, counts = _ring_profile(grey, tile)
    background = _running_median(profile, BACKGROUND_SPAN)
    rings = np.arange(lowest, highest + 1)
    rise = profile[rings] / np.maximum(background[rings], np.finfo(float).tiny)
    significance = (rise - 1) * np.sqrt(counts[rings])
    share = (profile[rings] - background[rings]) * counts[rings] / max(float(profile @ counts), np.finfo(float).tiny)
    passing = (rise >= MIN_PEAK_CONTRAST) & (significance >= MIN_PEAK_SIGNIFICANCE) & (share >= MIN_PEAK_SHARE)
    if not passing.any():
        return None
    best = int(rings[np.argmax(np.where(passing, share, 0.0))])
    return tile / _refined_peak(np.log(np.maximum(profile, np.finfo(float).tiny)), best)


def image_scale(grey: np.ndarray, pixel_size: float | None, pixel_unit: str | None,
                period_nm: float) -> ImageScale | None:
    """The scale of an image ``grey: (H, W) float`` whose file states ``pixel_size`` ``pixel_unit``
    (both may be None): the stated one, else its lattice period taken to measure ``period_nm``,
    else None."""
    stated = pixel_nm(pixel_size, pixel_unit)
    if stated is not None:
        return ImageScale(stated, "file")
    period = lattice_period(grey)
    return None if period is None else ImageScale(period_nm / period, "lattice")


def crop_px(merging: MergingSettings, scale: ImageScale, height: int, width: int) -> int:
    """Crop side in px on an image of ``height`` x ``width`` at ``scale``: the reference side
    (``merging.crop_size`` scaled to the image) held between ``merging.crop_min_nm`` and
    ``merging.crop_nm``, then bounded to :data:`MIN_CROP_PX` .. :data:`MAX_CROP_FRACTION` of the
    shorter side."""
    field_share = scale_to_image(merging.crop_size, height, width)
    held = min(max(field_share, merging.crop_min_nm / scale.nm_per_px), merging.crop_nm / scale.nm_per_px)
    largest = max(int(MAX_CROP_FRACTION * min(height, width)), 1)
    return int(min(max(round(held), MIN_CROP_PX), largest))


def settings_for_image(settings: Settings, grey: np.ndarray, pixel_size: float | None,
                   pixel_unit: str | None) -> tuple[Settings, ImageScale | None]:
    """The settings for one image ``grey: (H, W)`` whose file states ``pixel_size`` ``pixel_unit``,
    and its scale (None when unknown or ``image.scale`` is ``reference``).

    With a known scale (``image.scale`` physical), ``merging.crop_size``, ``removal.island_area``
    and ``removal.island_ring`` are replaced by the values at the 1024 px reference side that give
    the crop side of :func:`crop_px`, ``removal.island_nm`` squared and
    ``removal.island_ring_nm`` on this image (``crop_size`` is an integer at the reference side:
    the crop side comes out within half a reference px, 1 px on images up to 2048 px); otherwise
    ``settings`` are returned unchanged.
    Raises :class:`SettingsError` for an unknown rule or lengths that are not positive.
    """
    check(settings)
    if settings.image.scale == "reference":
        return settings, None
    scale = image_scale(grey, pixel_size, pixel_unit, settings.image.period_nm)
    if scale is None:
        return settings, None
    height, width = grey.shape
    per_reference = REFERENCE_SIDE / math.sqrt(height * width)  # reference px per image px
    crop = crop_px(settings.merging, scale, height, width)
    island = settings.removal.island_nm / scale.nm_per_px
    ring = settings.removal.island_ring_nm / scale.nm_per_px
    return replace(
        settings,
        merging=replace(settings.merging, crop_size=max(round(crop * per_reference), 1)),
        removal=replace(settings.removal, island_area=(island * per_reference) ** 2,
                        island_ring=ring * per_reference)), scale


def check(settings: Settings) -> None:
    """Raise :class:`SettingsError` naming every scale setting out of range."""
    problems = [f"{name} must be {rule}; got {value!r}" for name, value, ok, rule in (
        ("image.scale", settings.image.scale, settings.image.scale in SCALE_RULES,
         f"one of {', '.join(SCALE_RULES)}"),
        ("image.period_nm", settings.image.period_nm, settings.image.period_nm > 0, "positive"),
        ("merging.crop_min_nm", settings.merging.crop_min_nm, settings.merging.crop_min_nm > 0, "positive"),
        ("merging.crop_nm", settings.merging.crop_nm, settings.merging.crop_nm >= settings.merging.crop_min_nm,
         f"at least merging.crop_min_nm ({settings.merging.crop_min_nm!r})"),
        ("removal.island_nm", settings.removal.island_nm, settings.removal.island_nm >= 0, "at least 0"),
        ("removal.island_ring_nm", settings.removal.island_ring_nm, settings.removal.island_ring_nm > 0,
         "positive"),
    ) if not ok]
    if problems:
        raise SettingsError("; ".join(problems))


def _ring_profile(grey: np.ndarray, tile: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean power per ring of |frequency| (ring r: r cycles per ``tile`` px) over the tiles of
    ``grey: (H, W)``, and the number of frequencies averaged per ring: two ``(tile // 2 + 1,)``
    float64 arrays (ring 0, the mean, is left out: power 0)."""
    h, w = grey.shape
    window = np.outer(np.hanning(tile), np.hanning(tile))
    radius = np.hypot(np.fft.fftfreq(tile)[:, None], np.fft.rfftfreq(tile)[None, :])
    ring = np.rint(radius * tile).astype(np.int64).ravel()
    power = np.zeros(radius.shape)
    tops, lefts = _tile_origins(h, tile), _tile_origins(w, tile)
    for top in tops:
        for left in lefts:
            patch = np.asarray(grey[top:top + tile, left:left + tile], np.float64)
            power += np.abs(np.fft.rfft2((patch - patch.mean()) * window)) ** 2
    rings = tile // 2 + 1
    counts = np.bincount(ring, minlength=rings)[:rings].astype(np.float64)
    total = np.bincount(ring, power.ravel(), minlength=rings)[:rings]
    profile = total / np.maximum(counts, 1)
    profile[0] = 0.0
    return profile, counts * len(tops) * len(lefts)


def _tile_origins(length: int, tile: int) -> np.ndarray:
    """Start of each tile along an axis of ``length`` px: ``(n,) int64``, evenly spread, n <= 3."""
    n = min(MAX_TILES_PER_AXIS, math.ceil(length / tile))
    return np.unique(np.rint(np.linspace(0, length - tile, n)).astype(np.int64))


def _running_median(profile: np.ndarray, span: float) -> np.ndarray:
    """Median of ``profile: (R,)`` over rings r / (1 + span) .. r (1 + span) at every ring r."""
    medians = np.zeros_like(profile)
    for r in range(1, len(profile)):
        low, high = max(int(r / (1 + span)), 1), min(math.ceil(r * (1 + span)), len(profile) - 1)
        medians[r] = np.median(profile[low:high + 1])
    return medians


def _refined_peak(values: np.ndarray, peak: int) -> float:
    """Sub-ring position of the maximum of ``values: (R,)`` at ``peak``: the vertex of the
    parabola through it and its two neighbours (``peak`` itself at the array's ends)."""
    if peak <= 0 or peak >= len(values) - 1:
        return float(peak)
    left, centre, right = values[peak - 1:peak + 2]
    curvature = left - 2 * centre + right
    return float(peak) if curvature >= 0 else peak + 0.5 * (left - right) / curvature
