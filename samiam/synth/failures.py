"""A *simulation* of SAM's automatic-mask failure modes on micrographs, derived from ground truth.

No model runs here: :func:`simulate_sam_proposals` perturbs the ground-truth material masks in the
ways the paper reports SAM+ failing on TEM cross-sections, so the booster can be tested and
benchmarked without a SAM checkpoint:

* **split** - a material proposed as 2-3 pieces cut along (simulated antiphase-boundary) lines;
* **nested** - ambiguous children (some tiny, some large sub-regions) proposed with their parent;
* **duplicate** - a near-duplicate of a proposal (its boundary moved along one stretch);
* **islands** - small blobs, in the unlabelled area or anywhere;
* **missed_narrow** - a thin layer not proposed at all;
* **ragged** - boundary pixels randomly eroded or dilated.

Every kind has a rate in [0, 1] in :class:`FailureRates`: 0 never produces it, 1 always does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from samiam import masks as masklib
from samiam.synth.scenes import Scene


@dataclass(frozen=True)
class FailureRates:
    """Rates (probabilities in [0, 1]) of each simulated failure, and the shapes they take."""

    split: float = 0.5
    """Chance that a material is proposed only as 2-3 pieces instead of whole."""
    nested: float = 0.5
    """Chance that a material's proposal comes with ambiguous children inside it."""
    duplicate: float = 0.3
    """Chance that each material (or piece) proposal is proposed a second time, slightly changed."""
    islands: float = 0.5
    """Chance of each of ``max_islands`` small noise blobs."""
    missed_narrow: float = 0.5
    """Chance that a narrow material is not proposed at all."""
    ragged: float = 0.5
    """Chance that a proposal's boundary is ragged."""

    max_pieces: int = 3
    tiny_children: tuple[int, int] = (1, 3)
    """How many tiny children (inclusive range) a nested proposal gets; plus one large child."""
    tiny_child_area: tuple[float, float] = (0.003, 0.03)
    """Tiny child area as a fraction of its parent."""
    large_child_width: tuple[float, float] = (0.2, 0.6)
    """Large child: the parent cut to this fraction of its width."""
    max_islands: int = 6
    island_area: tuple[float, float] = (2e-4, 3e-3)
    """Island area as a fraction of the image."""
    island_in_unlabelled: float = 0.5
    """Chance that an island lies in the unlabelled area (gap band, vacuum) rather than anywhere."""
    narrow_fraction: float = 0.06
    """A material whose median thickness is below this fraction of the image height is narrow."""
    duplicate_shift_px: tuple[int, int] = (1, 3)
    """A near-duplicate's boundary moves out or in by this many pixels (inclusive range)..."""
    duplicate_change: tuple[float, float] = (0.01, 0.05)
    """... along one stretch of columns, until this fraction of the mask's area has changed."""
    ragged_fraction: float = 0.3
    """Fraction of the inner and outer boundary pixels flipped on a ragged proposal."""
    cut_incline_deg: float = 25.0


def simulate_sam_proposals(scene_or_materials: Scene | np.ndarray, seed: int,
                           rates: FailureRates = FailureRates()) -> np.ndarray:
    """Simulated SAM+ proposals for one image, deterministic per ``seed``.

    scene_or_materials: a :class:`~samiam.synth.scenes.Scene` (its antiphase boundaries are then
        used as split lines) or ground-truth ``materials: (K, H, W) bool``.
    Returns ``proposals: (N, H, W) bool`` in random order (as SAM's are unordered by material).
    """
    if isinstance(scene_or_materials, Scene):
        materials = masklib.as_mask_stack(scene_or_materials.materials)
        cut_hints = _apb_lines(scene_or_materials)
    else:
        materials = masklib.as_mask_stack(scene_or_materials)
        cut_hints = {}
    rng = np.random.default_rng(seed)
    shape = materials.shape[1:]
    proposals: list[np.ndarray] = []
    for k, material in enumerate(materials):
        if not material.any() or (_is_narrow(material, rates) and rng.random() < rates.missed_narrow):
            continue
        pieces = [material]
        if rng.random() < rates.split:
            pieces = _split(rng, material, cut_hints.get(k), rates)
        pieces = [_ragged(rng, p, rates) if rng.random() < rates.ragged else p for p in pieces]
        proposals += pieces
        proposals += [_near_duplicate(rng, p, rates) for p in pieces if rng.random() < rates.duplicate]
        if rng.random() < rates.nested:
            parent = pieces[rng.integers(len(pieces))]
            proposals += _children(rng, parent, rates)
    unlabelled = ~materials.any(axis=0)
    for _ in range(rng.binomial(rates.max_islands, rates.islands)):
        inside_gap = unlabelled.any() and rng.random() < rates.island_in_unlabelled
        island = _island(rng, shape, unlabelled if inside_gap else None, rates)
        if island.any():
            proposals.append(island)
    proposals = [p for p in proposals if p.any()]
    if not proposals:
        return np.zeros((0, *shape), bool)
    return np.stack([proposals[i] for i in rng.permutation(len(proposals))])


def _apb_lines(scene: Scene) -> dict[int, tuple[float, float, float]]:
    """Material index -> (x, y, angle_deg) of the first antiphase boundary placed in it."""
    lines: dict[int, tuple[float, float, float]] = {}
    for defect in scene.defects:
        if defect["kind"] == "antiphase_boundary" and defect["material"] in scene.names:
            lines.setdefault(scene.names.index(defect["material"]),
                             (defect["x"], defect["y"], defect["angle_deg"]))
    return lines


def _is_narrow(material: np.ndarray, rates: FailureRates) -> bool:
    thickness = material.sum(axis=0)
    return float(np.median(thickness[thickness > 0])) < rates.narrow_fraction * material.shape[0]


def _split(rng: np.random.Generator, material: np.ndarray, hint: tuple[float, float, float] | None,
           rates: FailureRates) -> list[np.ndarray]:
    """Cut ``material`` into 2..max_pieces pieces along inclined lines (the hint line first)."""
    h, w = material.shape
    ys, xs = np.nonzero(material)
    centre_y = float(ys.mean())
    left, right = float(xs.min()), float(xs.max())
    n_cuts = int(rng.integers(1, rates.max_pieces))
    incline = np.deg2rad(rates.cut_incline_deg)
    lines = [hint] if hint is not None else []
    while len(lines) < n_cuts:
        lines.append((float(rng.uniform(left + 0.15 * (right - left), right - 0.15 * (right - left))),
                      centre_y, float(np.rad2deg(rng.uniform(-incline, incline)))))
    rows = np.arange(h, dtype=np.float32)[:, None]
    cols = np.arange(w, dtype=np.float32)[None, :]
    side = np.zeros((h, w), np.int8)
    for x0, y0, angle in lines:
        side += cols > x0 + (rows - y0) * np.tan(np.deg2rad(angle))
    pieces = [material & (side == s) for s in range(len(lines) + 1)]
    return [p for p in pieces if p.any()]


def _boundaries(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inner boundary (mask pixels next to outside) and outer boundary (outside pixels next to mask)."""
    return mask & ~ndimage.binary_erosion(mask), ndimage.binary_dilation(mask) & ~mask


def _ragged(rng: np.random.Generator, mask: np.ndarray, rates: FailureRates) -> np.ndarray:
    inner, outer = _boundaries(mask)
    flip = rng.random(mask.shape) < rates.ragged_fraction
    return (mask & ~(inner & flip)) | (outer & flip)


def _near_duplicate(rng: np.random.Generator, mask: np.ndarray, rates: FailureRates) -> np.ndarray:
    """The mask with its boundary moved out or in along one stretch, changing a few per cent of it."""
    steps = int(rng.integers(rates.duplicate_shift_px[0], rates.duplicate_shift_px[1] + 1))
    grow = rng.random() < 0.5
    moved = (ndimage.binary_dilation if grow else ndimage.binary_erosion)(mask, iterations=steps)
    changed = moved ^ mask
    per_column = changed.sum(axis=0)
    budget = rng.uniform(*rates.duplicate_change) * mask.sum()
    start = int(rng.integers(mask.shape[1]))
    order = np.roll(np.arange(mask.shape[1]), -start)
    total = np.cumsum(per_column[order])
    # columns until the budget is spent, but at least up to the first one that changes
    keep = order[:max(np.searchsorted(total, budget, side="right"), np.searchsorted(total, 0, side="right") + 1)]
    near = mask.copy()
    near[:, keep] ^= changed[:, keep]
    return near

def _ellipse(shape: tuple[int, int], centre: tuple[float, float], area: float,
             rng: np.random.Generator) -> np.ndarray:
    """A randomly elongated and rotated ellipse of about ``area`` px centred at (y, x)."""
    aspect = rng.uniform(1.0, 2.5)
    ry = np.sqrt(area / (np.pi * aspect))
    rx = ry * aspect
    angle = rng.uniform(0, np.pi)
    rows = np.arange(shape[0], dtype=np.float32)[:, None] - centre[0]
    cols = np.arange(shape[1], dtype=np.float32)[None, :] - centre[1]
    u = cols * np.cos(angle) + rows * np.sin(angle)
    v = rows * np.cos(angle) - cols * np.sin(angle)
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def _random_pixel(rng: np.random.Generator, mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    i = rng.integers(len(ys))
    return float(ys[i]), float(xs[i])


def _children(rng: np.random.Generator, parent: np.ndarray, rates: FailureRates) -> list[np.ndarray]:
    """Ambiguous children inside ``parent``: a few tiny blobs and one large sub-region."""
    area = float(parent.sum())
    low, high = rates.tiny_children
    children = [parent & _ellipse(parent.shape, _random_pixel(rng, parent),
                                  area * rng.uniform(*rates.tiny_child_area), rng)
                for _ in range(int(rng.integers(low, high + 1)))]
    xs = np.nonzero(parent.any(axis=0))[0]
    span = xs[-1] - xs[0] + 1
    width = max(1, int(span * rng.uniform(*rates.large_child_width)))
    start = xs[0] + int(rng.integers(0, span - width + 1))
    large = np.zeros_like(parent)
    large[:, start:start + width] = parent[:, start:start + width]
    return children + [large]


def _island(rng: np.random.Generator, shape: tuple[int, int], within: np.ndarray | None,
            rates: FailureRates) -> np.ndarray:
    """A small blob; when ``within`` is given, centred in and clipped to it."""
    area = shape[0] * shape[1] * rng.uniform(*rates.island_area)
    if within is None:
        centre = (rng.uniform(0, shape[0]), rng.uniform(0, shape[1]))
        return _ellipse(shape, centre, area, rng)
    return within & _ellipse(shape, _random_pixel(rng, within), area, rng)
