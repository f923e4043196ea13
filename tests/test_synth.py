"""Synthetic benchmark generator: determinism, ground-truth invariants, difficulty classes, layout."""

from __future__ import annotations

import argparse
import json
from functools import cache
from itertools import pairwise

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from samiam.errors import ImageNotFoundError, SettingsError
from samiam.synth import generate_scene
from samiam.synth.dataset import read_ground_truth, read_manifest, read_proposals, scene_name
from samiam.synth.lattices import Column, LatticeSpec, Placement, render_columns
from samiam.synth.scenes import CATALOGUE

SIZE = 256
SEEDS = range(8)


@cache
def scene(seed: int, difficulty: int):
    return generate_scene(seed, difficulty, SIZE)


def all_scenes():
    return [scene(s, d) for d in (1, 2, 3) for s in SEEDS]


def test_same_seed_gives_the_same_scene_and_different_seeds_differ():
    a, b = generate_scene(5, 2, SIZE), generate_scene(5, 2, SIZE)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.materials, b.materials)
    assert a.names == b.names and a.defects == b.defects
    assert not np.array_equal(a.image, generate_scene(6, 2, SIZE).image)
    assert not np.array_equal(a.image, generate_scene(5, 3, SIZE).image)


def test_image_and_masks_have_the_promised_types_and_masks_are_disjoint():
    for s in all_scenes():
        assert s.image.shape == (SIZE, SIZE) and s.image.dtype == np.float32
        assert 0.0 <= s.image.min() and s.image.max() <= 1.0 and s.image.std() > 0.02
        k = len(s.names)
        assert 2 <= k <= 4 and len(set(s.names)) == k
        assert s.materials.shape == (k, SIZE, SIZE) and s.materials.dtype == bool
        assert s.materials.sum(axis=0).max() == 1, "material masks overlap"
        assert s.materials.reshape(k, -1).any(axis=1).all(), "empty material mask"
        assert all(name in CATALOGUE for name in s.names)


def test_every_scene_has_unlabelled_pixels_and_gap_bands_separate_their_layers():
    gaps_seen = 0
    for s in all_scenes():
        assert (~s.materials.any(axis=0)).sum() > 0
        for defect in (d for d in s.defects if d["kind"] == "gap_band"):
            upper = s.materials[s.names.index(defect["above"])]
            lower = s.materials[s.names.index(defect["below"])]
            # the band separates the layers: no pixel of one touches the other, even diagonally
            assert not (ndimage.binary_dilation(upper, np.ones((3, 3), bool)) & lower).any()
            unlabelled = ~s.materials.any(axis=0)
            # nearly every column has unlabelled band pixels right below the upper layer
            assert (upper[:-1] & unlabelled[1:]).sum() >= 0.9 * SIZE
            gaps_seen += 1
    assert gaps_seen >= 10


def test_every_material_is_one_connected_mask_even_across_antiphase_and_grain_boundaries():
    defects_seen = {"antiphase_boundary": 0, "grain_boundary": 0}
    for s in all_scenes():
        for mask in s.materials:
            assert ndimage.label(mask)[1] == 1
        for d in s.defects:
            if d["kind"] in defects_seen:
                assert d["material"] in s.names
                defects_seen[d["kind"]] += 1
    assert min(defects_seen.values()) >= 3, defects_seen


def neighbour_contrasts(s) -> list[float]:
    """Ratio (>= 1) of mean image intensity of vertically adjacent materials, away from edges."""
    order = np.argsort([np.nonzero(m.any(axis=1))[0].mean() for m in s.materials])
    means = [s.image[ndimage.binary_erosion(s.materials[i], iterations=3)].mean() for i in order]
    return [max(a, b) / min(a, b) for a, b in pairwise(means)]


def test_difficulty_sets_the_contrast_between_neighbouring_materials():
    for seed in SEEDS:
        assert min(neighbour_contrasts(scene(seed, 1))) > 1.25
        assert max(neighbour_contrasts(scene(seed, 2))) < 1.10
        assert max(neighbour_contrasts(scene(seed, 3))) < 1.10


def test_difficulty_sets_how_alike_the_lattices_are():
    for seed in SEEDS:
        for difficulty, alike in ((1, False), (2, False), (3, True)):
            families = [CATALOGUE[n].family for n in scene(seed, difficulty).names]
            assert (len(set(families)) == 1) == alike, (difficulty, families)


def test_render_columns_peaks_on_lattice_sites_and_an_antiphase_shift_moves_them():
    spec = LatticeSpec("square", (4.0, 4.0), (Column(0.0, 0.0, 1.0),))
    place = Placement(angstrom_per_px=0.25, column_sigma_px=1.5, origin=(3.0, 5.0))  # period 16 px
    sites_x = np.array([3.0, 19.0, 35.0, 3.0])
    sites_y = np.array([5.0, 5.0, 21.0, 37.0])
    np.testing.assert_allclose(render_columns(spec, place, sites_x, sites_y), 1.0, atol=1e-4)
    centres = render_columns(spec, place, sites_x + 8, sites_y + 8)
    assert centres.max() < 1e-6
    # one pixel off a site: exp(-1 / (2 * 1.5^2))
    np.testing.assert_allclose(render_columns(spec, place, np.array([4.0]), np.array([5.0])),
                               np.exp(-1 / 4.5), rtol=1e-5)
    shifted = Placement(0.25, 1.5, origin=(3.0, 5.0), shift=(0.5, 0.5))
    np.testing.assert_allclose(render_columns(spec, shifted, sites_x + 8, sites_y + 8), 1.0, atol=1e-4)


def test_bad_difficulty_is_a_named_error():
    with pytest.raises(SettingsError, match="difficulty"):
        generate_scene(0, 4, SIZE)


def run_synth(*argv: str) -> int:
    from samiam.commands import synth

    parser = argparse.ArgumentParser()
    synth.register(parser.add_subparsers())
    args = parser.parse_args(["synth", *argv])
    return args.func(args)


def test_command_writes_the_layout_and_it_reads_back_equal(tmp_path):
    assert run_synth("--out", str(tmp_path), "--n", "2", "--seed", "3", "--size", "128",
                     "--difficulty", "1,3", "--proposals") == 0
    manifest = read_manifest(tmp_path)
    assert manifest == json.loads((tmp_path / "manifest.json").read_text())
    assert [e["name"] for e in manifest] == ["d1_s0003", "d1_s0004", "d3_s0003", "d3_s0004"]
    for entry in manifest:
        expected = generate_scene(entry["seed"], entry["difficulty"], 128)
        assert entry["name"] == scene_name(entry["difficulty"], entry["seed"])
        assert entry["size"] == 128 and entry["materials"] == expected.names
        assert entry["defects"] == expected.defects
        image = np.asarray(Image.open(tmp_path / "images" / f"{entry['name']}.png"))
        assert image.dtype == np.uint8
        np.testing.assert_array_equal(image, np.round(expected.image * 255).astype(np.uint8))
        materials, names = read_ground_truth(tmp_path, entry["name"])
        assert names == expected.names
        np.testing.assert_array_equal(materials, expected.materials)
        assert len(list((tmp_path / "gt" / entry["name"]).glob("*.png"))) == len(names)
        proposals = read_proposals(tmp_path, entry["name"])
        assert proposals.dtype == bool and proposals.shape[1:] == (128, 128)


def test_command_rejects_bad_difficulty_and_reader_names_missing_files(tmp_path):
    with pytest.raises(SettingsError, match="difficulty"):
        run_synth("--out", str(tmp_path), "--difficulty", "1,5")
    with pytest.raises(ImageNotFoundError, match="manifest"):
        read_manifest(tmp_path)
