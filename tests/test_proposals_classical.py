"""The weight-free proposer on synthetic textures whose true regions are known."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from samiam.io import Micrograph
from samiam.proposals import ClassicalProposer
from samiam.proposals.classical import (
    SPOT_EDGE_SIGMA,
    dominant_period,
    find_spots,
    seedless_basins,
    separability,
)
from samiam.settings import ProposalSettings

SIDE = 256


def lattice(shape, period: float) -> np.ndarray:
    """Square 2-D cosine lattice of ``period`` px."""
    y, x = np.mgrid[:shape[0], :shape[1]]
    return np.cos(2 * np.pi * x / period) + np.cos(2 * np.pi * y / period)


def micrograph(image: np.ndarray) -> Micrograph:
    grey = ((image - image.min()) / (image.max() - image.min())).astype(np.float32)
    rgb = np.repeat(np.round(grey * 255).astype(np.uint8)[..., None], 3, axis=-1)
    return Micrograph(name="synthetic", raw=image, grey=grey, rgb=rgb, bit_depth=64)


def two_textures(rng) -> tuple[np.ndarray, np.ndarray]:
    """Left half: period-6 lattice; right half: period-10 lattice plus noise. Returns (image, left)."""
    left = np.zeros((SIDE, SIDE), bool)
    left[:, :SIDE // 2] = True
    noisy = lattice(left.shape, 10) + 0.3 * rng.standard_normal(left.shape)
    return np.where(left, lattice(left.shape, 6), noisy), left


def check_regions(masks: np.ndarray, truth: list[np.ndarray], min_iou: float, max_straddle: float):
    """Each true region is covered (IoU > min_iou) by the masks mostly inside it, and no mask
    has more than ``max_straddle`` of its area outside the region holding most of it."""
    inside = np.array([[(m & t).sum() / m.sum() for t in truth] for m in masks])  # (N, regions)
    home = inside.argmax(axis=1)
    assert (1 - inside.max(axis=1) <= max_straddle).all(), inside
    for r, region in enumerate(truth):
        union = masks[home == r].any(axis=0)
        iou = (union & region).sum() / (union | region).sum()
        assert iou > min_iou, (r, iou)


def check_partition(proposals, shape):
    n = len(proposals.masks)
    assert proposals.masks.shape == (n, *shape) and proposals.masks.dtype == bool
    assert proposals.scores.shape == (n,) and proposals.scores.dtype == np.float32
    assert ((proposals.scores >= 0) & (proposals.scores <= 1)).all()
    assert (proposals.masks.sum(axis=0) == 1).all(), "masks must be disjoint and cover the image"


@pytest.mark.parametrize("work_side", [512, 100])
def test_two_lattices_are_separated(work_side):
    image, left = two_textures(np.random.default_rng(0))
    proposer = ClassicalProposer(ProposalSettings(classical_work_side=work_side))
    proposals = proposer.propose(micrograph(image))
    check_partition(proposals, left.shape)
    check_regions(proposals.masks, [left, ~left], min_iou=0.8, max_straddle=0.2)


def test_amorphous_disk_in_a_crystal():
    rng = np.random.default_rng(1)
    y, x = np.mgrid[:SIDE, :SIDE]
    disk = (y - 120) ** 2 + (x - 140) ** 2 < 70 ** 2
    image = np.where(disk, 0.3 + rng.standard_normal(disk.shape), lattice(disk.shape, 8))
    proposals = ClassicalProposer(ProposalSettings()).propose(micrograph(image))
    check_partition(proposals, disk.shape)
    check_regions(proposals.masks, [disk, ~disk], min_iou=0.8, max_straddle=0.2)


def test_a_thin_layer_between_two_rows_of_grid_seeds_is_a_region_of_its_own():
    """An amorphous layer 34 px thick (about six texture windows) across a lattice, between the
    grid seed rows 18 and 55 of a 256 px image with 48 segments: no grid seed lies in it, so
    without a seed of its own the seeds above and below flood it together with the lattice."""
    rng = np.random.default_rng(11)
    rows = np.arange(SIDE)[:, None] * np.ones((1, SIDE))
    layer = (rows >= 20) & (rows < 54)
    image = np.where(layer, 0.3 + rng.standard_normal(layer.shape), lattice(layer.shape, 6))
    proposals = ClassicalProposer(ProposalSettings(classical_segments=48)).propose(micrograph(image))
    check_partition(proposals, layer.shape)
    check_regions(proposals.masks, [layer, ~layer], min_iou=0.8, max_straddle=0.2)


def test_seedless_basins_are_the_areas_a_ridge_fences_in_with_room_for_a_core_and_no_seed():
    """A flat gradient with two ridge rings: the disc inside the first (radius 20) holds no seed
    and is a basin; the one inside the second holds a seed; a ring of radius 4 has no room for
    a core of 5 px; the outside, where the grid seed lies, is no basin either."""
    y, x = np.mgrid[:120, :200]
    gradient = np.full(y.shape, 0.1)
    rings = [(60, 50, 20), (60, 140, 20), (15, 100, 4)]
    for cy, cx, r in rings:
        gradient[np.abs(np.hypot(y - cy, x - cx) - r) < 2] = 10.0
    seeds = np.zeros(y.shape, bool)
    seeds[60, 140] = seeds[110, 10] = True
    basins = seedless_basins(gradient, np.ones(y.shape, bool), seeds, core=5.0)
    first = np.hypot(y - 60, x - 50) <= 18
    assert basins.max() == 1
    assert (basins == 1).sum() == first.sum() and (basins[first] == 1).all()


def test_one_texture_is_one_confident_region():
    image = lattice((SIDE, SIDE), 8) + 0.3 * np.random.default_rng(2).standard_normal((SIDE, SIDE))
    proposals = ClassicalProposer(ProposalSettings()).propose(micrograph(image))
    check_partition(proposals, (SIDE, SIDE))
    largest = proposals.masks.sum(axis=(1, 2)).argmax()
    assert proposals.masks[largest].mean() > 0.9
    assert proposals.scores[largest] > 0.5


@pytest.mark.parametrize("period", [5.0, 8.0, 12.0])
def test_dominant_period_of_a_lattice(period):
    image = lattice((SIDE, SIDE), period) + 0.5 * np.random.default_rng(3).standard_normal((SIDE, SIDE))
    # Ring k of the spectrum is period SIDE / k: the estimate is within half a ring of the truth.
    k = SIDE / period
    assert SIDE / (k + 0.5) <= dominant_period(image) <= SIDE / (k - 0.5)


def test_the_darkest_area_is_vacuum_only_in_z_contrast():
    """A dark disc in a bright lattice: left out as vacuum, unless the image is bright field."""
    rng = np.random.default_rng(12)
    y, x = np.mgrid[:SIDE, :SIDE]
    disk = (y - 128) ** 2 + (x - 128) ** 2 < 60 ** 2
    image = np.where(disk, -10 + 0.05 * rng.standard_normal(disk.shape), lattice(disk.shape, 8))
    z_contrast = micrograph(image)
    segmented = ClassicalProposer(ProposalSettings()).propose(z_contrast).masks.any(axis=0)
    assert segmented[disk].mean() < 0.1
    proposals = ClassicalProposer(ProposalSettings()).propose(replace(z_contrast, bright_field=True))
    check_partition(proposals, disk.shape)
    # The border lies up to a window (8 px) inside the disc: the local variance peaks where the
    # window straddles a step this large (a known bias of refine_boundaries' ridge), hence 0.7.
    check_regions(proposals.masks, [disk, ~disk], min_iou=0.7, max_straddle=0.2)


def layered_steps(rng) -> np.ndarray:
    """Three horizontal layers of very different mean intensity, 50-146 px thick, and noise."""
    rows = np.arange(SIDE)[:, None] * np.ones((1, SIDE))
    return np.select([rows < 60, rows < 110], [0.0, -3.0], 4.0) + 0.3 * rng.standard_normal((SIDE, SIDE))


def test_the_steps_between_thick_layers_are_no_lattice():
    """Their power is a broad hump at low frequencies, stronger than a faint lattice's ring but
    no period: the faint lattice is the period, and without one there is none."""
    steps = layered_steps(np.random.default_rng(5))
    assert dominant_period(steps) is None
    middle = (np.arange(SIDE)[:, None] >= 60) & (np.arange(SIDE)[:, None] < 110)
    faint = steps + np.where(middle, 0.5 * lattice((SIDE, SIDE), 4), 0)
    assert dominant_period(faint) == pytest.approx(4, abs=0.1)


def test_non_square_image_keeps_its_shape():
    rng = np.random.default_rng(4)
    image = rng.standard_normal((90, 150))
    image[:, 75:] += lattice((90, 75), 7) * 2
    proposals = ClassicalProposer(ProposalSettings(classical_work_side=64)).propose(micrograph(image))
    check_partition(proposals, (90, 150))


def test_small_particles_on_a_noisy_support_are_proposals_of_their_own():
    """Bright discs (8-20 px) on a Poisson-noisy support with no lattice: each disc of at least
    12 px diameter is covered, with IoU > 0.5, by one proposal."""
    rng = np.random.default_rng(5)
    y, x = np.mgrid[:SIDE, :SIDE]
    centres = [(40, 40), (40, 130), (40, 210), (130, 50), (128, 128), (130, 205), (210, 45), (215, 130), (210, 210)]
    diameters = [8, 10, 12, 14, 16, 18, 20, 12, 16]
    discs = [(y - cy) ** 2 + (x - cx) ** 2 <= (d / 2) ** 2 for (cy, cx), d in zip(centres, diameters)]
    expected = 20.0 + 40.0 * np.any(discs, axis=0)  # mean counts per pixel
    proposals = ClassicalProposer(ProposalSettings()).propose(micrograph(rng.poisson(expected).astype(float)))
    check_partition(proposals, (SIDE, SIDE))
    for disc, d in zip(discs, diameters):
        if d < 12:
            continue
        iou = max((m & disc).sum() / (m | disc).sum() for m in proposals.masks)
        assert iou > 0.5, (d, iou)


def test_regions_of_two_textures_are_scored_confidently():
    image, left = two_textures(np.random.default_rng(6))
    proposals = ClassicalProposer(ProposalSettings()).propose(micrograph(image))
    home = [(proposals.masks & region).sum(axis=(1, 2)).argmax() for region in (left, ~left)]
    assert home[0] != home[1]
    assert (proposals.scores[home] > 0.2).all(), proposals.scores


def test_scores_are_one_minus_the_bhattacharyya_overlap_with_the_closest_neighbour():
    """Three stripes with one feature each, known means and variances: the score of each stripe
    is 1 - exp(-D_B) for the closest neighbour, D_B computed by hand for 1-D Gaussians."""
    rng = np.random.default_rng(7)
    labels = np.repeat(np.repeat(np.array([[1, 2, 3]]), 40, axis=1), 30, axis=0)
    values = np.array([0.0, 1.0, 4.0])[labels - 1] + np.array([0.5, 0.5, 1.0])[labels - 1] * rng.standard_normal(labels.shape)
    stats = [(values[labels == k].mean(), values[labels == k].var()) for k in (1, 2, 3)]

    def overlap(i, j):
        (m1, v1), (m2, v2) = stats[i], stats[j]
        v = (v1 + v2) / 2
        return np.exp(-((m1 - m2) ** 2 / v / 8 + np.log(v / np.sqrt(v1 * v2)) / 2))

    expected = 1 - np.array([overlap(0, 1), max(overlap(0, 1), overlap(1, 2)), overlap(1, 2)])
    np.testing.assert_allclose(separability(labels, values[..., None]), expected, rtol=1e-4)


def test_vacuum_and_a_dark_gap_band_belong_to_no_proposal():
    """Vacuum on top (no signal but detector noise), then two lattices split by a 4 px dark band:
    the vacuum and the band are left out of every proposal, the two lattices are covered."""
    rng = np.random.default_rng(8)
    rows = np.arange(SIDE)[:, None] * np.ones((1, SIDE))
    vacuum, band = rows < 40, (rows >= 150) & (rows < 154)
    signal = np.where(rows < 150, 60.0, 75.0) * (1 + 0.8 * lattice((SIDE, SIDE), 8) / 2)
    signal = np.where(vacuum, 1.0, np.where(band, 12.0, signal))
    proposals = ClassicalProposer(ProposalSettings()).propose(micrograph(rng.poisson(signal).astype(float)))
    covered = proposals.masks.any(axis=0)
    assert covered[vacuum].mean() < 0.1
    assert covered[band].mean() < 0.1
    upper, lower = ~vacuum & (rows < 150), rows >= 154
    check_regions(proposals.masks, [upper, lower], min_iou=0.9, max_straddle=0.05)


def test_a_narrow_layer_between_vacuum_and_a_gap_band_is_a_proposal():
    """A 16 px lattice strip cut off by vacuum above and a dark gap band below, where no
    superpixel seed of the regular grid falls: it still becomes a proposal of its own."""
    rng = np.random.default_rng(9)
    rows = np.arange(SIDE)[:, None] * np.ones((1, SIDE))
    strip, band = (rows >= 40) & (rows < 56), (rows >= 56) & (rows < 60)
    signal = 60.0 * (1 + 0.8 * lattice((SIDE, SIDE), 8) / 2)
    signal = np.where(rows < 40, 1.0, np.where(band, 12.0, signal))
    proposals = ClassicalProposer(ProposalSettings()).propose(micrograph(rng.poisson(signal).astype(float)))
    iou = max((m & strip).sum() / (m | strip).sum() for m in proposals.masks)
    assert iou > 0.6, iou


def test_a_dim_particle_and_a_bright_particles_blurred_rim_are_spots():
    """:func:`find_spots` on a support of 20 counts (Poisson noise, sigma 4.5 per pixel) with a
    bright disc (+40) and a dim one (+6), both blurred by sigma 2 px like a probe's tail: each is
    one spot; the dim spot matches its disc (IoU > 0.7), and the bright one reaches down its
    blurred rim: it holds every pixel where the blurred signal is at least a quarter of the
    disc's height, and stays within three blur sigmas (6 px) of the disc."""
    from scipy import ndimage

    rng = np.random.default_rng(3)
    y, x = np.mgrid[:SIDE, :SIDE]
    bright = (y - 80) ** 2 + (x - 80) ** 2 <= 12 ** 2
    dim = (y - 170) ** 2 + (x - 170) ** 2 <= 12 ** 2
    bright_signal = ndimage.gaussian_filter(40.0 * bright, 2)
    image = rng.poisson(20.0 + bright_signal + ndimage.gaussian_filter(6.0 * dim, 2)).astype(float)
    window = 8.0
    spots = find_spots(ndimage.gaussian_filter(image, window / 2), ndimage.gaussian_filter(image, SPOT_EDGE_SIGMA),
                       window, contrast=5.0, max_radius=2 * window)
    assert spots.max() == 2
    dim_spot, bright_spot = spots == spots[170, 170], spots == spots[80, 80]
    assert (dim_spot & dim).sum() / (dim_spot | dim).sum() > 0.7
    assert (bright_spot | (bright_signal < 10)).all(), "the blurred rim must belong to the particle"
    assert ndimage.distance_transform_edt(~bright)[bright_spot].max() <= 6
