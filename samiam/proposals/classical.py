"""A weight-free proposer for hosts without a SAM checkpoint: texture superpixels, merged.

1. Estimate the lattice period ``p`` from the radially summed power spectrum of ``grey``; the
   texture window is ``classical_window * p``, at most ``classical_max_window`` (scaled to the
   image). An image without a lattice (its spectrum has no peak) gets the largest window and the
   period that goes with it.
2. Compact spots smaller than the window (particles, voids) would be averaged away: in an image
   without a lattice (in a lattice, atom columns would pass for spots) they are found first: seeded
   where the intensity smoothed over ``p / 2`` differs from the local mean of the support around
   it by more than ``classical_blob_contrast`` robust standard deviations, each reaching out,
   on the intensity smoothed over only :data:`SPOT_EDGE_SIGMA` px, to where it sinks into the
   support's noise (:data:`SPOT_EDGE_CONTRAST`), so a dim particle, a blurred rim and a dim lobe
   belong to their spot.
3. Texture feature maps: the local mean, the log local variance and the log local energy in
   three octave bands centred on ``p`` (difference-of-Gaussians filters applied in Fourier
   space), each averaged over the Gaussian window, leaving out the spots and their surroundings.
4. Vacuum and dark gap bands along interfaces belong to no material and are left out
   (:mod:`samiam.proposals.unlabelled`), unless the image is bright field
   (:attr:`samiam.io.Micrograph.bright_field`): there the darkest areas are the thickest or
   heaviest matter, not vacuum (a dark object on a TEM camera image was left out, its rim kept).
5. The (smooth) feature maps are downsampled to at most ``classical_work_side`` px per side and
   cut into watershed superpixels, flooded from a grid of ``classical_segments`` seeds and from
   the areas a texture edge fences in that no grid seed reached (a thin layer between two seed
   rows, :func:`seedless_basins`); adjacent superpixels are merged greedily
   (closest pair first) on a region adjacency graph while their features do not differ
   significantly (:func:`merge_regions`, ``classical_merge_t2``): the test grows with the regions'
   areas, so materials a few per cent apart stay apart.
   Region borders are then moved onto the ridge of the feature gradient (the true texture edge)
   by a watershed from the regions' cores; regions without a core (blends of their neighbours
   along an edge) dissolve. The spots are cut out of the regions as regions of their own.
6. Labels are upsampled by nearest neighbour: masks are disjoint and cover the image but for
   the vacuum and gap bands.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from samiam import masks as masklib
from samiam.io import Micrograph
from samiam.proposals.base import Proposals
from samiam.proposals.unlabelled import unlabelled_areas
from samiam.settings import ProposalSettings, scale_to_image

BAND_OCTAVES = (-1, 0, 1)
"""Texture bands, as octaves around the estimated lattice period."""
DOG_PERIOD_PER_SIGMA = np.pi / np.sqrt(np.log(4) / 6)
"""A difference of Gaussians with sigmas (s, 2s) passes periods around this many times s (about 6.5)."""
MIN_PERIODS_PER_SIDE = 16
"""The lattice period is searched among periods that fit at least this often in the shorter side."""
PEAK_SHARPNESS = 4.0
"""A lattice's ring of the power spectrum holds at least this many times the median power of the
rings within half an octave (:func:`dominant_period`). Set between the images without a lattice
and those with one of the tuning data: the particle tuning half (Cu*, PtCo*, PtW*: no ring above
1.9), synthetic seeds 100..105 of each class at 512 px and the second test generator's tuning
seeds (tests/second_generator.py: the strongest lattice ring at 7.1 or more, most above 50)."""
ENERGY_FLOOR = 1e-6
"""Added to energies (in units of the image's variance) before the log, so that flat areas are finite."""
SPOT_WINDOWS = 2.0
"""Spots are at most this many texture-window sigmas in radius (the window's reach): larger
bright or dark areas are left to the texture segmentation."""
SPOT_EDGE_SIGMA = 1.5
"""A spot's edge is found on the intensity smoothed over this many working-resolution px (noise
down threefold, a particle's rim kept sharp)."""
SPOT_EDGE_CONTRAST = 4.0
"""A spot reaches out to where its (lightly smoothed) intensity is still this many standard
deviations of the surroundings' noise away from the local mean: a particle's blurred rim and
its dimmer lobes belong to it."""
RIDGE_LEVELS = (1.5, 1.0, 0.75)
"""Levels of the feature gradient, in its 90th percentiles, at which areas fenced in by a texture
edge are looked for, highest first (:func:`seedless_basins`)."""
WEIGHT_FLOOR = 1e-6
"""Smallest weight a window average outside the spots is divided by (inside large spots it is ~0)."""
VARIANCE_FLOOR = 1e-6
"""Added to each region's feature variances, so that a perfectly flat region has a finite spread."""
MAD_TO_STD = 1.4826
"""Standard deviation of a normal distribution per median absolute deviation."""


class ClassicalProposer:
    """Disjoint texture regions and compact spots of ``micrograph.grey`` as proposals.

    Scores: how distinguishable a region is from its most similar neighbour, ``1 - BC``, where
    ``BC`` in [0, 1] is the Bhattacharyya coefficient (the overlap) of the two regions' feature
    distributions, each modelled as a Gaussian with a diagonal covariance. The features are the
    texture features plus the intensity smoothed over half a period (which tells a spot from
    its surroundings). A region whose features barely overlap its neighbours' scores near 1, one
    that is hardly different from a neighbour near 0; a region with no neighbour (the whole
    image) scores 1.
    """

    name = "classical"

    def __init__(self, settings: ProposalSettings):
        self.settings = settings

    def propose(self, micrograph: Micrograph) -> Proposals:
        grey = np.asarray(micrograph.grey, np.float32)
        settings = self.settings
        maps = texture_features(grey, settings)
        level = maps.fine * float(grey.std()) + float(grey.mean())
        empty = (np.zeros(level.shape, bool) if micrograph.bright_field else
                 unlabelled_areas(level, maps.period, maps.window, settings.classical_vacuum_level,
                                  settings.classical_gap_depth))
        gradient = feature_gradient(maps.edges)
        labels = merge_regions(superpixels(gradient, settings.classical_segments, ~empty, maps.window),
                               maps.features, settings.classical_merge_t2, 4 * np.pi * maps.window ** 2)
        labels = refine_boundaries(labels, gradient, margin=maps.window, mask=~empty)
        labels = _consecutive(np.where(maps.spots > 0, maps.spots + labels.max(), labels), background=0)
        scores = separability(labels, np.concatenate([maps.features, maps.fine[..., None]], axis=-1))
        rows = np.arange(grey.shape[0]) // maps.factor
        cols = np.arange(grey.shape[1]) // maps.factor
        masks = masklib.from_label_map(labels[np.ix_(rows, cols)], int(labels.max()))
        return Proposals(masks, scores.astype(np.float32))


@dataclass(frozen=True)
class TextureMaps:
    """Texture features of an image at the working resolution.

    features: (h, w, F) float32, F = 2 + len(BAND_OCTAVES): local mean (in units of the image's
        standard deviation), log local variance, log local energy of each band. Distances
        between textures are measured here (log energies compare ratios).
    edges: (h, w, F) float32, the same maps before the log, each divided by its standard
        deviation over the image. The window blends two textures linearly, so their edge is
        where these maps change fastest (in log space it shifts towards the weaker texture).
    fine: (h, w) float32, the intensity (in units of the image's standard deviation) smoothed
        over half a lattice period.
    spots: (h, w) int64, 0 outside the compact spots, 1..S inside them (see :func:`find_spots`).
    factor: the image is ``factor`` times larger than the maps (h = ceil(H / factor)).
    window: sigma of the Gaussian texture window, in working-resolution px.
    period: the lattice period (or, without a lattice, the period that goes with the largest
        window), in working-resolution px.
    """

    features: np.ndarray
    edges: np.ndarray
    fine: np.ndarray
    spots: np.ndarray
    factor: int
    window: float
    period: float


def dominant_period(grey: np.ndarray) -> float | None:
    """Lattice period in px of ``grey: (H, W) float``: the strongest sharp peak of its radially
    summed power spectrum (Hann-windowed), among periods from 2 px to ``min(H, W) /
    MIN_PERIODS_PER_SIDE``; None when the spectrum has no sharp peak there (no lattice).

    A ring is a sharp peak when its power is at least :data:`PEAK_SHARPNESS` times the median
    power of the rings within half an octave of it: a lattice puts its power into a few rings,
    while the steps between layers, particles and amorphous grain spread theirs over a broad hump
    at low frequencies that can be stronger than the lattice yet is no period (layers a hundred
    px thick made the weight-free path look for a 30 px period beside 4 and 7 px lattices)."""
    h, w = grey.shape
    window = np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.rfft2((grey - grey.mean()) * window)) ** 2
    side = min(h, w)
    ring = np.rint(_frequency_radius(grey.shape) * side).astype(np.int64)
    profile = np.bincount(ring.ravel(), power.ravel(), minlength=side // 2 + 1)[:side // 2 + 1]
    lowest = min(MIN_PERIODS_PER_SIDE, max(1, side // 2))
    rings = np.arange(lowest, side // 2 + 1)
    spread = np.sqrt(2.0)
    background = np.array([np.median(profile[int(r / spread):int(np.ceil(r * spread)) + 1]) for r in rings])
    sharp = rings[profile[rings] >= PEAK_SHARPNESS * background]
    return side / sharp[np.argmax(profile[sharp])] if len(sharp) else None


def texture_features(grey: np.ndarray, settings: ProposalSettings) -> TextureMaps:
    """Texture features of ``grey: (H, W) float``, averaged over a Gaussian window of
    ``settings.classical_window`` lattice periods (at most ``settings.classical_max_window``,
    scaled to the image) outside the compact spots, at the working resolution."""
    from scipy import ndimage
    from skimage.transform import downscale_local_mean

    std = float(grey.std())
    g = (grey - grey.mean()) / (std if std > 0 else 1.0)
    largest = scale_to_image(settings.classical_max_window, *g.shape)
    lattice = dominant_period(g)
    period = largest / settings.classical_window if lattice is None else lattice
    factor = max(1, int(np.ceil(max(g.shape) / settings.classical_work_side)))
    window = min(settings.classical_window * period, largest) / factor
    spectrum = np.fft.rfft2(g)
    radius_sq = _frequency_radius(g.shape) ** 2

    def lowpass(sigma: float) -> np.ndarray:
        return np.exp(-2 * np.pi ** 2 * sigma ** 2 * radius_sq)

    maps = [g, g ** 2]
    for octave in BAND_OCTAVES:
        sigma = period * 2.0 ** octave / DOG_PERIOD_PER_SIGMA
        maps.append(np.fft.irfft2(spectrum * (lowpass(sigma) - lowpass(2 * sigma)), s=g.shape) ** 2)
    maps = [downscale_local_mean(m, (factor, factor)) for m in maps]
    fine = ndimage.gaussian_filter(maps[0], period / 2 / factor, mode="reflect")
    # In a lattice, atom columns and their defects would pass for spots: only amorphous images get them.
    spots = (np.zeros(fine.shape, np.int64) if lattice is not None else
             find_spots(fine, ndimage.gaussian_filter(maps[0], SPOT_EDGE_SIGMA, mode="reflect"), window,
                        settings.classical_blob_contrast, max_radius=SPOT_WINDOWS * window))
    # The band filters reach about two periods beyond a spot: leave that out of the textures too.
    outside = ~ndimage.binary_dilation(spots > 0, iterations=int(np.ceil(2 * period / factor)))
    weight = ndimage.gaussian_filter(outside.astype(np.float64), window, mode="reflect")
    smooth = [ndimage.gaussian_filter(m * outside, window, mode="reflect") / np.maximum(weight, WEIGHT_FLOOR)
              for m in maps]
    mean, mean_sq, bands = smooth[0], smooth[1], smooth[2:]
    linear = np.stack([mean, np.maximum(mean_sq - mean ** 2, 0.0), *bands], axis=-1)
    features = np.concatenate([linear[..., :1], np.log(linear[..., 1:] + ENERGY_FLOOR)], axis=-1)
    edges = linear / np.maximum(linear.std(axis=(0, 1)), ENERGY_FLOOR)
    return TextureMaps(features.astype(np.float32), edges.astype(np.float32), fine.astype(np.float32),
                       spots, factor, window, period / factor)


def find_spots(fine: np.ndarray, detail: np.ndarray, window: float, contrast: float,
               max_radius: float) -> np.ndarray:
    """Compact bright or dark spots of ``fine: (h, w) float`` -> labels ``(h, w) int64``, 0
    outside, 1..S, with their edges found on ``detail: (h, w) float``, the same image smoothed
    less (:data:`SPOT_EDGE_SIGMA`).

    The difference of ``fine`` from its local mean (a Gaussian window of sigma ``window``) is
    measured in robust standard deviations (1.4826 median absolute deviations); the local mean is
    then taken again without the pixels beyond ``contrast`` of them and a window around them
    (the blurred tail of ``fine``), so that a bright spot does not raise its surroundings' mean
    (and leave them a dark ring, or hide a dim lobe beside it). A spot is seeded where the
    difference still exceeds ``contrast`` and spans the connected pixels, of the same sign and
    closer to its seed than to any other (a watershed), where ``detail`` differs from the local
    mean by at least :data:`SPOT_EDGE_CONTRAST` robust standard deviations of ``detail``'s own
    difference: a dim particle and a bright particle's blurred rim reach down to the noise of
    the support around them. Pieces cut off from the seed are dropped; holes inside a spot are
    filled. Spots larger than a disc of ``max_radius`` are textures, not spots, and are dropped.
    """
    from scipy import ndimage
    from skimage.segmentation import watershed

    spots = np.zeros(fine.shape, np.int64)
    residual = fine - ndimage.gaussian_filter(fine, window, mode="reflect")
    spread = _robust_std(residual)
    if spread <= 0:
        return spots
    usual = ~ndimage.binary_dilation(np.abs(residual) > contrast * spread, iterations=max(1, round(window)))
    usual = usual.astype(np.float64)
    background = (ndimage.gaussian_filter(fine * usual, window, mode="reflect")
                  / np.maximum(ndimage.gaussian_filter(usual, window, mode="reflect"), WEIGHT_FLOOR))
    residual, edge = fine - background, detail - background
    edge_spread = _robust_std(edge)
    for sign in (1.0, -1.0):
        r, e = sign * residual, sign * edge
        seeds = ndimage.label(r > contrast * spread)[0]
        if not seeds.any():
            continue
        extent = watershed(-e, markers=seeds, mask=e >= SPOT_EDGE_CONTRAST * edge_spread)
        extent = _fill_holes(_connected_to(extent, seeds > 0))
        area = np.bincount(extent.ravel())
        small = (area <= np.pi * max_radius ** 2)[extent] & (extent > 0) & (spots == 0)
        spots[small] = extent[small] + spots.max()
    return _consecutive(spots, background=0)


def _robust_std(values: np.ndarray) -> float:
    """1.4826 median absolute deviations of ``values``: their standard deviation were they normal,
    whatever a few outliers (spots) do."""
    return MAD_TO_STD * float(np.median(np.abs(values - np.median(values))))


def _connected_to(labels: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """``labels: (h, w) int``, 0 outside, without the connected pieces that hold no pixel of
    ``seeds: (h, w) bool`` (noise cut off from its spot by the edge threshold)."""
    from scipy import ndimage

    pieces = ndimage.label(labels > 0)[0]
    seeded = np.zeros(pieces.max() + 1, bool)
    seeded[pieces[seeds]] = True
    seeded[0] = False
    return np.where(seeded[pieces], labels, 0)


def _fill_holes(labels: np.ndarray) -> np.ndarray:
    """``labels: (h, w) int``, 0 outside, with each label's holes (background enclosed by it) given to it."""
    from scipy import ndimage

    filled = labels.copy()
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        inside = ndimage.binary_fill_holes(labels[box] == index)
        filled[box][inside & (labels[box] == 0)] = index
    return filled


def feature_gradient(features: np.ndarray) -> np.ndarray:
    """Magnitude of the (Sobel) gradient of ``features: (h, w, F)`` -> ``(h, w) float``."""
    from scipy import ndimage

    return np.sqrt(sum(ndimage.sobel(features[..., f], axis) ** 2
                       for f in range(features.shape[-1]) for axis in (0, 1)))


def superpixels(gradient: np.ndarray, segments: int, mask: np.ndarray, core: float) -> np.ndarray:
    """Watershed of ``gradient: (h, w)`` inside ``mask: (h, w) bool``, flooded from a regular grid
    of ``segments`` seeds and from the seedless basins (:func:`seedless_basins`, with a pixel
    farther than ``core`` px from their border), so that superpixel borders fall on texture
    edges -> labels ``(h, w) int``, 1-based, 0 outside ``mask``. A part of ``mask`` that no seed
    reaches (a narrow layer cut off by vacuum and a gap band) is a superpixel of its own."""
    from scipy import ndimage
    from skimage.segmentation import watershed
    from skimage.util import regular_grid

    markers = np.zeros(gradient.shape, np.int64)  # ``segments`` seeds inside ``mask``, as skimage places them
    grid = regular_grid(gradient.shape, int(segments / max(mask.mean(), 1.0 / mask.size)))
    markers[grid] = 1 + np.arange(markers[grid].size).reshape(markers[grid].shape)
    markers *= mask
    basins = seedless_basins(gradient, mask, markers > 0, core)
    markers = np.where(basins > 0, basins + markers.max(), markers)
    labels = watershed(gradient, markers=markers, mask=mask)
    unreached, count = ndimage.label(mask & (labels == 0))
    return np.where(unreached > 0, unreached + labels.max(), labels) if count else labels


def seedless_basins(gradient: np.ndarray, mask: np.ndarray, seeds: np.ndarray, core: float) -> np.ndarray:
    """Areas of ``mask: (h, w) bool`` fenced in by a ridge of ``gradient: (h, w)`` that hold none
    of ``seeds: (h, w) bool`` -> labels ``(h, w) int64``, 0 outside, 1..B.

    A regular seed grid misses a thin layer between two rows of seeds (an amorphous cap over a
    crystal): the seed below floods it together with a block of its neighbour, and no merge
    splits that superpixel again. A basin is a connected area where ``gradient`` stays below a
    ridge level, :data:`RIDGE_LEVELS` times its 90th percentile inside ``mask``, highest first
    (a texture edge rises above the noise of a texture, a faint one only a little); each basin
    with a pixel farther than ``core`` px from its border (room for a texture core, see
    :func:`refine_boundaries`) and no seed, nor a basin found at a higher level, inside is one.
    """
    from scipy import ndimage

    found = np.zeros(mask.shape, np.int64)
    if not mask.any():
        return found
    usual = float(np.percentile(gradient[mask], 90))
    for level in RIDGE_LEVELS:
        basins, count = ndimage.label(mask & (gradient < level * usual))
        depth = ndimage.maximum(ndimage.distance_transform_edt(basins > 0), basins, np.arange(count + 1))
        keep = np.asarray(depth) > core
        keep[np.unique(basins[seeds | (found > 0)])] = False
        keep[0] = False
        if keep.any():
            found = np.where(keep[basins], _consecutive(np.where(keep[basins], basins, 0), background=0)
                             + found.max(), found)
    return found


def refine_boundaries(labels: np.ndarray, gradient: np.ndarray, margin: float,
                      mask: np.ndarray) -> np.ndarray:
    """Move region borders onto the ridge of ``gradient`` and dissolve regions with no pixel
    farther than ``margin`` from their border.

    The texture window blends the features of two textures over a band about a window wide on
    each side of their edge; a region inside that band is a blend, not a texture. The pixels
    farther than ``margin`` (the window's sigma) from any border are the regions' cores; a
    watershed of ``gradient`` from these cores puts every edge where the features change fastest,
    i.e. on the true edge. A part of ``mask`` that no core reaches (a narrow layer cut off by
    vacuum and a gap band) keeps its labels. labels: (h, w) int, 1-based, 0 outside ``mask: (h, w) bool`` ->
    (h, w) int64, 1..K consecutive, 0 outside ``mask``.
    """
    from scipy import ndimage
    from skimage.segmentation import find_boundaries, watershed

    cores = ndimage.distance_transform_edt(~find_boundaries(labels, mode="thick")) > margin
    if not cores.any():
        return labels
    refined = watershed(gradient, markers=np.where(cores & mask, labels, 0), mask=mask)
    refined = np.where(mask & (refined == 0), labels, refined)  # parts no core reaches keep theirs
    return _consecutive(refined, background=0)


def merge_regions(labels: np.ndarray, features: np.ndarray, threshold: float,
                  correlation_area: float) -> np.ndarray:
    """Greedily merge adjacent regions whose features do not differ significantly.

    Two regions differ by :func:`welch_t2` of their pixels' features, each region counting
    ``area / correlation_area`` independent samples (the features are window averages: pixels
    closer than the window are not independent). The closest pair is merged first, while the
    smallest difference is below ``threshold``. A real difference grows with the regions' areas,
    so large regions a few per cent apart stay apart while noise-level splits of one texture merge.

    labels: (h, w) int, 1-based, 0 where no region is; features: (h, w, F) -> (h, w) int64
    labels 1..K, consecutive, 0 where ``labels`` is 0.
    """
    from skimage import graph

    count, total = _region_sums(labels, features)
    _, total_sq = _region_sums(labels, features.astype(np.float64) ** 2)
    rag = graph.RAG()
    for n in np.flatnonzero(count[1:]) + 1:
        rag.add_node(n, labels=[n], count=count[n], total=total[n], total_sq=total_sq[n])

    def difference(a: dict, b: dict) -> float:
        return welch_t2(a["count"], a["total"], a["total_sq"], b["count"], b["total"], b["total_sq"],
                        correlation_area)

    for a, b in _adjacent_pairs(labels):
        rag.add_edge(a, b, weight=difference(rag.nodes[a], rag.nodes[b]))

    def absorb(rag, src, dst):
        node = rag.nodes[dst]
        for key in ("count", "total", "total_sq"):
            node[key] = node[key] + rag.nodes[src][key]

    def reweigh(rag, src, dst, n):
        return {"weight": difference(rag.nodes[dst], rag.nodes[n])}

    merged = graph.merge_hierarchical(labels, rag, thresh=threshold, rag_copy=False, in_place_merge=True,
                                      merge_func=absorb, weight_func=reweigh)
    return _consecutive(np.where(labels > 0, merged, -1), background=-1)


def welch_t2(count_a: float, total_a: np.ndarray, total_sq_a: np.ndarray, count_b: float,
             total_b: np.ndarray, total_sq_b: np.ndarray, correlation_area: float) -> float:
    """Mean over features of the squared Welch t statistic between two regions given by their
    pixel count, feature sums ``(F,)`` and sums of squares ``(F,)``; each region holds
    ``count / correlation_area`` (at least 1) independent samples."""
    mean_a, mean_b = total_a / count_a, total_b / count_b
    var_a = np.maximum(total_sq_a / count_a - mean_a ** 2, 0.0) + VARIANCE_FLOOR
    var_b = np.maximum(total_sq_b / count_b - mean_b ** 2, 0.0) + VARIANCE_FLOOR
    samples_a = max(count_a / correlation_area, 1.0)
    samples_b = max(count_b / correlation_area, 1.0)
    return float(np.mean((mean_a - mean_b) ** 2 / (var_a / samples_a + var_b / samples_b)))


def separability(labels: np.ndarray, features: np.ndarray) -> np.ndarray:
    """How distinguishable each region is from its most similar neighbour, in [0, 1].

    labels: (h, w) int, 1..K consecutive; features: (h, w, F) -> ``(K,) float64``,
    ``1 - max over adjacent regions of the Bhattacharyya coefficient`` of the two regions'
    features, each modelled as a Gaussian with diagonal covariance (the region's per-feature
    mean and variance); 1 for a region without neighbours.
    """
    count, total = _region_sums(labels, features)
    _, total_sq = _region_sums(labels, features.astype(np.float64) ** 2)
    count = np.maximum(count[:, None], 1)
    mean = total / count
    var = np.maximum(total_sq / count - mean ** 2, 0.0) + VARIANCE_FLOOR
    pairs = _adjacent_pairs(labels)
    a, b = pairs[:, 0], pairs[:, 1]
    pooled = (var[a] + var[b]) / 2
    distance = (((mean[a] - mean[b]) ** 2 / pooled) / 8
                + np.log(pooled / np.sqrt(var[a] * var[b])) / 2).sum(axis=1)
    overlap = np.zeros(len(count))
    np.maximum.at(overlap, a, np.exp(-distance))
    np.maximum.at(overlap, b, np.exp(-distance))
    return (1.0 - overlap)[1:]


def _region_sums(labels: np.ndarray, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel count ``(L + 1,)`` and feature sums ``(L + 1, F)`` per label value 0..L."""
    flat = labels.ravel()
    size = int(flat.max()) + 1
    values = features.reshape(flat.size, -1).astype(np.float64)
    count = np.bincount(flat, minlength=size)
    total = np.stack([np.bincount(flat, values[:, f], minlength=size) for f in range(values.shape[1])], 1)
    return count, total


def _adjacent_pairs(labels: np.ndarray) -> np.ndarray:
    """Distinct pairs ``(P, 2)`` of labels >= 1 that touch horizontally or vertically."""
    a = np.concatenate([labels[:, :-1].ravel(), labels[:-1, :].ravel()])
    b = np.concatenate([labels[:, 1:].ravel(), labels[1:, :].ravel()])
    differ = (a != b) & (a > 0) & (b > 0)
    return np.unique(np.sort(np.stack([a[differ], b[differ]], axis=1), axis=1), axis=0)


def _consecutive(labels: np.ndarray, background: int | None = None) -> np.ndarray:
    """Renumber the values of ``labels: (h, w) int`` as 1..K in order -> ``(h, w) int64``; a
    ``background`` value, when given, must be the smallest and becomes 0."""
    consecutive = np.unique(labels, return_inverse=True)[1].reshape(labels.shape)
    return consecutive + (0 if background is not None and (labels == background).any() else 1)


def _frequency_radius(shape: tuple[int, int]) -> np.ndarray:
    """|frequency| in cycles/px on the ``rfft2`` grid of an image of ``shape``."""
    return np.hypot(np.fft.fftfreq(shape[0])[:, None], np.fft.rfftfreq(shape[1])[None, :])
