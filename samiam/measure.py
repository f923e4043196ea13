"""Measurements a microscopist takes home from K material masks: area fractions, particle sizes,
layer thickness and roughness.

Every material gets its area fraction of the image and one of three kinds
(thresholds: :class:`~samiam.settings.MeasureSettings`):

* ``particles``: many small compact connected components (at least ``min_particles`` of at least
  ``min_particle_px``, median area at most ``max_particle_fraction`` of the image, median solidity
  at least ``min_solidity``). Measured: the number of particles inside the image and the
  distribution of their equivalent-circle diameters ``2 sqrt(area / pi)``. Particles touching the
  image border are cut by it: they are counted apart (``edge_cut``) and not measured.
* ``layer``: one band across the image (its largest component, holes filled, holds
  ``min_layer_share`` of the material and reaches two opposite sides). Its direction is the
  principal axis of its pixels, refined once by the mean slope of the two interfaces fitted as
  lines. Pixels are binned by their position along that direction (bins 1 px wide, centred on the
  pixels of a band along x or y); in each bin the thickness along the normal is the bin's pixel
  count (area per unit length) and the two interfaces lie at the outermost pixels along the
  normal. Bins whose cross-section touches the image border (and their neighbours) are left out.
  Thickness: the mean over the bins (its standard deviation includes the pixel grid's steps, about
  1 px on a tilted band); roughness: the RMS deviation of each interface from its fitted line (Rq;
  about 0.3 px on a straight tilted band, from the same steps).
* ``region``: anything else (a matrix, a substrate cut by the border): area fraction only.

A particle material's particles one by one (:func:`particle_instances`): the kept proposals
assigned to it, each clipped to the material, so that touching particles proposed apart stay apart.

Lengths are in nm when the pixel size is known (any unit :data:`samiam.scale.NM_PER_UNIT`
knows: pm, Å, nm, µm, ...), else in px.

>>> yy, xx = np.mgrid[:64, :64]
>>> band = (yy >= 20) & (yy < 30)
>>> measure_materials(band[None], pixel_size=2, pixel_unit="Å").materials[0].layer.thickness
2.0
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.measure import label as label_regions
from skimage.measure import regionprops

from samiam import masks as masklib
from samiam.calibration import normalise_unit
from samiam.scale import pixel_nm
from samiam.settings import MeasureSettings

KINDS = ("particles", "layer", "region")
"""Values of :attr:`MaterialMeasurement.kind`."""
EIGHT_CONNECTED = np.ones((3, 3), bool)
"""Pixels that touch at a corner belong to one component."""
ANGLE_TOLERANCE = 1e-9
"""Directions this close (radians) to -90 degrees are vertical: 90 degrees."""


@dataclass(frozen=True)
class Distribution:
    """Sizes of one material's particles: ``values`` ascending, with their summary statistics
    (``std``: population standard deviation; ``q05`` .. ``q95``: linear-interpolated quantiles)."""

    values: tuple[float, ...]
    median: float
    mean: float
    std: float
    q05: float
    q25: float
    q75: float
    q95: float


@dataclass(frozen=True)
class Particles:
    """``count`` particles inside the image, their equivalent-circle ``diameters`` (None when
    ``count`` is 0) and ``edge_cut``, the particles touching the border (not measured)."""

    count: int
    edge_cut: int
    diameters: Distribution | None


@dataclass(frozen=True)
class Layer:
    """One band across the image.

    orientation_deg: its direction, degrees from the image's x axis towards its y axis (down):
        0 horizontal, 90 vertical, in (-90, 90].
    length: the length along the band that was measured (bins not touching the border).
    thickness, thickness_std: mean and standard deviation of the thickness along the normal.
    interfaces: the names of its two interfaces, ``("top", "bottom")`` for a band closer to
        horizontal, else ``("left", "right")``.
    interface_roughness: RMS deviation of each interface from a straight line, in that order.
    roughness: the quadratic mean of the two.
    """

    orientation_deg: float
    length: float
    thickness: float
    thickness_std: float
    interfaces: tuple[str, str]
    interface_roughness: tuple[float, float]
    roughness: float


@dataclass(frozen=True)
class MaterialMeasurement:
    """Material ``index`` (1-based, as in the label map) and its optional ``name``; ``kind`` one
    of :data:`KINDS`; ``particles`` or ``layer`` set for those kinds only."""

    index: int
    name: str | None
    kind: str
    area_fraction: float
    particles: Particles | None = None
    layer: Layer | None = None


@dataclass(frozen=True)
class Measurements:
    """Measurements of one image's materials; lengths in ``unit`` (``"nm"`` when ``nm_per_px``
    is known, else ``"px"``)."""

    unit: str
    nm_per_px: float | None
    height: int
    width: int
    materials: tuple[MaterialMeasurement, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON-serialisable: tuples become lists when dumped, no NaN)."""
        return dataclasses.asdict(self)


def measure_materials(materials: np.ndarray, pixel_size: float | None = None, pixel_unit: str | None = None,
                      names: tuple[str | None, ...] | None = None,
                      settings: MeasureSettings | None = None) -> Measurements:
    """Measure every material of ``materials: (K, H, W) bool``.

    ``pixel_size`` ``pixel_unit``: what one pixel measures (e.g. ``0.5, "Å"``); lengths are in px
    when either is None or the unit is no length. ``names``: K optional material names.
    """
    materials = np.asarray(materials, bool)
    if materials.ndim != 3:
        raise ValueError(f"materials must have shape (K, H, W); got {materials.shape}")
    settings = settings or MeasureSettings()
    nm_per_px = pixel_nm(pixel_size, normalise_unit(pixel_unit))
    length = 1.0 if nm_per_px is None else nm_per_px
    names = names or (None,) * len(materials)
    height, width = materials.shape[1:]
    return Measurements(
        unit="px" if nm_per_px is None else "nm", nm_per_px=nm_per_px, height=height, width=width,
        materials=tuple(_measure_material(k, name, mask, length, settings)
                        for k, (name, mask) in enumerate(zip(names, materials), 1)))


def _measure_material(index: int, name: str | None, mask: np.ndarray, length: float,
                      settings: MeasureSettings) -> MaterialMeasurement:
    """One material ``mask: (H, W) bool``; ``length``: units per pixel side."""
    area_fraction = float(mask.mean())
    particles = measure_particles(mask, settings)
    if particles is not None:
        return MaterialMeasurement(index, name, "particles", area_fraction,
                                   particles=_scaled_particles(particles, length))
    layer = measure_layer(mask, settings)
    if layer is not None:
        return MaterialMeasurement(index, name, "layer", area_fraction, layer=_scaled_layer(layer, length))
    return MaterialMeasurement(index, name, "region", area_fraction)


def measure_particles(mask: np.ndarray, settings: MeasureSettings | None = None) -> Particles | None:
    """The particles of ``mask: (H, W) bool`` with diameters in px, or None when ``mask`` is no
    particle material (the rule of the module docstring)."""
    settings = settings or MeasureSettings()
    labels, _ = ndimage.label(mask, EIGHT_CONNECTED)
    regions = [region for region in regionprops(labels) if region.area >= settings.min_particle_px]
    if len(regions) < settings.min_particles:
        return None
    areas = np.array([region.area for region in regions], float)
    solidity = np.array([region.solidity for region in regions])
    if np.median(areas) > settings.max_particle_fraction * mask.size or np.median(solidity) < settings.min_solidity:
        return None
    height, width = mask.shape
    cut = np.array([region.bbox[0] == 0 or region.bbox[1] == 0 or region.bbox[2] == height
                    or region.bbox[3] == width for region in regions])
    diameters = 2 * np.sqrt(areas[~cut] / np.pi)
    return Particles(count=int((~cut).sum()), edge_cut=int(cut.sum()), diameters=distribution(diameters))


def particle_instances(materials: np.ndarray, proposals: np.ndarray, assignment: np.ndarray,
                       settings: MeasureSettings | None = None) -> np.ndarray:
    """One label per particle of the particle materials -> ``(H, W) int32`` (0: no particle,
    1..P in no particular order).

    ``materials: (K, H, W) bool`` (disjoint), ``proposals: (N, H, W) bool`` and ``assignment:
    (N,) int`` (material index of each proposal, -1 when removed), as in
    :class:`samiam.pipeline.Segmentation`. For each material that :func:`measure_particles`
    takes for particles, each proposal assigned to it, clipped to the material (where proposals
    overlap the smaller one wins, as when the materials were made), is a particle; a clipped
    proposal in several 8-connected pieces is one particle per piece, and pieces smaller than
    ``settings.min_particle_px`` are specks, left out as :func:`measure_particles` leaves them out.
    """
    materials = np.asarray(materials, bool)
    assignment = np.asarray(assignment, np.int64)
    if materials.ndim != 3 or np.shape(proposals)[1:] != materials.shape[1:] or len(assignment) != len(proposals):
        raise ValueError(f"need materials (K, H, W), proposals (N, H, W) and assignment (N,) of one image; "
                         f"got {materials.shape}, {np.shape(proposals)} and {assignment.shape}")
    settings = settings or MeasureSettings()
    particle_materials = [k for k, mask in enumerate(materials) if measure_particles(mask, settings) is not None]
    chosen = np.flatnonzero(np.isin(assignment, particle_materials))
    owner = masklib.to_label_map(np.asarray(proposals, bool)[chosen]).astype(np.int64)  # 0: none, i+1: chosen[i]
    material = masklib.to_label_map(materials).astype(np.int64) - 1  # -1: no material
    owner[material != np.append(-1, assignment[chosen])[owner]] = 0  # clipped to its own material
    pieces = label_regions(owner, background=0, connectivity=2)
    sizes = np.bincount(pieces.ravel())
    sizes[0] = 0
    kept = sizes >= settings.min_particle_px
    renumber = np.where(kept, np.cumsum(kept), 0).astype(np.int32)
    return renumber[pieces]


def distribution(values: np.ndarray) -> Distribution | None:
    """``values: (N,) float`` as a :class:`Distribution`; None when N is 0."""
    if len(values) == 0:
        return None
    values = np.sort(np.asarray(values, float))
    q05, q25, median, q75, q95 = np.quantile(values, (0.05, 0.25, 0.5, 0.75, 0.95))
    return Distribution(values=tuple(values.tolist()), median=float(median), mean=float(values.mean()),
                        std=float(values.std()), q05=float(q05), q25=float(q25), q75=float(q75),
                        q95=float(q95))


def measure_layer(mask: np.ndarray, settings: MeasureSettings | None = None) -> Layer | None:
    """The band of ``mask: (H, W) bool`` measured in px, or None when ``mask`` is no layer (the
    rule of the module docstring)."""
    settings = settings or MeasureSettings()
    labels, count = ndimage.label(mask, EIGHT_CONNECTED)
    if count == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    if sizes.max() < settings.min_layer_share * sizes.sum():
        return None
    band = ndimage.binary_fill_holes(labels == np.argmax(sizes) + 1)
    if not (band[:, 0].any() and band[:, -1].any() or band[0].any() and band[-1].any()):
        return None
    angle = _principal_angle(band)
    profile = _profile(band, angle)
    if profile is None:
        return None
    angle = _half_turn(angle + math.atan(np.mean(profile.slopes)))
    profile = _profile(band, angle)
    if profile is None or len(profile.thickness) < settings.min_measured_length * profile.span:
        return None
    first, second = profile.roughness
    normal_x = -math.sin(angle)  # the normal (-sin, cos) points down, or left/right for a steep band
    if abs(angle) <= math.pi / 4:
        interfaces = ("top", "bottom")
    elif normal_x > 0:
        interfaces = ("left", "right")
    else:
        interfaces, first, second = ("left", "right"), second, first
    return Layer(orientation_deg=math.degrees(angle), length=float(len(profile.thickness)),
                 thickness=float(profile.thickness.mean()), thickness_std=float(profile.thickness.std()),
                 interfaces=interfaces, interface_roughness=(first, second),
                 roughness=math.sqrt((first ** 2 + second ** 2) / 2))


@dataclass(frozen=True)
class _Profile:
    """A band across 1 px bins along a direction: per measured bin its ``thickness`` (M,), and per
    interface (low, high along the normal) the ``slopes`` and RMS ``roughness`` of the fitted
    lines; ``span``: the number of bins the band covers, measured or not."""

    thickness: np.ndarray
    slopes: tuple[float, float]
    roughness: tuple[float, float]
    span: int


def _principal_angle(mask: np.ndarray) -> float:
    """Direction (radians, from x towards y) of the principal axis of the pixels of ``mask``."""
    ys, xs = np.nonzero(mask)
    covariance = np.cov(np.stack([xs, ys]).astype(float))
    values, vectors = np.linalg.eigh(covariance)
    x, y = vectors[:, np.argmax(values)]
    return math.atan2(y, x)


def _half_turn(angle: float) -> float:
    """The direction ``angle`` (radians; a line, so modulo pi) in (-pi/2, pi/2]."""
    angle = math.remainder(angle, math.pi)
    return angle + math.pi if angle <= -math.pi / 2 + ANGLE_TOLERANCE else angle


def _profile(band: np.ndarray, angle: float) -> _Profile | None:
    """Bin the pixels of ``band: (H, W) bool`` along ``angle``; None with fewer than 2 measured bins."""
    ys, xs = np.nonzero(band)
    along = xs * math.cos(angle) + ys * math.sin(angle)
    normal = -xs * math.sin(angle) + ys * math.cos(angle)
    bins = np.rint(along - along.min()).astype(np.int64)  # bins centred on the pixel centres
    span = int(bins.max()) + 1
    count = np.bincount(bins, minlength=span)
    low = np.full(span, np.inf)
    high = np.full(span, -np.inf)
    np.minimum.at(low, bins, normal)
    np.maximum.at(high, bins, normal)
    height, width = band.shape
    on_border = (ys == 0) | (xs == 0) | (ys == height - 1) | (xs == width - 1)
    touched = np.zeros(span, bool)
    touched[bins[on_border]] = True
    touched = ndimage.binary_dilation(touched)  # a cut cross-section can spill into its neighbour bins
    measured = (count > 0) & ~touched
    if measured.sum() < 2:
        return None
    position = np.flatnonzero(measured).astype(float)
    fits = [np.polynomial.Polynomial.fit(position, edge[measured], 1) for edge in (low, high)]
    return _Profile(
        thickness=count[measured].astype(float),
        slopes=tuple(float(fit.convert().coef[-1]) for fit in fits),
        roughness=tuple(float(np.sqrt(np.mean((edge[measured] - fit(position)) ** 2)))
                        for fit, edge in zip(fits, (low, high))),
        span=span)


def _scaled_particles(particles: Particles, length: float) -> Particles:
    """``particles`` with diameters in units of ``length`` per px."""
    if particles.diameters is None or length == 1.0:
        return particles
    return dataclasses.replace(particles, diameters=distribution(np.array(particles.diameters.values) * length))


def _scaled_layer(layer: Layer, length: float) -> Layer:
    """``layer`` with lengths in units of ``length`` per px."""
    return dataclasses.replace(
        layer, length=layer.length * length, thickness=layer.thickness * length,
        thickness_std=layer.thickness_std * length,
        interface_roughness=tuple(value * length for value in layer.interface_roughness),
        roughness=layer.roughness * length)
