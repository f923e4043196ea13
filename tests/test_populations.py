"""A population of particles is a material (issue #16, section 2): removal keeps small masks that
stand out alike from their surroundings, merging makes them one material; noise islands still go."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from shared_data import shared_dir

from samiam.booster.removal import remove_masks
from samiam.errors import MaskSetError, SettingsError
from samiam.io import Micrograph
from samiam.metrics import pair_stats, score_image
from samiam.pipeline import Engine
from samiam.settings import MergingSettings, RemovalSettings, Settings

SIDE = 256
SUPPORT_COLUMNS = 170  # the support fills the left columns, vacuum the rest


def disc(centre: tuple[int, int], radius: float) -> np.ndarray:
    yy, xx = np.mgrid[:SIDE, :SIDE]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius ** 2


def particle_scene(n_particles: int = 36, contrast: float = 0.35, seed: int = 0):
    """A support texture (left), vacuum (right) and ``n_particles`` discs of one intensity on the
    support, ``contrast`` above its mean, with one proposal per particle, the support (particles
    included), the vacuum and five noise islands: three patches of support texture and one of
    vacuum (like their surroundings), one dark blob (the only one of its kind).
    Returns (grey (H, W) float32, proposals (N, H, W) bool, truth (3, H, W) bool: particles,
    support, vacuum, number of particle proposals)."""
    rng = np.random.default_rng(seed)
    support = np.zeros((SIDE, SIDE), bool)
    support[:, :SUPPORT_COLUMNS] = True
    texture = ndimage.gaussian_filter(rng.normal(size=(SIDE, SIDE)), 3)
    grey = np.where(support, 0.4 + 0.05 * texture / texture.std(), 0.1)
    centres = [(y, x) for y in range(20, SIDE - 10, 38) for x in range(16, SUPPORT_COLUMNS - 10, 26)]
    chosen = rng.permutation(len(centres))[:n_particles]
    particles = np.array([disc(centres[i], rng.uniform(3.5, 6.0)) for i in chosen])
    union = particles.any(axis=0)
    grey = np.where(union, 0.4 + contrast, grey)
    islands = [disc((y, x), 5) & ~union for y, x in ((33, 30), (140, 95), (230, 150))]
    islands.append(disc((60, 215), 6))  # in the vacuum
    dark = disc((190, 40), 5) & ~union
    grey = np.where(dark, 0.2, grey)
    islands.append(dark)
    grey = (grey + rng.normal(scale=0.02, size=grey.shape)).astype(np.float32)
    proposals = np.concatenate([particles, [support, ~support], islands])
    truth = np.stack([union, support & ~union, ~support])
    return grey, proposals, truth, len(particles)


def micrograph(grey: np.ndarray) -> Micrograph:
    rgb = np.repeat((np.clip(grey, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)
    return Micrograph(name="particles", raw=grey, grey=grey, rgb=rgb, bit_depth=32)


def test_a_population_of_particles_is_kept_and_noise_islands_go():
    grey, proposals, _, n = particle_scene()
    result = remove_masks(proposals, grey)
    assert result.keep[:n].all() and result.keep[n:n + 2].all()
    assert set(result.population[:n].tolist()) == {0}
    assert result.reasons[n + 2:].tolist() == ["tiny_child"] * 5  # inside the support or the vacuum
    assert (result.population[n:] == -1).all()


def test_particles_on_an_unsegmented_support_are_a_population_of_islands():
    grey, proposals, _, n = particle_scene()
    without_support = np.delete(proposals, n, axis=0)
    assert remove_masks(without_support, grey, RemovalSettings(population_members=10 ** 6)).reasons[:n].tolist() \
        == ["island"] * n
    result = remove_masks(without_support, grey)
    assert result.keep[:n].all() and set(result.population[:n].tolist()) == {0}


def test_particles_like_their_surroundings_are_no_population():
    grey, proposals, _, n = particle_scene(contrast=0.0)
    result = remove_masks(proposals, grey)
    assert result.reasons[:n].tolist() == ["tiny_child"] * n
    assert (result.population == -1).all()


def test_too_few_alike_particles_are_noise_islands():
    grey, proposals, _, n = particle_scene(n_particles=9)
    assert remove_masks(proposals, grey).reasons[:n].tolist() == ["tiny_child"] * n
    lenient = remove_masks(proposals, grey, RemovalSettings(population_members=9))
    assert lenient.keep[:n].all()


def test_particles_unlike_the_others_are_left_out():
    grey, proposals, _, n = particle_scene()
    grey[proposals[0]] += 20.0  # a hot spot, far brighter than the other particles
    result = remove_masks(proposals, grey)
    assert result.reasons[0] == "tiny_child" and result.keep[1:n].all()


def test_merging_makes_the_population_one_material_and_takes_its_pixels_from_the_support():
    grey, proposals, truth, n = particle_scene()
    segmentation = Engine(Settings()).boost(micrograph(grey), proposals)
    materials = segmentation.materials
    assert materials.sum(axis=0).max() == 1  # disjoint
    assignment = segmentation.assignment
    assert len(set(assignment[:n].tolist())) == 1 and assignment[0] >= 0
    particle = materials[assignment[0]]
    assert pair_stats(particle[None], truth[:1]).iou[0, 0] > 0.99
    support = materials[assignment[n]]
    assert not (support & truth[0]).any()
    assert score_image(materials, truth).iou > score_image(proposals, truth).iou


def test_a_given_number_of_materials_counts_the_population():
    grey, proposals, _, n = particle_scene()
    settings = Settings().replace({"merging.materials": 3})
    segmentation = Engine(settings).boost(micrograph(grey), proposals)
    assert len(segmentation.materials) == 3
    assert len({segmentation.assignment[i] for i in (0, n, n + 1)}) == 3


def test_populations_must_fit_the_masks_and_settings_their_range():
    from samiam.booster import merge_masks
    from samiam.booster.embedders import make_embedder

    grey, proposals, _, _ = particle_scene()
    settings = MergingSettings()
    with pytest.raises(MaskSetError, match="one population number per mask"):
        merge_masks(grey, proposals, np.ones(len(proposals)), settings, make_embedder(settings),
                    np.zeros(3, np.int64))
    with pytest.raises(SettingsError, match="removal.population_spread must be at least 1"):
        remove_masks(proposals, grey, RemovalSettings(population_spread=0.5))


# --- real data: SAM-like proposals of a tuning-half image, one mask per drawn particle -------

@pytest.mark.parametrize("name", ["Cu1", "PtCo"])
def test_booster_keeps_real_particles(name):
    """Cu1: 274 particles of 4-19 px on a rough support (640 px); PtCo: 67 of 26-80 px."""
    from samiam.box_proposals import box_proposals
    from samiam.io import load_micrograph
    from samiam.particle_metrics import yolo_boxes

    folder = shared_dir() / "data" / "particles"
    micrograph = load_micrograph(folder / "images" / f"{name}.jpg")
    boxes = yolo_boxes((folder / "boxes" / f"{name}.txt").read_text(), *micrograph.shape)
    made = box_proposals(micrograph.grey, boxes)
    materials = Engine(Settings()).boost(micrograph, made.proposals).materials
    raw = score_image(made.proposals, made.truth).iou
    boosted = score_image(materials, made.truth).iou
    assert boosted >= raw
    assert pair_stats(materials, made.truth[:1]).iou.max() >= 0.7
