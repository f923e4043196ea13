"""Scanning-microscope imaging effects applied to an ideal projected signal.

Two stages, because scan distortions move the *sample positions* while blur and noise act on the
recorded signal:

1. :func:`scan_coordinates` gives the sample position of every pixel: slow drift (a smooth,
   row-dependent horizontal shear) plus scan-line jitter (a random sub-pixel shift per row).
   The scene is rendered *at* these positions, so ground-truth masks follow the same distortion.
2. :func:`acquire` turns the ideal signal into detector counts: probe blur (Gaussian), Poisson
   shot noise at a dose, Gaussian read noise, then a linear scale to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from samiam.settings import REFERENCE_SIDE


@dataclass(frozen=True)
class ImagingParams:
    """One acquisition's conditions. Lengths in px are given at the 1024 px reference side.

    probe_sigma_px: Gaussian probe blur.
    dose: electron counts per pixel for a signal level of 1.
    read_noise: std of additive Gaussian detector noise, in counts.
    jitter_px: std of the per-row horizontal scan jitter.
    drift_px: peak horizontal displacement of the slow drift across the frame.
    white_quantile: counts at this quantile map to 1.0 (brighter pixels clip).
    """

    probe_sigma_px: float = 0.8
    dose: float = 120.0
    read_noise: float = 2.0
    jitter_px: float = 0.3
    drift_px: float = 6.0
    white_quantile: float = 0.999


def random_imaging(rng: np.random.Generator, difficulty: int) -> ImagingParams:
    """Acquisition conditions drawn for one scene; harder classes get lower dose (noisier)."""
    low, high = {1: (150.0, 400.0), 2: (80.0, 250.0), 3: (60.0, 200.0)}[difficulty]
    return ImagingParams(
        probe_sigma_px=float(rng.uniform(0.5, 1.2)),
        dose=float(rng.uniform(low, high)),
        read_noise=float(rng.uniform(0.5, 3.0)),
        jitter_px=float(rng.uniform(0.1, 0.5)),
        drift_px=float(rng.uniform(0.0, 12.0)),
    )


def _scale(size: int) -> float:
    return size / REFERENCE_SIDE


def scan_coordinates(shape: tuple[int, int], params: ImagingParams,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Sample positions of a distorted raster scan.

    Returns ``(x, y)``: two (H, W) float32 arrays; ``x`` = column index + drift(row) + jitter(row),
    ``y`` = row index.
    """
    h, w = shape
    scale = _scale(max(h, w))
    rows = np.arange(h, dtype=np.float32)
    t = rows / max(h - 1, 1)
    phase = rng.uniform(0.0, 2.0 * np.pi)
    drift = params.drift_px * scale * (0.5 * t + 0.5 * np.sin(np.pi * t + phase))
    jitter = rng.normal(0.0, params.jitter_px * scale, h)
    shift = (drift + jitter).astype(np.float32)
    x = np.arange(w, dtype=np.float32)[None, :] + shift[:, None]
    y = np.broadcast_to(rows[:, None], (h, w))
    return x, y


def acquire(signal: np.ndarray, params: ImagingParams, rng: np.random.Generator) -> np.ndarray:
    """Record an ideal signal: ``(H, W) float >= 0 -> (H, W) float32 in [0, 1]``.

    The final scale is linear (no offset), so ratios of mean intensities between regions survive.
    """
    scale = _scale(max(signal.shape))
    blurred = ndimage.gaussian_filter(signal.astype(np.float32), params.probe_sigma_px * scale)
    counts = rng.poisson(np.clip(blurred, 0.0, None) * params.dose).astype(np.float32)
    counts += rng.normal(0.0, params.read_noise, counts.shape).astype(np.float32)
    white = float(np.quantile(counts, params.white_quantile))
    return np.clip(counts / max(white, 1.0), 0.0, 1.0).astype(np.float32)
