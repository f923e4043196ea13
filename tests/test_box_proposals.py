"""SAM-like proposals from drawn particle boxes (samiam.box_proposals)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from samiam.box_proposals import box_proposals

SIDE = 200


def scene(bright: bool = True, seed: int = 0):
    """Support on the left 120 columns, vacuum right, 12 discs of radius 5 on the support; their
    boxes (x0, y0, x1, y1), 2 px margin. Particles are brighter than the support (darker when not
    ``bright``, with the whole image inverted as in bright field)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIDE, :SIDE]
    support = xx < 120
    grey = np.where(support, 0.5, 0.1) + 0.03 * ndimage.gaussian_filter(rng.normal(size=(SIDE, SIDE)), 2)
    centres = [(30 + 45 * i, 20 + 30 * j) for i in range(4) for j in range(3)]
    discs = np.array([(yy - y) ** 2 + (xx - x) ** 2 <= 25 for y, x in centres])
    grey[discs.any(axis=0)] = 0.9
    boxes = np.array([(x - 7, y - 7, x + 8, y + 8) for y, x in centres], float)
    return (grey if bright else 1 - grey), boxes, discs, support


@pytest.mark.parametrize("bright", [True, False])
def test_one_mask_per_particle_a_support_and_a_vacuum(bright):
    grey, boxes, discs, support = scene(bright)
    made = box_proposals(grey, boxes)
    assert made.bright is bright and made.n_particles == len(discs)
    particles = made.proposals[:made.n_particles]
    iou = (particles & discs).sum(axis=(1, 2)) / (particles | discs).sum(axis=(1, 2))
    assert iou.min() > 0.8
    union = particles.any(axis=0)
    assert (made.proposals[-2] == (support | union)).mean() > 0.99
    assert (made.proposals[-1] == ~made.proposals[-2]).all()
    assert made.truth.sum(axis=0).max() == 1 and made.truth.any(axis=0).all()
    assert (made.particle_truth == union).all()


def test_a_support_without_vacuum_is_one_mask():
    grey, boxes, _, _ = scene()
    grey = np.where(grey < 0.3, 0.5, grey)  # the vacuum becomes support
    made = box_proposals(grey, boxes)
    assert len(made.proposals) == made.n_particles + 1 and made.proposals[-1].all()
    assert len(made.truth) == 2


def test_no_usable_box_is_an_error():
    grey, _, _, _ = scene()
    with pytest.raises(ValueError, match="no box gave a particle mask"):
        box_proposals(grey, np.array([[500.0, 500.0, 510.0, 510.0]]))
