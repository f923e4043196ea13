"""Simulation of SAM's failure modes: each kind appears at rate 1, never at rate 0; deterministic."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from samiam.synth import generate_scene
from samiam.synth.failures import FailureRates, simulate_sam_proposals

H = W = 256
ZERO = FailureRates(split=0, nested=0, duplicate=0, islands=0, missed_narrow=0, ragged=0)


def only(**rates) -> FailureRates:
    return dataclasses.replace(ZERO, **rates)


def ground_truth() -> np.ndarray:
    """Three layers: a wavy top layer, a gap band, a 10 px narrow layer, a thick substrate."""
    rows = np.arange(H)[:, None]
    cols = np.arange(W)[None, :]
    interface = 60 + np.round(4 * np.sin(cols / 20.0)).astype(int)
    top = rows < interface
    narrow = (rows >= interface + 5) & (rows < interface + 15)
    bottom = rows >= interface + 15
    return np.stack([top, narrow, bottom])


GT = ground_truth()
NARROW = 1


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / (a | b).sum()


def exact_matches(proposals: np.ndarray, mask: np.ndarray) -> int:
    return sum(np.array_equal(p, mask) for p in proposals)


def test_zero_rates_propose_exactly_the_ground_truth():
    proposals = simulate_sam_proposals(GT, seed=1, rates=ZERO)
    assert proposals.shape == (3, H, W) and proposals.dtype == bool
    assert all(exact_matches(proposals, m) == 1 for m in GT)


def test_split_cuts_every_material_into_pieces_whose_union_is_the_material():
    proposals = simulate_sam_proposals(GT, seed=2, rates=only(split=1.0))
    for material in GT:
        pieces = [p for p in proposals if (p & material).any()]
        assert 2 <= len(pieces) <= 3
        assert all(not (p & ~material).any() for p in pieces)
        np.testing.assert_array_equal(np.logical_or.reduce(pieces), material)
        assert np.sum(pieces, axis=0).max() == 1, "pieces overlap"
    assert sum(exact_matches(proposals, m) for m in GT) == 0


def test_nested_adds_tiny_and_large_children_alongside_the_parent():
    proposals = simulate_sam_proposals(GT, seed=3, rates=only(nested=1.0))
    for material in GT:
        assert exact_matches(proposals, material) == 1
        children = [p for p in proposals
                    if not (p & ~material).any() and not np.array_equal(p, material)]
        fractions = [c.sum() / material.sum() for c in children]
        assert any(f < 0.05 for f in fractions), fractions
        assert any(f >= 0.2 for f in fractions), fractions


def test_duplicate_adds_a_slightly_changed_copy_of_every_material():
    proposals = simulate_sam_proposals(GT, seed=4, rates=only(duplicate=1.0))
    assert len(proposals) == 2 * len(GT)
    for material in GT:
        assert exact_matches(proposals, material) == 1
        near = [p for p in proposals if not np.array_equal(p, material) and iou(p, material) > 0.9]
        assert len(near) == 1
        changed = (near[0] ^ material).sum() / material.sum()
        assert 0 < changed <= 0.06


@pytest.mark.parametrize("in_unlabelled", [0.0, 1.0])
def test_islands_add_small_blobs_and_can_be_kept_to_unlabelled_area(in_unlabelled):
    rates = only(islands=1.0, island_in_unlabelled=in_unlabelled)
    proposals = simulate_sam_proposals(GT, seed=5, rates=rates)
    islands = [p for p in proposals if not any(np.array_equal(p, m) for m in GT)]
    assert len(islands) == rates.max_islands
    assert all(0 < i.sum() <= rates.island_area[1] * H * W + 1 for i in islands)
    if in_unlabelled:
        unlabelled = ~GT.any(axis=0)
        assert all(not (i & ~unlabelled).any() for i in islands)


def test_missed_narrow_drops_only_the_thin_layer():
    proposals = simulate_sam_proposals(GT, seed=6, rates=only(missed_narrow=1.0))
    assert len(proposals) == 2
    assert exact_matches(proposals, GT[0]) == 1 and exact_matches(proposals, GT[2]) == 1
    assert all(iou(p, GT[NARROW]) < 0.5 for p in proposals)


def test_ragged_changes_only_boundary_pixels():
    proposals = simulate_sam_proposals(GT, seed=7, rates=only(ragged=1.0))
    assert len(proposals) == 3
    for material in GT:
        match = max(proposals, key=lambda p: iou(p, material))
        band = ndimage.binary_dilation(material) & ~ndimage.binary_erosion(material)
        diff = match ^ material
        assert diff.any() and not (diff & ~band).any()
        assert iou(match, material) > 0.8


def test_simulation_is_deterministic_per_seed():
    a = simulate_sam_proposals(GT, seed=11)
    np.testing.assert_array_equal(a, simulate_sam_proposals(GT, seed=11))
    b = simulate_sam_proposals(GT, seed=12)
    assert a.shape != b.shape or not np.array_equal(a, b)


def test_a_scene_is_split_at_its_antiphase_boundary():
    scene = next(s for s in (generate_scene(seed, 1, H) for seed in range(20))
                 if any(d["kind"] == "antiphase_boundary" for d in s.defects))
    apb = next(d for d in scene.defects if d["kind"] == "antiphase_boundary")
    k = scene.names.index(apb["material"])
    proposals = simulate_sam_proposals(scene, seed=0, rates=only(split=1.0, max_pieces=2))
    pieces = [p for p in proposals if (p & scene.materials[k]).any()]
    assert len(pieces) == 2
    row = round(apb["y"])
    left = min(pieces, key=lambda p: np.nonzero(p[row])[0].mean())
    assert abs(np.nonzero(left[row])[0].max() - apb["x"]) <= 1.0
