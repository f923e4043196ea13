"""Projected crystal lattices rendered as sums of Gaussian atom columns.

A :class:`LatticeSpec` is one projected unit cell: a rectangle of ``cell`` (a_u, a_v) angstrom
holding atom columns at fractional positions, each with a Z-contrast weight. :func:`render_columns`
evaluates the columns at arbitrary pixel coordinates (so it renders a whole frame, one region of
it, or a scan-distorted grid equally) by measuring each pixel's distance to the *nearest* image of
every basis column: the cost is a few array operations per column, independent of the cell count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Column:
    """One atom column of a projected unit cell: fractional position (u, v) and intensity weight."""

    u: float
    v: float
    weight: float


@dataclass(frozen=True)
class LatticeSpec:
    """A projected unit cell.

    kind: structure name (``perovskite[001]``, ``diamond[110]``, ``rocksalt[001]``, ...); two
        specs of the same kind look alike apart from weights and cell size.
    cell: (a_u, a_v) cell sides in angstrom, a_u along the interface, a_v across it.
    columns: the basis; weights are relative Z-contrast intensities.
    antiphase_shift: fractional (du, dv) translation across an antiphase boundary.
    """

    kind: str
    cell: tuple[float, float]
    columns: tuple[Column, ...]
    antiphase_shift: tuple[float, float] = (0.5, 0.5)


@dataclass(frozen=True)
class Placement:
    """Where a lattice sits in the image: scale, rotation and origin.

    angstrom_per_px: sampling (pixel size); column_sigma_px: Gaussian width of one column in px;
    angle: in-plane rotation in radians; origin: (x, y) px of the cell origin; shift: extra
    fractional (du, dv) translation (used for the far side of an antiphase boundary).
    """

    angstrom_per_px: float
    column_sigma_px: float
    angle: float = 0.0
    origin: tuple[float, float] = (0.0, 0.0)
    shift: tuple[float, float] = (0.0, 0.0)


def perovskite(a: float, a_site: float, b_site: float, oxygen: float) -> LatticeSpec:
    """ABO3 perovskite along [001]: A columns at the corners, BO columns at the centre, O at edges."""
    return LatticeSpec("perovskite[001]", (a, a), (
        Column(0.0, 0.0, a_site), Column(0.5, 0.5, b_site),
        Column(0.5, 0.0, oxygen), Column(0.0, 0.5, oxygen)))


def rhenium_trioxide(a: float, metal: float, oxygen: float) -> LatticeSpec:
    """ReO3-type (e.g. WO3) along [001]: one metal column per cell, O columns at the edges."""
    return LatticeSpec("reo3[001]", (a, a), (
        Column(0.0, 0.0, metal), Column(0.5, 0.0, oxygen), Column(0.0, 0.5, oxygen)))


def diamond_110(a: float, weight: float) -> LatticeSpec:
    """Diamond cubic (Si, Ge) along [110]: "dumbbells" of two columns a/4 apart, cell a/sqrt2 x a."""
    return LatticeSpec("diamond[110]", (a / np.sqrt(2.0), a), (
        Column(0.0, 0.0, weight), Column(0.0, 0.25, weight),
        Column(0.5, 0.5, weight), Column(0.5, 0.75, weight)), antiphase_shift=(0.5, 0.0))


def rocksalt_001(a: float, weight: float) -> LatticeSpec:
    """Rock salt (MgO, NiO) along [001]: mixed cation/anion columns on a centred square."""
    return LatticeSpec("rocksalt[001]", (a, a), (
        Column(0.0, 0.0, weight), Column(0.5, 0.5, weight)), antiphase_shift=(0.5, 0.0))


def render_columns(spec: LatticeSpec, place: Placement, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Intensity of the lattice's atom columns at pixel coordinates ``(x, y)``.

    x, y: float arrays of one shape S (pixel coordinates, x along columns of the image).
    Returns float32 of shape S: the sum over basis columns of ``weight * exp(-d^2 / 2 sigma^2)``
    with d the distance to the nearest lattice image of that column (valid while sigma is small
    against the cell, as for atomic columns).
    """
    a_u, a_v = (side / place.angstrom_per_px for side in spec.cell)
    cos, sin = np.cos(place.angle), np.sin(place.angle)
    dx = np.asarray(x, np.float32) - np.float32(place.origin[0])
    dy = np.asarray(y, np.float32) - np.float32(place.origin[1])
    u = (dx * cos + dy * sin) / a_u - place.shift[0]
    v = (dy * cos - dx * sin) / a_v - place.shift[1]
    inv_two_var = np.float32(1.0 / (2.0 * place.column_sigma_px ** 2))
    out = np.zeros(u.shape, np.float32)
    for column in spec.columns:
        du = u - column.u
        du -= np.round(du)
        dv = v - column.v
        dv -= np.round(dv)
        out += column.weight * np.exp(-((du * a_u) ** 2 + (dv * a_v) ** 2) * inv_two_var)
    return out
