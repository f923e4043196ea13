"""A weight-free proposer for hosts without a SAM checkpoint: texture superpixels, merged.

1. Estimate the lattice period ``p`` from the radially summed power spectrum of ``grey``.
2. Texture feature maps: the local mean, the log local variance and the log local energy in
   three octave bands centred on ``p`` (difference-of-Gaussians filters applied in Fourier
   space), each averaged over a Gaussian window of ``classical_window * p``.
3. The (smooth) feature maps are downsampled to at most ``classical_work_side`` px per side,
   cut into ``classical_segments`` watershed superpixels, and adjacent superpixels
   whose mean features lie within ``classical_merge_distance`` of each other are merged
   greedily (closest pair first) on a region adjacency graph.
4. Region borders are moved onto the ridge of the feature gradient (the true texture edge) by a
   watershed from the regions' cores; regions without a core (blends of their neighbours along
   an edge) dissolve.
5. Labels are upsampled by nearest neighbour: masks are disjoint and cover the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from samiam import masks as masklib
from samiam.io import Micrograph
from samiam.proposals.base import Proposals
from samiam.settings import ProposalSettings

BAND_OCTAVES = (-1, 0, 1)
"""Texture bands, as octaves around the estimated lattice period."""
DOG_PERIOD_PER_SIGMA = np.pi / np.sqrt(np.log(4) / 6)
"""A difference of Gaussians with sigmas (s, 2s) passes periods around this many times s (about 6.5)."""
MIN_PERIODS_PER_SIDE = 16
"""The lattice period is searched among periods that fit at least this often in the shorter side."""
ENERGY_FLOOR = 1e-6
"""Added to energies (in units of the image's variance) before the log, so that flat areas are finite."""


class ClassicalProposer:
    """Disjoint texture regions of ``micrograph.grey`` as proposals.

    Scores: ``1 - v / d**2`` clipped to [0, 1], where ``v`` is the mean (over features) variance
    of the texture features inside the region and ``d`` is ``classical_merge_distance``: a
    region whose texture varies much less than the merge tolerance scores near 1.
    """

    name = "classical"

    def __init__(self, settings: ProposalSettings):
        self.settings = settings

    def propose(self, micrograph: Micrograph) -> Proposals:
        grey = np.asarray(micrograph.grey, np.float32)
        maps = texture_features(grey, self.settings)
        gradient = feature_gradient(maps.edges)
        labels = merge_regions(superpixels(gradient, self.settings.classical_segments), maps.features,
                               self.settings.classical_merge_distance)
        labels = refine_boundaries(labels, gradient, margin=maps.window)
        scores = 1.0 - region_variance(labels, maps.features) / self.settings.classical_merge_distance ** 2
        rows = np.arange(grey.shape[0]) // maps.factor
        cols = np.arange(grey.shape[1]) // maps.factor
        masks = masklib.from_label_map(labels[np.ix_(rows, cols)], int(labels.max()))
        return Proposals(masks, np.clip(scores, 0.0, 1.0).astype(np.float32))


@dataclass(frozen=True)
class TextureMaps:
    """Texture features of an image at the working resolution.

    features: (h, w, F) float32, F = 2 + len(BAND_OCTAVES): local mean (in units of the image's
        standard deviation), log local variance, log local energy of each band. Distances
        between textures are measured here (log energies compare ratios).
    edges: (h, w, F) float32, the same maps before the log, each divided by its standard
        deviation over the image. The window blends two textures linearly, so their edge is
        where these maps change fastest (in log space it shifts towards the weaker texture).
    factor: the image is ``factor`` times larger than the maps (h = ceil(H / factor)).
    window: sigma of the Gaussian texture window, in working-resolution px.
    """

    features: np.ndarray
    edges: np.ndarray
    factor: int
    window: float


def dominant_period(grey: np.ndarray) -> float:
    """Lattice period in px of ``grey: (H, W) float``: the peak of its radially summed power
    spectrum (Hann-windowed), among periods from 2 px to ``min(H, W) / MIN_PERIODS_PER_SIDE``."""
    h, w = grey.shape
    window = np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.rfft2((grey - grey.mean()) * window)) ** 2
    side = min(h, w)
    ring = np.rint(_frequency_radius(grey.shape) * side).astype(np.int64)
    profile = np.bincount(ring.ravel(), power.ravel())
    lowest = min(MIN_PERIODS_PER_SIDE, max(1, side // 2))
    return side / (lowest + int(np.argmax(profile[lowest:side // 2 + 1])))


def texture_features(grey: np.ndarray, settings: ProposalSettings) -> TextureMaps:
    """Texture features of ``grey: (H, W) float``, averaged over a Gaussian window of
    ``settings.classical_window`` lattice periods, at the working resolution."""
    from scipy import ndimage
    from skimage.transform import downscale_local_mean

    std = float(grey.std())
    g = (grey - grey.mean()) / (std if std > 0 else 1.0)
    period = dominant_period(g)
    factor = max(1, int(np.ceil(max(g.shape) / settings.classical_work_side)))
    spectrum = np.fft.rfft2(g)
    radius_sq = _frequency_radius(g.shape) ** 2

    def lowpass(sigma: float) -> np.ndarray:
        return np.exp(-2 * np.pi ** 2 * sigma ** 2 * radius_sq)

    maps = [g, g ** 2]
    for octave in BAND_OCTAVES:
        sigma = period * 2.0 ** octave / DOG_PERIOD_PER_SIGMA
        maps.append(np.fft.irfft2(spectrum * (lowpass(sigma) - lowpass(2 * sigma)), s=g.shape) ** 2)
    window = settings.classical_window * period / factor
    smooth = [ndimage.gaussian_filter(downscale_local_mean(m, (factor, factor)), window, mode="reflect")
              for m in maps]
    mean, mean_sq, bands = smooth[0], smooth[1], smooth[2:]
    linear = np.stack([mean, np.maximum(mean_sq - mean ** 2, 0.0), *bands], axis=-1)
    features = np.concatenate([linear[..., :1], np.log(linear[..., 1:] + ENERGY_FLOOR)], axis=-1)
    edges = linear / np.maximum(linear.std(axis=(0, 1)), ENERGY_FLOOR)
    return TextureMaps(features.astype(np.float32), edges.astype(np.float32), factor, window)


def feature_gradient(features: np.ndarray) -> np.ndarray:
    """Magnitude of the (Sobel) gradient of ``features: (h, w, F)`` -> ``(h, w) float``."""
    from scipy import ndimage

    return np.sqrt(sum(ndimage.sobel(features[..., f], axis) ** 2
                       for f in range(features.shape[-1]) for axis in (0, 1)))


def superpixels(gradient: np.ndarray, segments: int) -> np.ndarray:
    """Watershed of ``gradient: (h, w)`` flooded from a regular grid of ``segments`` seeds, so that
    superpixel borders fall on texture edges -> labels ``(h, w) int``, 1-based."""
    from skimage.segmentation import watershed

    return watershed(gradient, markers=segments)


def refine_boundaries(labels: np.ndarray, gradient: np.ndarray, margin: float) -> np.ndarray:
    """Move region borders onto the ridge of ``gradient`` and dissolve regions with no pixel
    farther than ``margin`` from their border.

    The texture window blends the features of two textures over a band about a window wide on
    each side of their edge; a region inside that band is a blend, not a texture. The pixels
    farther than ``margin`` (the window's sigma) from any border are the regions' cores; a
    watershed of ``gradient`` from these cores puts every edge where the features change fastest,
    i.e. on the true edge. labels: (h, w) int, 1-based -> (h, w) int64, 1..K consecutive.
    """
    from scipy import ndimage
    from skimage.segmentation import find_boundaries, watershed

    cores = ndimage.distance_transform_edt(~find_boundaries(labels, mode="thick")) > margin
    if not cores.any():
        return labels
    refined = watershed(gradient, markers=np.where(cores, labels, 0))
    return np.unique(refined, return_inverse=True)[1].reshape(labels.shape) + 1


def merge_regions(labels: np.ndarray, features: np.ndarray, distance: float) -> np.ndarray:
    """Greedily merge adjacent regions whose mean features are closer than ``distance``.

    labels: (h, w) int, 1-based; features: (h, w, F) -> (h, w) int64 labels 1..K, consecutive.
    """
    from skimage import graph

    count, total = _region_sums(labels, features)
    rag = graph.RAG()
    for n in np.flatnonzero(count):
        rag.add_node(n, labels=[n], count=count[n], total=total[n], mean=total[n] / count[n])
    for a, b in _adjacent_pairs(labels):
        rag.add_edge(a, b, weight=float(np.linalg.norm(rag.nodes[a]["mean"] - rag.nodes[b]["mean"])))

    def absorb(rag, src, dst):
        node = rag.nodes[dst]
        node["count"] += rag.nodes[src]["count"]
        node["total"] = node["total"] + rag.nodes[src]["total"]
        node["mean"] = node["total"] / node["count"]

    def reweigh(rag, src, dst, n):
        return {"weight": float(np.linalg.norm(rag.nodes[dst]["mean"] - rag.nodes[n]["mean"]))}

    merged = graph.merge_hierarchical(labels, rag, thresh=distance, rag_copy=False, in_place_merge=True,
                                      merge_func=absorb, weight_func=reweigh)
    return np.unique(merged, return_inverse=True)[1].reshape(labels.shape) + 1


def region_variance(labels: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Mean over features of each region's feature variance: labels 1..K -> ``(K,) float``."""
    count, total = _region_sums(labels, features)
    _, total_sq = _region_sums(labels, features ** 2)
    count, total, total_sq = count[1:, None], total[1:], total_sq[1:]
    return (total_sq / count - (total / count) ** 2).clip(min=0).mean(axis=1)


def _region_sums(labels: np.ndarray, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel count ``(L + 1,)`` and feature sums ``(L + 1, F)`` per label value 0..L."""
    flat = labels.ravel()
    size = int(flat.max()) + 1
    values = features.reshape(flat.size, -1).astype(np.float64)
    count = np.bincount(flat, minlength=size)
    total = np.stack([np.bincount(flat, values[:, f], minlength=size) for f in range(values.shape[1])], 1)
    return count, total


def _adjacent_pairs(labels: np.ndarray) -> np.ndarray:
    """Distinct pairs ``(P, 2)`` of labels that touch horizontally or vertically."""
    a = np.concatenate([labels[:, :-1].ravel(), labels[:-1, :].ravel()])
    b = np.concatenate([labels[:, 1:].ravel(), labels[1:, :].ravel()])
    differ = a != b
    return np.unique(np.sort(np.stack([a[differ], b[differ]], axis=1), axis=1), axis=0)


def _frequency_radius(shape: tuple[int, int]) -> np.ndarray:
    """|frequency| in cycles/px on the ``rfft2`` grid of an image of ``shape``."""
    return np.hypot(np.fft.fftfreq(shape[0])[:, None], np.fft.rfftfreq(shape[1])[None, :])
