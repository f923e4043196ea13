"""Label prototypes learned from annotations, and naming the booster's materials with them."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from samiam.booster.embedders import make_embedder
from samiam.booster.naming import assign_names, classify_masks, mode_for, name_materials
from samiam.booster.prototypes import LabelPrototype, Prototypes, update
from samiam.errors import PrototypeError, SettingsError
from samiam.io import load_micrograph
from samiam.pipeline import Engine
from samiam.settings import Settings
from samiam.synth import simulate_sam_proposals
from samiam.synth.series import generate_series


class MeanEmbedder:
    """A one-feature texture embedder for constructed images: the crop's mean intensity."""

    name = "mean"
    blocks = (1,)
    identity = "mean"

    def embed(self, crops: np.ndarray) -> np.ndarray:
        return crops.reshape(len(crops), -1).mean(axis=1, keepdims=True).astype(np.float32)


def _striped(levels: tuple[float, ...], size: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A noisy image of horizontal bands of the given mean levels: grey (H, W), masks (L, H, W)."""
    rng = np.random.default_rng(seed)
    band = size // len(levels)
    masks = np.zeros((len(levels), size, size), bool)
    grey = np.zeros((size, size), np.float32)
    for i, level in enumerate(levels):
        masks[i, i * band:(i + 1) * band] = True
        grey[masks[i]] = level
    return grey + rng.normal(0, 0.02, grey.shape).astype(np.float32), masks


SMALL = Settings().replace({"naming.crops_per_label": 8})


def test_update_is_pure_bounded_and_round_trips_through_json():
    grey, masks = _striped((0.2, 0.8))
    empty = Prototypes.empty(MeanEmbedder())
    settings = SMALL.replace({"naming.exemplars_per_label": 5})
    once = update(empty, grey, masks, ["dark", "bright"], MeanEmbedder(), settings)
    twice = update(once, grey[::-1].copy(), masks[::-1].copy(), ["dark", "bright"], MeanEmbedder(), settings)

    assert empty.labels == () and once.names == ("dark", "bright")
    assert [len(label.exemplars) for label in once.labels] == [5, 5]  # 8 crops seen, 5 kept
    assert [(label.seen, label.images) for label in twice.labels] == [(16, 2), (16, 2)]
    assert len({empty.version, once.version, twice.version}) == 3
    # Exemplars are standardised over the image's tiles: two equal bands sit at -1 and +1.
    assert np.all(np.abs(once.labels[0].exemplars + 1) < 0.1) and np.all(np.abs(once.labels[1].exemplars - 1) < 0.1)

    restored = Prototypes.from_json(twice.to_json())
    assert restored.version == twice.version
    for a, b in zip(restored.labels, twice.labels):
        assert (a.name, a.seen, a.images) == (b.name, b.seen, b.images)
        assert np.array_equal(a.exemplars, b.exemplars)


def test_regions_of_one_label_merge_and_empty_regions_learn_nothing():
    grey, masks = _striped((0.2, 0.5, 0.8))
    learned = update(Prototypes.empty(MeanEmbedder()), grey, np.stack([masks[0], masks[2], masks[1] & False]),
                     ["a", "a", "b"], MeanEmbedder(), SMALL)
    assert learned.names == ("a",)
    assert learned.labels[0].images == 1
    values = learned.labels[0].exemplars.ravel()
    assert (values < -1).any() and (values > 1).any() and not (np.abs(values) < 0.5).any()


def test_update_refuses_another_embedder_and_mismatched_labels():
    grey, masks = _striped((0.2, 0.8))
    lbp = Prototypes.empty(make_embedder(Settings().merging))
    with pytest.raises(PrototypeError, match="embedder"):
        update(lbp, grey, masks, ["a", "b"], MeanEmbedder(), SMALL)
    with pytest.raises(PrototypeError, match="one non-empty label name per mask"):
        update(Prototypes.empty(MeanEmbedder()), grey, masks, ["a"], MeanEmbedder(), SMALL)


@pytest.mark.parametrize("corrupt", [
    lambda d: "{not json",
    lambda d: json.dumps({**d, "format": 99}),
    lambda d: json.dumps({**d, "blocks": [0]}),
    lambda d: json.dumps({**d, "labels": [{**d["labels"][0], "count": 7}]}),
    lambda d: json.dumps({**d, "labels": [{**d["labels"][0], "exemplars": "!!"}]}),
    lambda d: json.dumps({**d, "labels": [{**d["labels"][0], "exemplars": base64.b64encode(
        np.full(d["labels"][0]["count"], np.inf, "<f2").tobytes()).decode()}]}),
    lambda d: json.dumps({**d, "labels": d["labels"] * 2}),
    lambda d: json.dumps({**d, "labels": [{**d["labels"][0], "name": 3}]}),
])
def test_from_json_names_every_malformed_input(corrupt):
    grey, masks = _striped((0.2, 0.8))
    good = json.loads(update(Prototypes.empty(MeanEmbedder()), grey, masks[:1], ["a"], MeanEmbedder(),
                             SMALL).to_json())
    with pytest.raises(PrototypeError, match="unreadable"):
        Prototypes.from_json(corrupt(good))


def _constructed(points: dict[str, list[float]]) -> Prototypes:
    """Prototypes of one-feature exemplars: label -> values (spread from their spacing)."""
    return Prototypes(embedder="mean", blocks=(1,), labels=tuple(
        LabelPrototype(name, np.asarray(values, np.float32)[:, None], len(values), 1)
        for name, values in points.items()))


def test_hungarian_pairs_one_to_one_where_nearest_label_would_repeat():
    # Both materials are nearest to "a"; the pairing with the least total distance is b, a.
    distances = np.array([[1.0, 2.0], [1.1, 5.0]])
    naming = assign_names(distances, np.array([1.0, 2.0]), ("a", "b"), far_distance=10)
    assert naming.names == ("b", "a")
    assert naming.distances.tolist() == [1.0, 1.1]  # in units of each label's spread
    # Far is judged in spreads: 2.0 is 2 spreads of "b" -> no name with a threshold of 1.5.
    assert assign_names(distances, np.array([1.0, 1.0]), ("a", "b"), far_distance=1.5).names == (None, "a")


def test_constructed_embeddings_name_materials_by_their_nearest_exemplars():
    prototypes = _constructed({"dark": [-1.01, -1.0, -0.99, -1.0, -1.0, -1.01],
                               "bright": [0.99, 1.0, 1.01, 1.0, 1.0, 1.01]})
    distances = prototypes.distances(np.array([[-1.0], [1.0], [0.0]])) / prototypes.spreads
    assert distances[0, 0] < 1.5 < distances[0, 1] and distances[1, 1] < 1.5 < distances[1, 0]
    assert distances[2].min() > 5
    grey, masks = _striped((0.8, 0.2))
    naming = name_materials(grey, masks, prototypes, MeanEmbedder(), SMALL.replace({"naming.far_distance": 1e9}))
    assert naming.names == ("bright", "dark")


def test_far_material_gets_no_name_and_extra_materials_none():
    grey, masks = _striped((0.8, 0.5, 0.2))
    annotated, bands = _striped((0.8, 0.5, 0.2), seed=1)  # the middle band is never labelled
    prototypes = update(Prototypes.empty(MeanEmbedder()), annotated, bands[[0, 2]], ["bright", "dark"],
                        MeanEmbedder(), SMALL)
    naming = name_materials(grey, masks, prototypes, MeanEmbedder(), SMALL)
    assert naming.names == ("bright", None, "dark")
    assert np.isinf(naming.distances[1])
    # Only two labels learned and a far threshold of 0.5 spreads: the mid-grey band stays unnamed
    # even when it is the only material.
    alone = name_materials(grey, masks[1:2], prototypes, MeanEmbedder(), SMALL.replace({"naming.far_distance": 0.5}))
    assert alone.names == (None,) and alone.distances[0] > 0.5


def test_supervised_votes_per_mask_and_merges_masks_of_one_label():
    grey, bands = _striped((0.2, 0.8, 0.2))
    prototypes = update(Prototypes.empty(MeanEmbedder()), *_striped((0.2, 0.8, 0.2), seed=1),
                        ["dark", "bright", "dark"], MeanEmbedder(), SMALL)
    halves = np.zeros((2, *grey.shape), bool)
    halves[0, :, :48], halves[1, :, 48:] = True, True
    masks = np.concatenate([bands[1:2] & halves, bands[[0, 2]]])  # bright band in two pieces, two dark bands
    merged, naming = classify_masks(grey, masks, np.ones(len(masks)), prototypes, MeanEmbedder(), SMALL)
    assert naming.names == ("dark", "bright")  # dark covers two bands: largest first
    assert np.array_equal(merged.materials[0], bands[0] | bands[2])
    assert np.array_equal(merged.materials[1], bands[1])
    assert merged.assignment.tolist() == [1, 1, 0, 0]
    assert np.all(naming.distances < SMALL.naming.far_distance)


def test_supervised_drops_masks_far_from_every_label():
    grey, bands = _striped((0.2, 0.5, 0.8))
    annotated, labelled = _striped((0.2, 0.5, 0.8), seed=1)  # the middle band is never labelled
    prototypes = update(Prototypes.empty(MeanEmbedder()), annotated, labelled[[0, 2]], ["dark", "bright"],
                        MeanEmbedder(), SMALL)
    merged, naming = classify_masks(grey, bands, np.ones(3), prototypes, MeanEmbedder(), SMALL)
    assert merged.assignment[1] == -1 and sorted(naming.names) == ["bright", "dark"]


def test_engine_checks_naming_settings_and_prototype_embedder():
    grey, masks = _striped((0.2, 0.8))
    engine = Engine(Settings(), embedder=MeanEmbedder())
    prototypes = update(Prototypes.empty(MeanEmbedder()), grey, masks, ["a", "b"], MeanEmbedder(), SMALL)
    micrograph = load_micrograph(_png(grey))
    with pytest.raises(SettingsError, match="naming.mode"):
        engine.boost(micrograph, masks, settings=Settings().replace({"naming.mode": "guess"}), prototypes=prototypes)
    with pytest.raises(PrototypeError, match="embedder"):
        Engine(Settings()).boost(micrograph, masks, prototypes=prototypes)


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_after_learning_one_image_the_next_image_of_the_series_carries_the_right_names():
    first, second = generate_series(seed=0, difficulty=1, n=2, size=256)
    assert first.names == second.names and len(first.names) >= 2
    settings = Settings().replace({"merging.max_materials": len(first.names)})  # default naming.mode
    engine = Engine(settings)
    learned = update(Prototypes.empty(engine.embedder), load_micrograph(_png(first.image)).grey,
                     first.materials, first.names, engine.embedder, settings)
    proposals = simulate_sam_proposals(second, seed=second.seed)

    unnamed = engine.boost(_png(second.image), proposals)
    named = engine.boost(_png(second.image), proposals, prototypes=learned)

    assert unnamed.names is None
    overlap = (named.materials[:, None] & second.materials[None]).sum(axis=(2, 3))
    truth = [second.names[int(row.argmax())] for row in overlap]
    assert list(named.names) == truth
    assert len(set(truth)) == len(second.names)


def test_auto_mode_classifies_the_classical_proposers_masks_and_names_clusters_of_others():
    auto = Settings().naming
    assert auto.mode == "auto"
    assert mode_for(auto, "classical") == "supervised"
    assert mode_for(auto, "sam") == mode_for(auto, "given") == "cluster"
    assert mode_for(Settings().replace({"naming.mode": "cluster"}).naming, "classical") == "cluster"


def test_an_annotation_without_regions_learns_nothing():
    grey, _ = _striped((0.2, 0.8))
    empty = Prototypes.empty(MeanEmbedder())
    assert update(empty, grey, np.zeros((0, *grey.shape), bool), [], MeanEmbedder(), SMALL) == empty
