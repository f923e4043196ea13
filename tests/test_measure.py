"""samiam.measure on synthetic scenes whose sizes are known, built with plain numpy."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import samiam
from samiam.io import Micrograph
from samiam.measure import measure_layer, measure_materials, particle_instances
from samiam.settings import MeasureSettings

SIDE = 256
YY, XX = np.mgrid[:SIDE, :SIDE].astype(float)


def discs(centres_and_radii: list[tuple[float, float, float]]) -> np.ndarray:
    """(SIDE, SIDE) bool: the union of discs ``(y, x, radius)``."""
    mask = np.zeros((SIDE, SIDE), bool)
    for y, x, radius in centres_and_radii:
        mask |= (YY - y) ** 2 + (XX - x) ** 2 <= radius ** 2
    return mask


def band(thickness: float, angle_deg: float = 0.0, offset=lambda along: 0.0) -> np.ndarray:
    """(SIDE, SIDE) bool: a band through the image centre along ``angle_deg`` (from x towards y),
    ``thickness`` wide along its normal, its centre line shifted along the normal by ``offset(along)``."""
    angle, centre = math.radians(angle_deg), (SIDE - 1) / 2
    along = (XX - centre) * math.cos(angle) + (YY - centre) * math.sin(angle)
    across = -(XX - centre) * math.sin(angle) + (YY - centre) * math.cos(angle) - offset(along)
    return (-thickness / 2 <= across) & (across < thickness / 2)


RADII = [6, 8, 10, 12, 14, 7, 9, 11, 13]
GRID = [(y, x) for y in (40, 128, 216) for x in (40, 128, 216)]


def test_discs_of_known_radii_are_counted_and_sized_within_a_pixel():
    particles = discs([(y, x, r) for (y, x), r in zip(GRID, RADII)])

    measured = measure_materials(np.stack([particles, ~particles])).materials

    assert [m.kind for m in measured] == ["particles", "region"]
    assert measured[0].particles.count == len(RADII) and measured[0].particles.edge_cut == 0
    assert np.allclose(measured[0].particles.diameters.values, sorted(2 * r for r in RADII), atol=1.0)
    assert measured[0].particles.diameters.median == pytest.approx(20, abs=1.0)
    assert measured[0].area_fraction + measured[1].area_fraction == pytest.approx(1.0)
    assert measured[0].area_fraction == pytest.approx(sum(math.pi * r * r for r in RADII) / SIDE ** 2, rel=0.02)


def test_particles_cut_by_the_image_edge_are_counted_apart_and_not_measured():
    inside = [(y, x, 8) for y, x in GRID]
    cut = [(0, 90, 10), (170, SIDE - 3, 10), (SIDE, SIDE, 20)]  # on the top and right sides, a corner

    particles = measure_materials(discs(inside + cut)[None]).materials[0].particles

    assert (particles.count, particles.edge_cut) == (len(inside), len(cut))
    assert np.allclose(particles.diameters.values, 16, atol=1.0)


def test_lengths_are_in_nm_through_the_pixel_size_in_any_unit():
    mask = discs([(y, x, 10) for y, x in GRID])
    in_px = measure_materials(mask[None]).materials[0].particles.diameters.median

    for size, unit in [(0.5, "nm"), (5, "Å"), (0.0005, "µm"), (0.0005, "um")]:
        measurements = measure_materials(mask[None], pixel_size=size, pixel_unit=unit)
        assert (measurements.unit, measurements.nm_per_px) == ("nm", pytest.approx(0.5))
        assert measurements.materials[0].particles.diameters.median == pytest.approx(in_px * 0.5)
    assert measure_materials(mask[None], pixel_size=3.0, pixel_unit=None).unit == "px"


def test_a_horizontal_band_has_its_thickness_and_no_roughness():
    measured = measure_materials(np.stack([band(30), ~band(30)])).materials

    assert [m.kind for m in measured] == ["layer", "region"]  # the rest touches the border all along
    layer = measured[0].layer
    assert layer.thickness == pytest.approx(30, abs=0.01) and layer.thickness_std == pytest.approx(0)
    assert layer.roughness == pytest.approx(0, abs=1e-6) and layer.orientation_deg == pytest.approx(0)
    assert layer.interfaces == ("top", "bottom") and layer.length >= SIDE - 4


def test_a_wavy_band_has_its_thickness_and_the_rms_of_its_waves():
    amplitude, period = 8.0, SIDE / 4  # whole waves, even about the centre: the mean line is level
    layer = measure_layer(band(30, offset=lambda along: amplitude * np.cos(2 * np.pi * along / period)))

    assert layer.thickness == pytest.approx(30, abs=0.1)
    assert layer.interface_roughness == pytest.approx((amplitude / math.sqrt(2),) * 2, abs=0.2)
    assert layer.orientation_deg == pytest.approx(0, abs=0.5)


def test_a_band_with_one_wavy_interface_is_rough_on_that_side_only():
    amplitude = 6.0
    wavy_top = (YY >= 100 + amplitude * np.cos(2 * np.pi * (XX - (SIDE - 1) / 2) / 32)) & (YY < 140)

    layer = measure_layer(wavy_top)

    assert layer.interface_roughness[0] == pytest.approx(amplitude / math.sqrt(2), abs=0.3)
    assert layer.interface_roughness[1] == pytest.approx(0, abs=1e-6)
    assert layer.thickness == pytest.approx(39.5, abs=0.2)  # pixels from the ceiling of the wave


@pytest.mark.parametrize("angle", [25.0, -35.0, 70.0, 90.0])
def test_a_tilted_band_is_measured_along_its_normal_not_the_vertical(angle):
    layer = measure_layer(band(24, angle))

    assert layer.orientation_deg == pytest.approx(angle, abs=0.3)
    assert layer.thickness == pytest.approx(24, abs=0.3)  # the vertical extent is 24 / cos(angle)
    assert layer.roughness < 0.5  # the pixel grid's own steps
    assert layer.interfaces == (("top", "bottom") if abs(angle) <= 45 else ("left", "right"))


def test_a_band_cut_by_the_border_all_along_is_a_region_not_a_layer():
    substrate = YY >= SIDE - 40
    assert measure_materials(substrate[None]).materials[0].kind == "region"


def test_a_material_that_is_neither_is_a_region_with_its_area_fraction():
    blob = discs([(128, 128, 60)])  # one component: no particles, and it reaches no side
    empty = np.zeros((SIDE, SIDE), bool)

    measured = measure_materials(np.stack([blob, empty])).materials

    assert [m.kind for m in measured] == ["region", "region"]
    assert measured[1].area_fraction == 0.0 and measured[0].particles is None


def test_elongated_components_are_no_particles():
    bars = np.zeros((SIDE, SIDE), bool)
    for y, x in GRID:  # plus signs: solidity about 0.5
        bars[y - 20:y + 20, x - 4:x + 4] = bars[y - 4:y + 4, x - 20:x + 20] = True
    assert measure_materials(bars[None]).materials[0].kind == "region"
    assert measure_materials(bars[None], settings=MeasureSettings(min_solidity=0.3)).materials[0].kind == "particles"


def test_measurements_are_json_serialisable_and_named():
    mask = discs([(y, x, 10) for y, x in GRID])
    measurements = measure_materials(np.stack([mask, band(20) & ~mask]), 2.0, "nm", names=("Pt", None))

    document = json.loads(json.dumps(measurements.to_dict(), allow_nan=False))

    assert [m["name"] for m in document["materials"]] == ["Pt", None]
    assert document["materials"][0]["particles"]["diameters"]["median"] == pytest.approx(40, abs=2)
    assert document["unit"] == "nm"


def test_a_segmentation_measures_its_materials_in_the_files_unit():
    particles = discs([(y, x, 10) for y, x in GRID])
    rng = np.random.default_rng(0)
    grey = np.where(particles, 0.8, 0.2).astype(np.float32) + rng.normal(0, 0.02, particles.shape).astype(np.float32)
    rgb = np.repeat(np.rint(np.clip(grey, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)
    micrograph = Micrograph(name="scene", raw=grey, grey=grey, rgb=rgb, bit_depth=32, pixel_size=5.0,
                            pixel_unit="Å")

    segmentation = samiam.boost(micrograph, np.stack([particles, ~particles]),
                                samiam.Settings().replace({"merging.materials": 2}))
    measurements = segmentation.measure()

    assert measurements.unit == "nm"
    particle_material = next(m for m in measurements.materials if m.kind == "particles")
    assert particle_material.particles.count == len(GRID)
    assert particle_material.particles.diameters.median == pytest.approx(10, abs=0.5)  # 20 px of 0.5 nm


def test_particle_instances_keep_touching_particles_apart_and_clip_them_to_their_material():
    touching = [discs([(128, 100, 10)]), discs([(128, 118, 10)])]  # they overlap in a lens
    others = [discs([(y, x, 8)]) for y, x in GRID if (y, x) != (128, 128)]
    particles = np.logical_or.reduce(touching + others)
    support = band(60) & ~particles
    speck = discs([(20, 128, 1)])  # 5 px: less than min_particle_px
    removed = discs([(230, 128, 6)])
    proposals = np.stack(touching + others + [speck, support, removed])
    assignment = np.array([0] * (len(touching) + len(others)) + [0, 1, -1])
    materials = np.stack([particles | speck, support])

    instances = particle_instances(materials, proposals, assignment)

    assert instances.dtype == np.int32 and instances.shape == (SIDE, SIDE)
    labels = np.unique(instances[instances > 0])
    assert np.array_equal(labels, np.arange(1, len(touching) + len(others) + 1))
    assert not instances[support | speck | removed & ~particles].any()
    left, right = (np.unique(instances[(YY - 128) ** 2 + (XX - x) ** 2 <= 25]) for x in (96, 122))
    assert len(left) == len(right) == 1 and left[0] != right[0]  # one instance each, not merged
    assert np.array_equal(np.isin(instances, [left[0], right[0]]), touching[0] | touching[1])
    assert sorted(np.bincount(instances.ravel())[1:])[:len(others)] == [others[0].sum()] * len(others)


def test_particle_instances_split_a_proposal_in_pieces_and_skip_materials_that_are_no_particles():
    particles = discs([(y, x, 8) for y, x in GRID])
    layer = band(30) & ~particles
    proposals = np.stack([particles, layer])  # one proposal holding every particle

    instances = particle_instances(np.stack([particles, layer]), proposals, np.array([0, 1]))

    assert instances.max() == len(GRID)
    assert np.array_equal(instances > 0, particles)
    assert not particle_instances(layer[None], layer[None], np.array([0])).any()


def test_particle_instances_refuse_proposals_of_another_image():
    with pytest.raises(ValueError, match="one image"):
        particle_instances(np.zeros((1, 8, 8), bool), np.zeros((2, 8, 9), bool), np.array([0, 0]))


def test_a_segmentation_gives_one_instance_per_proposed_particle():
    centres = GRID[:4]
    particle_masks = [discs([(y, x, 10)]) for y, x in centres]
    particles = np.logical_or.reduce(particle_masks)
    rng = np.random.default_rng(0)
    grey = np.where(particles, 0.8, 0.2).astype(np.float32) + rng.normal(0, 0.02, particles.shape).astype(np.float32)
    grey = np.clip(grey, 0, 1)
    rgb = np.repeat(np.rint(grey * 255).astype(np.uint8)[..., None], 3, axis=2)
    micrograph = Micrograph(name="scene", raw=grey, grey=grey, rgb=rgb, bit_depth=32)
    segmentation = samiam.boost(micrograph, np.stack(particle_masks + [~particles]),
                                samiam.Settings().replace({"merging.materials": 2}))

    instances = segmentation.particle_instances(MeasureSettings(min_particles=4))

    assert instances.max() == len(centres)
    assert np.array_equal(instances > 0, particles)
