"""K where a person sees it (issue #16): the weight-free path on scenes samiam.synth did not draw.

The scenes come from :mod:`second_generator` (product-of-sines and hexagonal lattices,
straight, tilted and wavy interfaces, 16-bit); each must come back with one material per layer,
each matching its layer with an IoU of at least :data:`MIN_IOU`.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.optimize import linear_sum_assignment
from second_generator import SCENES, TEST_SEEDS, generate
from shared_data import formats_dir

import samiam
from samiam.io import load_micrograph
from samiam.metrics import pair_stats
from samiam.settings import Settings

MIN_IOU = 0.8
CLASSICAL = Settings().replace({"proposals.proposer": "classical"})


def matched_ious(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(K,) IoU of each of ``truth: (K, H, W) bool`` with the prediction of ``pred: (M, H, W)``
    paired with it one to one (Hungarian, largest total IoU); 0 for a layer left unpaired."""
    iou = pair_stats(pred, truth).iou
    rows, cols = linear_sum_assignment(-iou)
    matched = np.zeros(len(truth))
    matched[cols] = iou[rows, cols]
    return matched


def test_generator_is_seeded_16_bit_and_labels_every_layer():
    scene = generate("three_layers", TEST_SEEDS[0])
    again = generate("three_layers", TEST_SEEDS[0])
    other = generate("three_layers", TEST_SEEDS[1])
    assert scene.image.dtype == np.uint16 and scene.image.shape == (512, 512)
    assert np.array_equal(scene.image, again.image) and not np.array_equal(scene.image, other.image)
    assert np.unique(scene.labels).tolist() == [1, 2, 3]
    means = [scene.image[scene.labels == k].mean() / 65535 for k in (1, 2, 3)]
    assert means == pytest.approx([0.46, 0.28, 0.81], abs=0.02)  # amorphous, dim p7, bright p4


@pytest.mark.parametrize("name", sorted(SCENES))
def test_every_layer_is_one_material(name):
    scene = generate(name, TEST_SEEDS[0])
    seg = samiam.segment(scene.png(), CLASSICAL)
    assert len(seg.materials) == len(scene.materials), f"K {len(seg.materials)} for {len(scene.materials)} layers"
    assert (matched_ious(seg.materials, scene.materials) >= MIN_IOU).all(), \
        matched_ious(seg.materials, scene.materials).round(2)


def test_the_dark_object_of_a_bright_field_tem_image_is_a_material():
    """The 128x128 TIA fixture (a Talos TEM image on a Ceta camera) shows a dark object across a
    bright field; bright-field contrast makes it dark, so it is no vacuum: it must be a material
    (IoU >= 0.8 with the object), not a hole with its rim as a material."""
    pytest.importorskip("rsciio")
    micrograph = load_micrograph(formats_dir() / "128x128-TEM_search.emi")
    smooth = ndimage.gaussian_filter(micrograph.grey, 2)
    dark = smooth < 0.5 * np.median(smooth)
    seg = samiam.segment(micrograph, CLASSICAL)
    assert matched_ious(seg.materials, dark[None])[0] >= MIN_IOU
