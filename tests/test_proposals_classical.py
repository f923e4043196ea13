"""The weight-free proposer on synthetic textures whose true regions are known."""

from __future__ import annotations

import numpy as np
import pytest

from samiam.io import Micrograph
from samiam.proposals import ClassicalProposer
from samiam.proposals.classical import dominant_period
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


def test_non_square_image_keeps_its_shape():
    rng = np.random.default_rng(4)
    image = rng.standard_normal((90, 150))
    image[:, 75:] += lattice((90, 75), 7) * 2
    proposals = ClassicalProposer(ProposalSettings(classical_work_side=64)).propose(micrograph(image))
    check_partition(proposals, (90, 150))
