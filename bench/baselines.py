"""Two weight-free baselines the classical path must beat (``bench/quality.py`` scores them).

Both get the true number of materials K (the classical path estimates it), cluster with KMeans and
return ``(K, H, W) bool`` disjoint masks covering the image:

* :func:`block_histogram_kmeans` -- the 20-line baseline: cut the image into square blocks (48 px
  at the 1024 px reference side), describe each block by its intensity histogram, KMeans the
  histograms, every pixel takes its block's label.
* :func:`local_descriptor_kmeans` -- pixel-level local-descriptor clustering in the style of
  pySTEM (local structure descriptors, then KMeans): around every ``stride``-th pixel a Hann-windowed
  window (32 px at the reference side) is described by its mean, its standard deviation and the
  log power of its Fourier transform summed in radial x angular bins (a radial-angular FFT
  descriptor, which tells lattices apart by period and orientation); descriptors are
  standardised, reduced by PCA and clustered; every pixel takes the label of its nearest window
  centre.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

from samiam.settings import scale_to_image

BLOCK_PX = 48.0
"""Block side of the histogram baseline at the 1024 px reference side."""
HISTOGRAM_BINS = 16
WINDOW_PX = 32.0
"""Window side of the local-descriptor baseline at the 1024 px reference side."""
STRIDE_FRACTION = 0.25
"""Window centres lie this many window sides apart."""
RADIAL_BINS = 8
ANGULAR_BINS = 6
PCA_COMPONENTS = 10
RESTARTS = 10


def block_histogram_kmeans(grey: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """``grey: (H, W) float`` -> ``(k, H, W) bool``: each block's intensity histogram, KMeans,
    each pixel labelled by its block."""
    h, w = grey.shape
    side = max(4, round(scale_to_image(BLOCK_PX, h, w)))
    low, high = np.percentile(grey, [0.5, 99.5])
    bins = np.clip(((grey - low) / max(high - low, 1e-9) * HISTOGRAM_BINS).astype(int), 0, HISTOGRAM_BINS - 1)
    rows, cols = np.arange(h) // side, np.arange(w) // side
    block = rows[:, None] * (cols[-1] + 1) + cols[None, :]
    n_blocks = int(block.max()) + 1
    histograms = np.zeros((n_blocks, HISTOGRAM_BINS))
    np.add.at(histograms, (block.ravel(), bins.ravel()), 1.0)
    histograms /= histograms.sum(axis=1, keepdims=True)
    labels = KMeans(n_clusters=k, n_init=RESTARTS, random_state=seed).fit_predict(histograms)
    return labels[block][None] == np.arange(k)[:, None, None]


def local_descriptor_kmeans(grey: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """``grey: (H, W) float`` -> ``(k, H, W) bool``: radial-angular FFT descriptors of windows
    around a grid of pixels, standardised, PCA, KMeans; each pixel labelled by its nearest centre."""
    h, w = grey.shape
    size = max(8, round(scale_to_image(WINDOW_PX, h, w)))
    stride = max(1, round(size * STRIDE_FRACTION))
    padded = np.pad(grey.astype(np.float32), size // 2, mode="reflect")
    centres_y, centres_x = np.arange(0, h, stride), np.arange(0, w, stride)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size))[::stride, ::stride]
    windows = windows[:len(centres_y), :len(centres_x)].reshape(-1, size, size)
    descriptors = _descriptors(windows)
    z = (descriptors - descriptors.mean(axis=0)) / np.maximum(descriptors.std(axis=0), 1e-9)
    reduced = PCA(n_components=min(PCA_COMPONENTS, z.shape[1]), random_state=seed).fit_transform(z)
    labels = KMeans(n_clusters=k, n_init=RESTARTS, random_state=seed).fit_predict(reduced)
    grid = labels.reshape(len(centres_y), len(centres_x))
    rows = np.minimum((np.arange(h) + stride // 2) // stride, len(centres_y) - 1)
    cols = np.minimum((np.arange(w) + stride // 2) // stride, len(centres_x) - 1)
    return grid[np.ix_(rows, cols)][None] == np.arange(k)[:, None, None]


def _descriptors(windows: np.ndarray) -> np.ndarray:
    """``(M, S, S)`` windows -> ``(M, 2 + RADIAL_BINS * ANGULAR_BINS)``: mean, std and the log power
    of the Hann-windowed FFT in radial x angular bins (half plane, DC left out)."""
    size = windows.shape[-1]
    mean = windows.mean(axis=(1, 2))
    std = windows.std(axis=(1, 2))
    hann = np.outer(np.hanning(size), np.hanning(size)).astype(np.float32)
    power = np.abs(np.fft.rfft2((windows - mean[:, None, None]) * hann)) ** 2
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    radius = np.hypot(fy, fx) / 0.5
    angle = np.mod(np.arctan2(fy, fx), np.pi) / np.pi
    radial = np.minimum((radius * RADIAL_BINS).astype(int), RADIAL_BINS - 1)
    angular = np.minimum((angle * ANGULAR_BINS).astype(int), ANGULAR_BINS - 1)
    bin_of = np.where(radius > 0, radial * ANGULAR_BINS + angular, -1).ravel()
    keep = bin_of >= 0
    sums = np.zeros((len(windows), RADIAL_BINS * ANGULAR_BINS))
    flat = power.reshape(len(windows), -1)[:, keep]
    for b in range(RADIAL_BINS * ANGULAR_BINS):
        sums[:, b] = flat[:, bin_of[keep] == b].sum(axis=1)
    return np.column_stack([mean, std, np.log(sums + 1e-9)])
