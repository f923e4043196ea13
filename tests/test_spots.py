"""The spot stage (:mod:`samiam.proposals.spots`), on
scenes drawn here with numpy (not samiam.synth): discs of known outline on a lumpy support."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from samiam.proposals.spots import find_spots, polarity

SIDE = 384
CENTRES = [(60 + 64 * (i // 5), 50 + 70 * (i % 5)) for i in range(25)]
"""25 particles on a 5 x 5 grid, radii 3..9 px (a few px across, well under the texture window)."""
RADII = [3 + (i % 7) for i in range(25)]


def particle_scene(seed: int = 0, bright: bool = True, touching: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A support with lumps (sigma 12 px, 0.08 high) and noise (0.02), 25 discs 0.4 above it
    (below it when not ``bright``), blurred by 1 px -> image ``(SIDE, SIDE) float`` and the
    discs' labels ``(SIDE, SIDE) int`` (1..25). ``touching``: two extra discs that touch."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIDE, :SIDE]
    truth = np.zeros((SIDE, SIDE), np.int32)
    centres, radii = list(CENTRES), list(RADII)
    if touching:
        centres += [(30, 150), (30, 166)]
        radii += [8, 8]
    for index, ((y, x), r) in enumerate(zip(centres, radii), start=1):
        truth[(yy - y) ** 2 + (xx - x) ** 2 <= r ** 2] = index
    lumps = ndimage.gaussian_filter(rng.normal(0, 1, (SIDE, SIDE)), 12)
    support = 0.3 + 0.08 * lumps / lumps.std()
    signal = ndimage.gaussian_filter(0.4 * (truth > 0), 1.0)
    image = support + (signal if bright else -signal) + rng.normal(0, 0.02, (SIDE, SIDE))
    return image, truth


def best_iou(found: np.ndarray, disc: np.ndarray) -> float:
    """IoU of ``disc: (H, W) bool`` with the spot of ``found: (H, W) int`` that overlaps it most."""
    labels, counts = np.unique(found[disc & (found > 0)], return_counts=True)
    if not len(labels):
        return 0.0
    spot = found == labels[np.argmax(counts)]
    return float((spot & disc).sum() / (spot | disc).sum())


def test_every_particle_is_one_spot_with_its_outline_and_few_support_lumps_pass():
    """All 25 particles are found, each once. The support's widest lumps (sigma 12 px) still pass
    as spots of radius 16-23 px (4 here): the stage knows contrast, not the sharp edge that tells a
    particle from a lump (issue #16, left open); they score lowest."""
    image, truth = particle_scene()
    spots = find_spots(image, contrast=0.25, noise=3)
    on_particle = truth[spots.centres[:, 0].astype(int), spots.centres[:, 1].astype(int)]
    assert sorted(on_particle[on_particle > 0].tolist()) == list(range(1, 26))
    assert (on_particle == 0).sum() <= 5
    assert spots.scores[on_particle == 0].max() < np.median(spots.scores[on_particle > 0])
    assert set(spots.polarity.tolist()) == {1}
    ious = [best_iou(spots.labels, truth == k) for k in range(1, 26)]
    assert min(ious) > 0.45, ious  # a 3 px disc (29 px) is drawn on a 1 px blur's half maximum
    assert np.median(ious) > 0.8
    assert ((spots.scores > 0.5) & (spots.scores < 1)).all()


def test_dark_particles_of_a_bright_field_image_are_found_and_the_gaps_between_them_are_not():
    image, truth = particle_scene(bright=False)  # dark particles: a negatively skewed histogram
    assert polarity(image) == -1
    spots = find_spots(image, contrast=0.25, noise=3)
    assert spots.count >= 25 and set(spots.polarity.tolist()) == {-1}
    assert np.median([best_iou(spots.labels, truth == k) for k in range(1, 26)]) > 0.8


def test_touching_particles_are_split():
    image, _ = particle_scene(touching=True)
    spots = find_spots(image, contrast=0.25, noise=3)
    left, right = spots.labels[30, 148], spots.labels[30, 168]
    assert left > 0 and right > 0 and left != right


def test_a_full_size_image_gets_outlines_at_full_resolution():
    """A 2048 px image is searched at 1024 px; the outlines are drawn on the full image."""
    image, truth = particle_scene()
    big = np.kron(image, np.ones((6, 6)))[:2048, :2048]
    disc = np.kron(truth == 13, np.ones((6, 6), bool))[:2048, :2048]
    spots = find_spots(big, contrast=0.25, noise=3)
    assert spots.labels.shape == (2048, 2048)
    assert best_iou(spots.labels, disc) > 0.8


def test_spots_below_the_least_radius_are_not_searched():
    """In a lattice the proposer passes its period as the least radius (atom columns are smaller)."""
    image, _ = particle_scene()
    spots = find_spots(image, contrast=0.25, noise=3, min_radius=6)
    assert spots.count and spots.radii.min() >= 6
