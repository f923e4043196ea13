"""SAM-like proposal mask sets for benchmarks (no SAM needed).

:func:`sam_like_masks` imitates what SAM's automatic mask generator gives for a cross-section
micrograph of a thin-film stack: horizontal material bands with ragged interfaces, one band
also proposed as two halves (split at an antiphase boundary), nested children (tiny ones and
large ones), near-duplicates of earlier masks, and small islands in an unsegmented vacuum strip
or straddling an interface. Every mask rule of the booster has work to do on such a set.
"""

from __future__ import annotations

import numpy as np

_REFERENCE_SIDE = 1024
_BANDS = 3
_VACUUM = 0.08
"""Top fraction of the image left unsegmented (vacuum), where islands are placed."""
_KINDS = ("tiny_child", "large_child", "duplicate", "island")
_KIND_P = (0.35, 0.3, 0.2, 0.15)


def sam_like_masks(n: int, size: int, seed: int = 0) -> np.ndarray:
    """``n`` SAM-like masks on a ``size`` x ``size`` image -> (n, size, size) bool.

    Built in place into one preallocated array (no full-stack temporaries), so it is usable
    at 4096 x 4096. The same ``(n, size, seed)`` always gives the same set.
    """
    rng = np.random.default_rng(seed)
    out = np.zeros((n, size, size), bool)
    scale = size / _REFERENCE_SIDE
    rows = np.arange(size)
    tops = _interfaces(rng, size, scale)
    bands = [(tops[k], tops[k + 1]) for k in range(_BANDS)]
    made = 0
    for top, bottom in bands[:n]:
        np.greater_equal(rows[:, None], top[None, :], out=out[made])
        out[made] &= rows[:, None] < bottom[None, :]
        made += 1
    if made < n:  # the middle band again, as two halves split by a ragged vertical line
        left = rows[None, :] < _ragged(rng, size, size / 2, size / 12, scale)[:, None]
        for half in (left, ~left)[:n - made]:
            np.logical_and(half, out[1], out=out[made])
            made += 1
    for kind in rng.choice(_KINDS, size=n - made, p=_KIND_P):
        if kind == "duplicate":
            _near_duplicate(rng, out[rng.integers(made)], out[made], scale)
        elif kind == "island":
            _island(rng, out[made], tops, scale)
        else:
            top, bottom = bands[rng.integers(_BANDS)]
            _child(rng, out[made], top, bottom, large=kind == "large_child")
        made += 1
    return out


def _ragged(rng: np.random.Generator, length: int, mean: float, amplitude: float,
            scale: float) -> np.ndarray:
    """A ragged line: a slow wave plus a pixel-scale random walk -> (length,) int64."""
    t = np.arange(length) / max(length, 1)
    wave = amplitude * np.sin(2 * np.pi * (rng.uniform(1, 3) * t + rng.uniform()))
    walk = np.cumsum(rng.integers(-1, 2, length)) * max(scale, 0.25)
    walk -= walk.mean()
    return np.round(mean + wave + np.clip(walk, -amplitude, amplitude)).astype(np.int64)


def _interfaces(rng: np.random.Generator, size: int, scale: float) -> list[np.ndarray]:
    """Top and bottom rows (per column) of the material bands below the vacuum strip."""
    start = _VACUUM * size
    height = (size - start) / _BANDS
    inner = [_ragged(rng, size, start + k * height, height / 8, scale) for k in range(1, _BANDS)]
    return [np.full(size, int(start)), *inner, np.full(size, size)]


def _ellipse(out: np.ndarray, cy: float, cx: float, ry: float, rx: float) -> None:
    """Paint a filled ellipse into ``out: (H, W) bool`` touching only its bounding box."""
    h, w = out.shape
    y0, y1 = max(0, int(cy - ry)), min(h, int(cy + ry) + 1)
    x0, x1 = max(0, int(cx - rx)), min(w, int(cx + rx) + 1)
    yy = (np.arange(y0, y1)[:, None] - cy) / max(ry, 0.5)
    xx = (np.arange(x0, x1)[None, :] - cx) / max(rx, 0.5)
    out[y0:y1, x0:x1] |= yy ** 2 + xx ** 2 <= 1


def _child(rng: np.random.Generator, out: np.ndarray, top: np.ndarray, bottom: np.ndarray,
           large: bool) -> None:
    """An ellipse (or two overlapping, for a ragged outline) inside one band."""
    size = out.shape[1]
    cx = rng.uniform(0.1, 0.9) * size
    column = int(cx)
    band_top, band_bottom = top[column], bottom[column]
    half = max((band_bottom - band_top) / 2, 1)
    radius = half * (rng.uniform(0.5, 0.9) if large else rng.uniform(0.05, 0.2))
    cy = (band_top + band_bottom) / 2
    _ellipse(out, cy, cx, radius, radius * rng.uniform(1, 3 if large else 1.5))
    _ellipse(out, cy + radius / 3, cx + radius, radius * 0.6, radius * 0.8)
    out &= (np.arange(out.shape[0])[:, None] >= top[None, :]) & \
        (np.arange(out.shape[0])[:, None] < bottom[None, :])


def _near_duplicate(rng: np.random.Generator, source: np.ndarray, out: np.ndarray,
                    scale: float) -> None:
    """A copy of ``source`` with a few boundary pixels toggled."""
    out[...] = source
    edge_y, edge_x = np.nonzero(source[:, 1:] != source[:, :-1])
    if len(edge_y):
        pick = rng.integers(len(edge_y), size=max(1, int(200 * scale)))
        out[edge_y[pick], edge_x[pick]] ^= True


def _island(rng: np.random.Generator, out: np.ndarray, tops: list[np.ndarray], scale: float) -> None:
    """A small blob in the vacuum strip or straddling an interface."""
    size = out.shape[1]
    radius = rng.uniform(5, 25) * scale
    cx = rng.uniform(0.05, 0.95) * size
    if rng.random() < 0.5:
        cy = rng.uniform(radius, max(radius, _VACUUM * size - radius))
    else:
        cy = tops[rng.integers(1, _BANDS)][int(cx)]
    _ellipse(out, cy, cx, radius, radius * rng.uniform(0.6, 1.6))
