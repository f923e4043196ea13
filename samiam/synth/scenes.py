"""Labelled synthetic cross-section micrographs (HAADF-STEM-like thin-film stacks).

:func:`generate_scene` stacks 2-4 horizontal regions (an optional vacuum on top, an optional
amorphous Pt/C cap, crystalline films and a substrate) separated by rough or stepped interfaces,
some with a dark gap band that belongs to no material. Crystalline regions are projected lattices
(:mod:`samiam.synth.lattices`); a material may carry an antiphase boundary (lattice shifted by
half a cell across a line) or a rotated grain, both of which stay part of that material's single
ground-truth mask. The signal is recorded through :mod:`samiam.synth.imaging`.

Difficulty classes follow the paper's: 1 = clearly different contrast and lattice; 2 = mean
intensities of neighbouring materials within a few per cent, different lattices; 3 = near-identical
lattices of one family (doped vs undoped perovskite) differing by a few per cent in intensity.

The whole scene is drawn from one random stream seeded by ``(seed, difficulty, size)``; lengths
are given at the 1024 px reference side and scale with ``size`` (same field of view). With
``zoom`` the same draws render the centre ``1 / zoom`` of that field of view at ``size`` px: the
same sample seen at ``zoom`` x the magnification (pixel size, probe blur and amorphous grain in
px follow; the dose per pixel stays). With ``sampling`` the field of view is rendered at
``sampling`` x ``size`` px a side (pixel size divided by ``sampling``; the same layout, new noise).
With ``layers_within`` below 1 every interface lies in the centre ``layers_within`` of the height
(layer thicknesses shrink with it): a stack a lab would zoom in on.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from itertools import pairwise

import numpy as np
from scipy import ndimage

from samiam.errors import SettingsError
from samiam.settings import REFERENCE_SIDE
from samiam.synth import imaging
from samiam.synth.lattices import (
    LatticeSpec,
    Placement,
    diamond_110,
    perovskite,
    render_columns,
    rhenium_trioxide,
    rocksalt_001,
)

DIFFICULTIES = (1, 2, 3)
VACUUM = "vacuum"
ANGSTROM_PER_NM = 10.0


@dataclass(frozen=True, eq=False)
class Scene:
    """One labelled synthetic micrograph.

    image: (H, W) float32 in [0, 1], detector counts linearly scaled.
    materials: (K, H, W) bool, pairwise disjoint ground-truth masks, one per material; gap bands
        and vacuum belong to none.
    names: the K material names, top to bottom.
    defects: what was placed, as JSON-ready dicts with a ``kind`` key (``antiphase_boundary``,
        ``grain_boundary``, ``gap_band``, ``narrow_layer``); positions and widths in image px.
    pixel_nm: what one pixel measures, in nm (None: not recorded).
    """

    image: np.ndarray
    materials: np.ndarray
    names: list[str]
    difficulty: int
    seed: int
    defects: list[dict] = field(default_factory=list)
    pixel_nm: float | None = None


@dataclass(frozen=True)
class Material:
    """A catalogue entry: ``lattice`` None means amorphous; ``family`` groups near-identical lattices."""

    name: str
    lattice: LatticeSpec | None
    family: str


CATALOGUE: dict[str, Material] = {m.name: m for m in (
    Material("SrTiO3", perovskite(3.905, 1.00, 0.55, 0.06), "titanate"),
    Material("La:SrTiO3", perovskite(3.905, 1.10, 0.55, 0.06), "titanate"),
    Material("Nb:SrTiO3", perovskite(3.905, 1.00, 0.63, 0.06), "titanate"),
    Material("LaFeO3", perovskite(3.930, 1.00, 0.45, 0.05), "ferrite"),
    Material("La0.8Sr0.2FeO3", perovskite(3.920, 0.93, 0.45, 0.05), "ferrite"),
    Material("LaMnO3", perovskite(3.950, 1.00, 0.42, 0.05), "ferrite"),
    Material("WO3", rhenium_trioxide(3.77, 1.00, 0.08), "tungstate"),
    Material("Ge", diamond_110(5.658, 1.00), "diamond"),
    Material("MgO", rocksalt_001(4.21, 1.00), "rocksalt"),
    Material("Pt/C", None, "amorphous"),
)}


@dataclass(frozen=True)
class SceneParams:
    """Ranges the generator draws from. Lengths in px at the 1024 px reference side."""

    angstrom_per_px: tuple[float, float] = (0.26, 0.38)
    """Pixel size; gives lattice periods of about 10-22 px at 1024 px."""
    column_sigma_angstrom: float = 0.45
    min_column_sigma_px: float = 0.5
    lattice_contrast: float = 0.8
    """Fraction of a crystal's mean signal carried by its atom columns (the rest is background)."""
    amorphous_contrast: float = 0.45
    amorphous_grain_angstrom: float = 1.2
    tilt_deg: float = 1.5
    start_level: tuple[float, float] = (0.35, 0.6)
    level_ratio: dict = field(default_factory=lambda: {1: (1.35, 1.9), 2: (1.0, 1.07), 3: (1.02, 1.06)})
    """Ratio of neighbouring materials' mean signal, per difficulty."""
    vacuum_level: float = 0.02
    gap_level: float = 0.25
    """Gap band signal as a fraction of the darker neighbour's level."""
    vacuum_chance: float = 0.3
    cap_chance: float = 0.5
    gap_chance: float = 0.35
    cap_gap_chance: float = 0.8
    narrow_chance: float = 0.3
    apb_chance: float = 0.6
    grain_chance: float = 0.35
    gap_width_px: tuple[float, float] = (4.0, 14.0)
    vacuum_px: tuple[float, float] = (60.0, 200.0)
    narrow_px: tuple[float, float] = (22.0, 45.0)
    min_layer_px: float = 90.0
    roughness_px: tuple[float, float] = (2.0, 14.0)
    roughness_wavelength_px: tuple[float, float] = (90.0, 600.0)
    roughness_harmonics: tuple[float, ...] = (0.6, 0.3, 0.1)
    """Amplitude weights of the sines of a rough interface (shorter wavelengths get less)."""
    terrace_px: tuple[float, float] = (120.0, 400.0)
    max_step_rise_px: float = 60.0
    """Terraces widen so that a stepped interface rises at most this much across the image."""
    amorphous_step_px: float = 12.0
    """Step height of a stepped interface above an amorphous region (no lattice cell to follow)."""
    gap_wobble: float = 0.2
    gap_wobble_length_px: float = 40.0
    """A gap band's width varies by +-gap_wobble of its mean over about this length."""
    scan_margin: float = 0.1
    """Interfaces are defined this fraction of the size beyond each side (scan drift reaches there)."""
    defect_min_thickness: float = 0.6
    """Only layers at least this fraction of min_layer_px thick get antiphase or grain boundaries."""
    stepped_chance: float = 0.4
    grain_width_px: tuple[float, float] = (80.0, 250.0)
    grain_rotation_deg: tuple[float, float] = (8.0, 30.0)
    boundary_incline_deg: float = 25.0
    material_counts: tuple[tuple[int, ...], tuple[float, ...]] = ((2, 3, 4), (0.45, 0.4, 0.15))


@dataclass(frozen=True)
class _Interface:
    """Top edge ``top(x)`` of region i+1 and bottom edge ``bottom(x)`` of the gap band above it.

    Both are sampled on ``xs`` (1 px apart). The gap band is ``top <= y < bottom``; its bottom
    follows the running maximum of ``top`` so that the band also covers the risers of steps, and
    the regions above and below a band never touch.
    """

    xs: np.ndarray
    top: np.ndarray
    bottom: np.ndarray

    @classmethod
    def with_band(cls, xs: np.ndarray, top: np.ndarray, width: np.ndarray) -> _Interface:
        if not width.any():
            return cls(xs, top, top)
        reach = 2 * int(np.ceil(width.max())) + 3
        return cls(xs, top, ndimage.maximum_filter1d(top, reach) + width)

    def at(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(top, bottom) at sample positions ``x``, float32 of x's shape."""
        return (np.interp(x, self.xs, self.top).astype(np.float32),
                np.interp(x, self.xs, self.bottom).astype(np.float32))


@dataclass(frozen=True)
class Stack:
    """What the images of one sample share: its materials top to bottom, their mean signal levels
    and the pixel size (Å per px at the 1024 px reference side)."""

    materials: tuple[str, ...]
    levels: tuple[float, ...]
    angstrom_per_px: float


def draw_stack(rng: np.random.Generator, difficulty: int, params: SceneParams = SceneParams()) -> Stack:
    """A random sample for a difficulty class, drawn as :func:`generate_scene` draws its own."""
    materials = _pick_materials(rng, difficulty, params)
    levels = _pick_levels(rng, difficulty, len(materials), params)
    return Stack(tuple(materials), tuple(levels), float(rng.uniform(*params.angstrom_per_px)))


def generate_scene(seed: int, difficulty: int, size: int = 1024,
                   params: SceneParams = SceneParams(), stack: Stack | None = None,
                   zoom: float = 1.0, sampling: int = 1, layers_within: float = 1.0) -> Scene:
    """Draw one labelled scene, deterministic per ``(seed, difficulty, size, stack, zoom,
    sampling, layers_within)``.

    With ``stack`` the scene shows that sample (materials, levels, pixel size; an image of a
    series, :func:`samiam.synth.series.generate_series`); layout, defects and imaging are drawn.
    ``zoom`` (at least 1) renders the centre of the same scene at that magnification (module
    docstring); materials outside the zoomed view are left out of ``materials`` and ``names``.
    ``sampling`` (a whole number, at least 1) renders the same field of view at ``sampling`` x
    ``size`` px a side; ``layers_within`` (0.25 .. 1) keeps the interfaces in that centre
    fraction of the height (module docstring).

    Returns a :class:`Scene` with ``image`` (P, P) float32 and ``materials`` (K, P, P) bool,
    ``P = size * sampling``.

    >>> scene = generate_scene(7, 2, size=256)
    >>> scene.image.shape, scene.materials.shape[1:]
    ((256, 256), (256, 256))
    """
    if difficulty not in DIFFICULTIES:
        raise SettingsError(f"difficulty must be one of {DIFFICULTIES}; got {difficulty!r}")
    if size < 64:
        raise SettingsError(f"scene size must be at least 64 px; got {size}")
    if not zoom >= 1:
        raise SettingsError(f"scene zoom must be at least 1; got {zoom!r}")
    if not (isinstance(sampling, int) and sampling >= 1):
        raise SettingsError(f"scene sampling must be a whole number of at least 1; got {sampling!r}")
    if not 0.25 <= layers_within <= 1:
        raise SettingsError(f"scene layers_within must be within 0.25 .. 1; got {layers_within!r}")
    rng = np.random.default_rng((seed, difficulty, size))
    scale = size / REFERENCE_SIDE
    if stack is None:
        materials = _pick_materials(rng, difficulty, params)
        levels = _pick_levels(rng, difficulty, len(materials), params)
    else:
        materials, levels = list(stack.materials), list(stack.levels)
    regions = ([VACUUM] if rng.random() < params.vacuum_chance and len(materials) < 4 else []) + materials
    angstrom_per_px = rng.uniform(*params.angstrom_per_px) / scale
    if stack is not None:
        angstrom_per_px = stack.angstrom_per_px / scale
    defects: list[dict] = []
    interfaces, thick = _layout(rng, regions, size, scale, angstrom_per_px, params, defects, layers_within)

    pixels = size * sampling
    acquisition = imaging.random_imaging(rng, difficulty)
    x, y = imaging.scan_coordinates((pixels, pixels), acquisition, rng)
    if sampling != 1:
        x, y = _resampled(x, sampling), _resampled(y, sampling)
    if zoom != 1:
        acquisition = replace(acquisition, probe_sigma_px=acquisition.probe_sigma_px * zoom)
        x, y = _towards_centre(x, size, 1 / zoom), _towards_centre(y, size, 1 / zoom)
    region = np.zeros((pixels, pixels), np.int8)
    gap = np.zeros((pixels, pixels), bool)
    for edge in interfaces:
        top, bottom = edge.at(x)
        region += y >= top
        gap |= (y >= top) & (y < bottom)

    level_of = dict(zip(materials, levels))
    signal = np.zeros((pixels, pixels), np.float32)
    tilt = np.deg2rad(rng.uniform(-params.tilt_deg, params.tilt_deg))
    masks = []
    for r, name in enumerate(regions):
        inside = (region == r) & ~gap
        if name == VACUUM:
            signal[inside] = params.vacuum_level
            continue
        masks.append(inside)
        material = CATALOGUE[name]
        if material.lattice is None:
            texture = _amorphous(rng, (pixels, pixels), angstrom_per_px / zoom / sampling, params)[inside]
        else:
            texture = _crystal(rng, material, inside, x, y, angstrom_per_px, tilt, thick[r], scale,
                               params, defects)
        signal[inside] = level_of[name] * texture
    for i, edge in enumerate(interfaces):
        darker = min(level_of.get(n, params.vacuum_level) for n in regions[i:i + 2])
        signal[gap & (region == i + 1)] = params.gap_level * darker
    image = imaging.acquire(signal, acquisition, rng)
    seen = [k for k, mask in enumerate(masks) if zoom == 1 or mask.any()]
    return Scene(image=image, materials=np.stack([masks[k] for k in seen]),
                 names=[materials[k] for k in seen], difficulty=difficulty, seed=seed,
                 defects=[_zoomed(defect, size, zoom, sampling) for defect in defects],
                 pixel_nm=angstrom_per_px / zoom / sampling / ANGSTROM_PER_NM)


def _resampled(coordinate: np.ndarray, sampling: int) -> np.ndarray:
    """Positions ``coordinate`` (any shape) in px of an image ``sampling`` x finer, in px of the
    scene's ``size`` (pixel centres line up: the same field of view)."""
    return ((coordinate + 0.5) / sampling - 0.5).astype(np.float32)


def _towards_centre(coordinate: np.ndarray, size: int, factor: float) -> np.ndarray:
    """Positions ``coordinate`` (any shape, px) moved towards the image centre by ``factor``."""
    centre = (size - 1) / 2
    return (centre + (coordinate - centre) * factor).astype(np.float32)


def _zoomed(defect: dict, size: int, zoom: float, sampling: int) -> dict:
    """A defect record with positions and widths in px of the image zoomed ``zoom`` times and
    sampled ``sampling`` times finer."""
    if zoom == 1 and sampling == 1:
        return defect
    positions = {key: round((float(_towards_centre(np.float32(value), size, zoom)) + 0.5) * sampling - 0.5, 1)
                 for key, value in defect.items() if key in ("x", "y", "x0", "x1")}
    widths = {key: round(value * zoom * sampling, 2) for key, value in defect.items() if key.endswith("_px")}
    return {**defect, **positions, **widths}


def _pick_materials(rng: np.random.Generator, difficulty: int, params: SceneParams) -> list[str]:
    """Material names top to bottom, pairwise distinct."""
    counts, weights = params.material_counts
    if difficulty == 3:
        families = sorted({m.family for m in CATALOGUE.values()
                           if sum(o.family == m.family for o in CATALOGUE.values()) >= 3})
        family = families[rng.integers(len(families))]
        members = [m.name for m in CATALOGUE.values() if m.family == family]
        n = int(rng.choice([c for c in counts if c <= len(members)]))
        return [str(s) for s in rng.permutation(members)[:n]]
    n = int(rng.choice(counts, p=weights))
    by_family: dict[str, list[str]] = {}
    for m in CATALOGUE.values():
        by_family.setdefault(m.family, []).append(m.name)
    crystalline = [f for f in by_family if f != "amorphous"]
    cap = rng.random() < params.cap_chance
    chosen = [str(f) for f in rng.permutation(crystalline)[:n - cap]]
    names = [by_family[f][rng.integers(len(by_family[f]))] for f in chosen]
    return (by_family["amorphous"][:1] if cap else []) + names


def _pick_levels(rng: np.random.Generator, difficulty: int, n: int, params: SceneParams) -> list[float]:
    """Mean signal of each material: a walk whose neighbour ratio is set by the difficulty."""
    low, high = params.level_ratio[difficulty]
    levels = [rng.uniform(*params.start_level)]
    direction = 1 if rng.random() < 0.5 else -1
    for _ in range(n - 1):
        ratio = rng.uniform(low, high)
        levels.append(levels[-1] * ratio ** direction)
        direction = -direction if difficulty == 1 else (1 if rng.random() < 0.5 else -1)
    return levels


def _profile(rng: np.random.Generator, xs: np.ndarray, step_px: float, scale: float,
             params: SceneParams) -> np.ndarray:
    """Interface height along x, minimum 0: rough (sum of sines) or stepped (one-cell terraces)."""
    if rng.random() < params.stepped_chance:
        terrace = max(rng.uniform(*params.terrace_px) * scale,
                      (xs[-1] - xs[0]) * step_px / (params.max_step_rise_px * scale))
        y = np.floor((xs + rng.uniform(0, terrace)) / terrace) * step_px
        y = y if rng.random() < 0.5 else y[::-1]
    else:
        y = np.zeros_like(xs)
        amplitude = rng.uniform(*params.roughness_px) * scale
        for weight in params.roughness_harmonics:
            wavelength = rng.uniform(*params.roughness_wavelength_px) * scale * weight ** 0.5
            y += weight * amplitude * np.sin(2 * np.pi * xs / wavelength + rng.uniform(0, 2 * np.pi))
    return y - y.min()


def _gap_band(rng: np.random.Generator, xs: np.ndarray, scale: float, params: SceneParams) -> np.ndarray:
    """Width (px, >= 1) along x of a dark band whose width wobbles slowly around a drawn mean."""
    width = rng.uniform(*params.gap_width_px) * scale
    wobble = ndimage.gaussian_filter1d(rng.normal(0, 1, xs.size), params.gap_wobble_length_px * scale)
    wobble /= np.abs(wobble).max()
    return np.clip(width * (1 + params.gap_wobble * wobble), 1.0, None)


def _has_gap(rng: np.random.Generator, regions: list[str], params: SceneParams) -> list[bool]:
    """Whether each interface gets a gap band; at least one unlabelled area (gap or vacuum) per scene."""
    gaps = []
    for upper, lower in pairwise(regions):
        if VACUUM in (upper, lower):
            chance = 0.0
        else:
            chance = params.cap_gap_chance if CATALOGUE[upper].lattice is None else params.gap_chance
        gaps.append(bool(rng.random() < chance))
    if VACUUM not in regions and not any(gaps):
        gaps[rng.integers(len(gaps))] = True
    return gaps


def _layout(rng: np.random.Generator, regions: list[str], size: int, scale: float,
            angstrom_per_px: float, params: SceneParams, defects: list[dict],
            within: float = 1.0) -> tuple[list[_Interface], list]:
    """Interfaces between consecutive regions, and each region's minimum thickness in px.

    Region i spans from the bottom of interface i-1's gap band to interface i; every region keeps
    at least its minimum thickness at every x, so each stays one connected strip. The vacuum and a
    narrow film keep their drawn thickness; the other regions share what is left at random.
    The stack is laid out in the centre ``within`` of the height, its lengths (thicknesses,
    roughness, gap bands) shrunk by ``within``; the top and bottom regions reach the edges.
    """
    pad = params.scan_margin * size  # scan distortions sample slightly outside [0, size)
    xs = np.arange(-pad, size + pad, dtype=np.float64)
    height, scale = size * within, scale * within
    n = len(regions)
    profiles, bands = [], []
    for i, gap in enumerate(_has_gap(rng, regions, params)):
        lower = CATALOGUE[regions[i + 1]]
        step = (lower.lattice.cell[1] / angstrom_per_px) if lower.lattice else params.amorphous_step_px * scale
        profiles.append(_profile(rng, xs, step, scale, params))
        bands.append(_gap_band(rng, xs, scale, params) if gap else np.zeros_like(xs))
        if gap:
            defects.append({"kind": "gap_band", "above": regions[i], "below": regions[i + 1],
                            "width_px": round(float(bands[-1].mean()), 2)})

    minimum = [params.min_layer_px * scale] * n
    fixed = set()
    if regions[0] == VACUUM:
        minimum[0] = rng.uniform(*params.vacuum_px) * scale
        fixed.add(0)
    films = [i for i in range(1, n - 1) if regions[i] != VACUUM]
    if films and rng.random() < params.narrow_chance:
        i = films[rng.integers(len(films))]
        minimum[i] = rng.uniform(*params.narrow_px) * scale
        fixed.add(i)
        defects.append({"kind": "narrow_layer", "material": regions[i],
                        "thickness_px": round(float(minimum[i]), 2)})
    spare = height - sum(p.max() for p in profiles) - sum(b.max() for b in bands) - sum(minimum)
    if spare < 0:
        raise SettingsError(f"a {size} px scene cannot hold {n} regions with these SceneParams; "
                            "use a larger size or thinner minimum layers")
    flexible = [i for i in range(n) if i not in fixed]  # always ends with the bottom region
    for i, share in zip(flexible[:-1], rng.dirichlet(np.ones(len(flexible))) * spare):
        minimum[i] += share  # the bottom region's share is what remains below the last interface

    interfaces, top = [], (size - height) / 2
    for i, (profile, band) in enumerate(zip(profiles, bands)):
        offset = top + minimum[i]
        interfaces.append(_Interface.with_band(xs, offset + profile, band))
        top = interfaces[-1].bottom.max()
    return interfaces, minimum


def _amorphous(rng: np.random.Generator, shape: tuple[int, int], angstrom_per_px: float,
               params: SceneParams) -> np.ndarray:
    """Smooth aperiodic speckle with mean 1: ``-> (H, W) float32 >= 0``."""
    grain = params.amorphous_grain_angstrom / angstrom_per_px
    fine = ndimage.gaussian_filter(rng.normal(0, 1, shape).astype(np.float32), grain)
    coarse = ndimage.gaussian_filter(rng.normal(0, 1, shape).astype(np.float32), 4 * grain)
    field_ = 0.75 * fine / fine.std() + 0.25 * coarse / coarse.std()
    return np.clip(1 + params.amorphous_contrast * field_, 0.0, None)


def _crystal(rng: np.random.Generator, material: Material, inside: np.ndarray, x: np.ndarray,
             y: np.ndarray, angstrom_per_px: float, tilt: float, min_thickness: float, scale: float,
             params: SceneParams, defects: list[dict]) -> np.ndarray:
    """Lattice texture (mean 1) at the ``inside`` pixels, with at most one APB and one rotated grain.

    Returns (inside.sum(),) float32.
    """
    lattice = material.lattice
    sigma = max(params.column_sigma_angstrom / angstrom_per_px, params.min_column_sigma_px)
    origin = tuple(float(v) for v in rng.uniform(0, 50, 2))
    base = Placement(angstrom_per_px, sigma, tilt, origin)
    px, py = x[inside], y[inside]
    rows = np.nonzero(inside.any(axis=1))[0]
    centre_y = float(np.mean(y[rows, 0], dtype=np.float64)) if rows.size else 0.0  # 0: not in a zoomed view
    width = round(scale * REFERENCE_SIDE)  # the scene's size in px (x and y are in its px)
    placements = np.zeros(px.shape, np.int8)
    variants = [base]
    thick_enough = min_thickness >= params.min_layer_px * scale * params.defect_min_thickness
    incline = np.deg2rad(params.boundary_incline_deg)

    def line(x0: float) -> tuple[float, float, np.ndarray]:
        slope = float(np.tan(rng.uniform(-incline, incline)))
        return x0, slope, x0 + (py - centre_y) * slope

    if thick_enough and rng.random() < params.apb_chance:
        x0, slope, edge = line(float(rng.uniform(0.25, 0.75) * width))
        placements[px > edge] = len(variants)
        variants.append(Placement(angstrom_per_px, sigma, tilt, origin, lattice.antiphase_shift))
        defects.append({"kind": "antiphase_boundary", "material": material.name, "x": round(x0, 1),
                        "y": round(centre_y, 1), "angle_deg": round(float(np.rad2deg(np.arctan(slope))), 2)})
    if thick_enough and rng.random() < params.grain_chance:
        grain_width = rng.uniform(*params.grain_width_px) * scale
        x0, _, left = line(float(rng.uniform(0.05, 0.95) * width - grain_width / 2))
        _, _, right = line(x0 + grain_width)
        rotation = np.deg2rad(rng.uniform(*params.grain_rotation_deg)) * rng.choice([-1, 1])
        placements[(px > left) & (px < right)] = len(variants)
        variants.append(Placement(angstrom_per_px, sigma, tilt + rotation, origin))
        defects.append({"kind": "grain_boundary", "material": material.name, "x0": round(x0, 1),
                        "x1": round(x0 + grain_width, 1), "y": round(centre_y, 1),
                        "rotation_deg": round(float(np.rad2deg(rotation)), 2)})
    columns = np.empty(px.shape, np.float32)
    for index, place in enumerate(variants):
        sel = placements == index
        columns[sel] = render_columns(lattice, place, px[sel], py[sel])
    contrast = params.lattice_contrast
    return (1 - contrast) + contrast * columns / max(float(columns.mean()) if columns.size else 0.0, 1e-6)
