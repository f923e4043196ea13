"""Physical scale: pixel sizes in nm, the lattice period from the power spectrum, and the booster's
lengths they give per image (samiam/scale.py), also through samiam.segment from a calibrated file."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from scipy import ndimage

import samiam
from samiam.booster.crops import sample_crops
from samiam.booster.embedders import make_embedder
from samiam.booster.merging import crop_side, merge_masks
from samiam.booster.removal import island_area_pixels, ring_width
from samiam.calibration import imagej_unit
from samiam.errors import SettingsError
from samiam.io import load_micrograph
from samiam.scale import (
    MIN_CROP_PX,
    ImageScale,
    crop_px,
    image_scale,
    lattice_period,
    pixel_nm,
    settings_for_image,
)
from samiam.settings import MergingSettings, Settings
from samiam.synth import generate_scene
from samiam.synth.lattices import Column, LatticeSpec, Placement, perovskite, render_columns

SIDE = 256


def square_lattice(period_px: float, angle_deg: float = 0.0, side: int = SIDE) -> np.ndarray:
    """(side, side) float32: one atom column per cell of ``period_px``, rotated by ``angle_deg``."""
    spec = LatticeSpec("square", (1.0, 1.0), (Column(0.0, 0.0, 1.0),))
    y, x = np.mgrid[:side, :side].astype(np.float32)
    place = Placement(1.0 / period_px, period_px / 6, np.deg2rad(angle_deg), (3.3, 1.7))
    return render_columns(spec, place, x, y)


def amorphous(rng: np.random.Generator, side: int = SIDE, grain_px: float = 1.5) -> np.ndarray:
    """(side, side) float32 aperiodic speckle of unit variance, as samiam.synth draws Pt/C."""
    speckle = ndimage.gaussian_filter(rng.normal(size=(side, side)), grain_px)
    return (speckle / speckle.std()).astype(np.float32)


@pytest.mark.parametrize(("size", "unit", "nm"), [
    (0.25, "nm", 0.25), (2.5, "Å", 0.25), (250.0, "pm", 0.25), (0.002, "µm", 2.0)])
def test_pixel_sizes_in_length_units_become_nm(size, unit, nm):
    assert pixel_nm(size, unit) == pytest.approx(nm)


@pytest.mark.parametrize(("size", "unit"), [
    (None, "nm"), (0.25, None), (0.25, "1/nm"), (0.25, "px"), (float("nan"), "nm"), (-1.0, "nm"), (0.0, "nm")])
def test_no_pixel_size_without_a_positive_length(size, unit):
    assert pixel_nm(size, unit) is None


@pytest.mark.parametrize("period", [4.0, 7.3, 12.0, 20.5])
@pytest.mark.parametrize("angle", [0.0, 17.0, 45.0])
def test_lattice_period_of_a_square_lattice(period, angle):
    assert lattice_period(square_lattice(period, angle)) == pytest.approx(period, rel=0.04)


def test_lattice_period_of_a_non_square_image_and_of_a_perovskite():
    y, x = np.mgrid[:200, :300].astype(np.float32)
    place = Placement(angstrom_per_px=0.5, column_sigma_px=0.9, angle=np.deg2rad(8))
    image = render_columns(perovskite(3.9, 1.0, 0.55, 0.06), place, x, y)
    # A and B columns together: the strongest fringes are the {110}, a / sqrt(2) apart.
    assert lattice_period(image) == pytest.approx(3.9 / 0.5 / np.sqrt(2), rel=0.04)


@pytest.mark.parametrize("noise", [0.5, 1.0, 2.0])
def test_lattice_period_under_noise(noise):
    rng = np.random.default_rng(1)
    image = square_lattice(9.0, 23.0)
    noisy = image / image.std() + noise * rng.normal(size=image.shape)
    assert lattice_period(noisy) == pytest.approx(9.0, rel=0.04)


def test_lattice_period_with_half_the_image_amorphous():
    rng = np.random.default_rng(2)
    image = square_lattice(6.0, 5.0)
    image = image / image.std()
    image[: SIDE // 2] = amorphous(rng)[: SIDE // 2]
    assert lattice_period(image + 0.5 * rng.normal(size=image.shape)) == pytest.approx(6.0, rel=0.04)


@pytest.mark.parametrize("kind", ["white noise", "speckle", "noisy speckle", "gradient", "constant"])
def test_no_lattice_period_without_a_lattice(kind):
    rng = np.random.default_rng(3)
    y, x = np.mgrid[:SIDE, :SIDE].astype(np.float64)
    image = {"white noise": rng.normal(size=(SIDE, SIDE)), "speckle": amorphous(rng, grain_px=3.0),
             "noisy speckle": amorphous(rng) + rng.normal(size=(SIDE, SIDE)),
             "gradient": y + 0.3 * x, "constant": np.ones((SIDE, SIDE))}[kind]
    assert lattice_period(image) is None


def test_no_lattice_period_in_an_image_too_small_to_hold_one():
    assert lattice_period(square_lattice(4.0, side=16)) is None


def test_lattice_period_doubles_in_a_scene_at_twice_the_magnification():
    near, far = generate_scene(2, 3, size=SIDE * 2, zoom=2), generate_scene(2, 3, size=SIDE * 2)
    assert near.pixel_nm == pytest.approx(far.pixel_nm / 2)
    assert lattice_period(near.image) == pytest.approx(2 * lattice_period(far.image), rel=0.05)
    # The scenes' perovskites show their {110} fringes: image.period_nm's 0.28 nm.
    assert lattice_period(far.image) * far.pixel_nm == pytest.approx(0.28, rel=0.05)


def test_a_zoomed_scene_shows_the_centre_of_the_same_scene():
    far, near = generate_scene(4, 2, size=SIDE), generate_scene(4, 2, size=SIDE, zoom=2)
    quarter = SIDE // 4
    centre = far.materials[:, quarter:SIDE - quarter, quarter:SIDE - quarter]
    magnified = centre.repeat(2, axis=1).repeat(2, axis=2)
    shown = [far.names.index(name) for name in near.names]
    assert np.mean(magnified[shown] == near.materials) > 0.97
    with pytest.raises(SettingsError, match="zoom"):
        generate_scene(4, 2, size=SIDE, zoom=0.5)


def test_a_finer_sampled_scene_shows_the_same_field_at_twice_the_pixels():
    coarse, fine = generate_scene(5, 1, size=SIDE), generate_scene(5, 1, size=SIDE, sampling=2)
    assert fine.image.shape == (2 * SIDE, 2 * SIDE) and fine.names == coarse.names
    assert fine.pixel_nm == pytest.approx(coarse.pixel_nm / 2)
    assert np.mean(coarse.materials.repeat(2, axis=1).repeat(2, axis=2) == fine.materials) > 0.97
    assert lattice_period(fine.image) == pytest.approx(2 * lattice_period(coarse.image), rel=0.05)
    with pytest.raises(SettingsError, match="sampling"):
        generate_scene(5, 1, size=SIDE, sampling=1.5)


@pytest.mark.parametrize("seed", range(4))
def test_a_stack_within_the_centre_keeps_every_material_in_the_zoomed_view(seed):
    far = generate_scene(seed, 2, size=SIDE, layers_within=0.5)
    near = generate_scene(seed, 2, size=SIDE, layers_within=0.5, zoom=2)
    quarter = SIDE // 4
    above, below = far.materials[:, :quarter].any(axis=(1, 2)), far.materials[:, -quarter:].any(axis=(1, 2))
    assert not above[1:].any() and not below[:-1].any()  # only the top and bottom regions reach out
    assert near.names == far.names
    with pytest.raises(SettingsError, match="layers_within"):
        generate_scene(seed, 2, size=SIDE, layers_within=0.1)


def test_image_scale_prefers_the_file_then_the_lattice():
    image = square_lattice(8.0)
    assert image_scale(image, 0.05, "nm", 0.28) == ImageScale(0.05, "file")
    estimated = image_scale(image, None, None, 0.28)
    assert estimated.source == "lattice" and estimated.nm_per_px == pytest.approx(0.28 / 8.0, rel=0.04)
    assert image_scale(np.random.default_rng(0).normal(size=(SIDE, SIDE)), None, None, 0.28) is None


def test_crop_side_keeps_its_share_of_the_field_within_the_nm_bounds():
    merging = Settings().replace({"merging.crop_size": 60, "merging.crop_min_nm": 0.75,
                                  "merging.crop_nm": 2.0}).merging
    assert crop_px(merging, ImageScale(0.05, "file"), 512, 512) == 30  # 1.5 nm: the reference's 30 px
    assert crop_px(merging, ImageScale(0.05, "file"), 1024, 1024) == 40  # 3 nm held to 2 nm
    assert crop_px(merging, ImageScale(0.0125, "file"), 512, 512) == 60  # 0.375 nm raised to 0.75 nm
    assert crop_px(merging, ImageScale(1.0, "file"), 512, 512) == MIN_CROP_PX  # a low-magnification file
    assert crop_px(merging, ImageScale(1e-4, "file"), 512, 300) == 75  # a quarter of the shorter side


def test_a_material_keeps_its_crops_at_twice_the_magnification():
    """A layer seen at 1x and the centre of the field at 2x (twice as thick, half as wide on the
    specimen): crops of a fixed 2 nm gave the zoomed view 55 grid crops against 120, the field's
    share keeps as many."""
    settings = Settings().replace({"image.scale": "physical"})
    layer = np.zeros((1, 512, 512), bool)
    layer[0, 192:320] = True  # 128 px thick at 1x: 6.4 nm at 0.05 nm/px
    zoomed = np.zeros((1, 512, 512), bool)
    zoomed[0, 128:384] = True  # its centre at 2x: 256 px at 0.025 nm/px
    counts = []
    for masks, nm_per_px in ((layer, 0.05), (zoomed, 0.025)):
        per_image, _ = settings_for_image(settings, np.zeros((512, 512), np.float32), nm_per_px, "nm")
        side = crop_side(per_image.merging, 512, 512)
        counts.append(sample_crops(masks, side, 10 ** 6, 0.9, np.random.default_rng(0)).counts(1)[0])
    assert counts[1] >= counts[0] > 0


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("period", [4.3, 8.6])
def test_materials_three_per_cent_apart_stay_two_at_twice_the_magnification(period, seed):
    # one lattice, the lower half 3 % brighter, seen through 15 px crops (256 px image) at 1x and
    # 2x magnification: 3.5 and 1.75 fringes per crop. With plain crop statistics the lattice's
    # phase in each crop hid the step at 2x (the K estimator found one material) and steered
    # KMeans at 1x (K right, one quarter of the wrong material).
    side, rng = 256, np.random.default_rng(seed)
    y, x = np.mgrid[:side, :side].astype(float)
    u, v = x * np.cos(0.05) + y * np.sin(0.05), y * np.cos(0.05) - x * np.sin(0.05)
    lattice = 1 + 0.4 * (np.cos(2 * np.pi * u / period) + np.cos(2 * np.pi * v / period))
    image = np.where(y < side // 2, 1.0, 1.03) * lattice + rng.normal(0, 0.03, (side, side))
    quarters = np.zeros((4, side, side), bool)
    for k, (rows, cols) in enumerate([(slice(0, side // 2), slice(0, side // 2)), (slice(0, side // 2), slice(side // 2, None)),
                                      (slice(side // 2, None), slice(0, side // 2)), (slice(side // 2, None), slice(side // 2, None))]):
        quarters[k, rows, cols] = True
    settings = MergingSettings(k_estimator="separation")
    result = merge_masks((image / image.max()).astype(np.float32), quarters, np.ones(4), settings,
                         make_embedder(settings))
    assert result.n_materials_estimated == 2
    assert result.assignment[0] == result.assignment[1] != result.assignment[2] == result.assignment[3]


@pytest.mark.parametrize(("height", "width"), [(512, 512), (300, 700), (2048, 2048)])
def test_settings_for_an_image_of_known_scale_give_the_nm_lengths_in_px(height, width):
    grey = np.zeros((height, width), np.float32)
    settings = Settings().replace({"image.scale": "physical", "merging.crop_min_nm": 2.0, "merging.crop_nm": 2.0,
                                   "removal.island_nm": 1.5, "removal.island_ring_nm": 0.3})

    per_image, scale = settings_for_image(settings, grey, 0.5, "Å")

    assert scale == ImageScale(0.05, "file")
    assert crop_side(per_image.merging, height, width) == pytest.approx(40, abs=1)
    assert island_area_pixels(per_image.removal, height, width) == pytest.approx(30 ** 2)
    assert ring_width(per_image.removal, height, width) == 6


def test_settings_stay_when_the_scale_is_unknown_or_the_rule_is_reference():
    rng = np.random.default_rng(4)
    physical = Settings().replace({"image.scale": "physical"})
    assert settings_for_image(physical, rng.normal(size=(SIDE, SIDE)), None, None) == (physical, None)
    reference = Settings().replace({"image.scale": "reference"})
    assert settings_for_image(reference, square_lattice(8.0), 0.05, "nm") == (reference, None)


@pytest.mark.parametrize(("name", "value"), [
    ("image.scale", "metric"), ("image.period_nm", 0.0), ("merging.crop_nm", 0.5),
    ("merging.crop_min_nm", 0.0),
    ("removal.island_ring_nm", 0.0)])
def test_scale_settings_out_of_range_are_named(name, value):
    with pytest.raises(SettingsError, match=name.replace(".", r"\.")):
        settings_for_image(Settings().replace({name: value}), square_lattice(8.0), 0.05, "nm")


def write_calibrated_tiff(path, image: np.ndarray, pixel_size: float, unit: str) -> None:
    """``image: (H, W) float in [0, 1]`` as a 16-bit ImageJ TIFF stating its pixel size."""
    per_unit = 1 / pixel_size
    tifffile.imwrite(path, np.round(image * 65535).astype(np.uint16), imagej=True,
                     resolution=(per_unit, per_unit), metadata={"unit": imagej_unit(unit)})


def test_pixel_size_from_a_file_sizes_the_crops_of_samiam_segment(tmp_path):
    scene = generate_scene(1, 1, size=SIDE)
    settings = Settings().replace({"proposals.proposer": "classical", "image.scale": "physical",
                                   "merging.crop_min_nm": 2.0, "merging.crop_nm": 2.0})
    crops = {}
    for pixel_size in (0.5, 0.8):
        path = tmp_path / f"scene_{pixel_size}.tif"
        write_calibrated_tiff(path, scene.image, pixel_size, "Å")
        micrograph = load_micrograph(path)

        segmentation = samiam.segment(micrograph, settings)

        assert segmentation.scale.source == "file"
        assert segmentation.scale.nm_per_px == pytest.approx(pixel_size / 10)
        crops[pixel_size] = crop_side(segmentation.settings.merging, SIDE, SIDE)
    assert crops == {0.5: 40, 0.8: 25}
    reference = samiam.segment(load_micrograph(tmp_path / "scene_0.5.tif"),
                               settings.replace({"image.scale": "reference"}))
    assert reference.scale is None and crop_side(reference.settings.merging, SIDE, SIDE) == 15
