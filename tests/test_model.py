import io

import numpy as np
import pytest
from PIL import Image

from samiam.errors import LabelConfigError, SettingsError
from samiam.labelstudio.model import SamiamModel
from samiam.labelstudio.results import materials_from_results
from samiam.settings import Settings


def _config(*labels: str) -> str:
    tags = "".join(f'<Label value="{label}"/>' for label in labels)
    return f'<View><Image name="img" value="$image"/><BrushLabels name="phase" toName="img">{tags}</BrushLabels></View>'


CONFIG = _config("Substrate", "Film", "Vacuum")
CLASSICAL = Settings().replace({"proposals.proposer": "classical"})


def _two_texture_png(side: int = 128) -> bytes:
    yy, xx = np.mgrid[:side, :side]
    image = np.where(xx < side // 2, 128 + 60 * np.sin(xx * 0.9), 128 + 60 * np.sin((xx + yy) * 0.5) * np.cos(yy * 0.7))
    image += np.random.default_rng(0).normal(0, 5, image.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_setup_checks_the_config_and_reports_the_version():
    model = SamiamModel(CLASSICAL, "samiam-1")
    assert model.setup(CONFIG) == {"model_version": "samiam-1"}
    with pytest.raises(LabelConfigError):
        model.setup('<View><Image name="img" value="$image"/></View>')


@pytest.mark.parametrize("labels, default_max, expected", [(3, 6, 3), (8, 6, 6), (1, 6, 1), (4, 2, 2)])
def test_settings_bound_the_materials_by_the_labels(labels, default_max, expected):
    model = SamiamModel(Settings().replace({"merging.max_materials": default_max}), "v")
    settings = model.settings_for(_config(*(f"L{i}" for i in range(labels))))
    assert settings.merging.max_materials == expected


def test_settings_apply_overrides_before_bounding():
    model = SamiamModel(CLASSICAL, "v")
    settings = model.settings_for(CONFIG, {"merging.crop_size": "48", "merging.max_materials": 9,
                                           "merging.materials": 2})
    assert (settings.merging.crop_size, settings.merging.max_materials, settings.merging.materials) == (48, 3, 2)
    assert settings.proposals.proposer == "classical"
    assert model.settings.merging.crop_size == 60  # the model's own settings are untouched


def test_settings_refuse_more_materials_than_labels_and_unknown_names():
    model = SamiamModel(CLASSICAL, "v")
    with pytest.raises(SettingsError, match="only 3 brush labels"):
        model.settings_for(CONFIG, {"merging.materials": 4})
    with pytest.raises(SettingsError, match="unknown setting"):
        model.settings_for(CONFIG, {"merging.nope": 1})


class RecordingEngine:
    """The real engine, remembering the settings each call received."""

    def __init__(self, engine):
        self.engine = engine
        self.calls = []

    def segment(self, image, settings, prototypes=None):
        self.calls.append(settings)
        return self.engine.segment(image, settings, prototypes=prototypes)


@pytest.mark.parametrize("overrides, counts", [({"merging.crops_per_mask": 8}, (1, 2)),
                                                ({"merging.materials": 2}, (2,))])
def test_predict_one_with_the_real_engine(overrides, counts):
    pipeline = pytest.importorskip("samiam.pipeline")
    model = SamiamModel(CLASSICAL, "samiam-test")
    engine = RecordingEngine(pipeline.Engine(CLASSICAL))
    image = _two_texture_png()
    prediction = model.predict_one(engine, image, _config("A", "B"), overrides)

    (settings,) = engine.calls
    assert settings == CLASSICAL.replace(dict(overrides, **{"merging.max_materials": 2}))
    expected = engine.engine.segment(image, settings)
    masks, labels = materials_from_results(prediction["result"])
    assert len(masks) in counts
    assert np.array_equal(masks, expected.materials)
    assert labels == ["A", "B"][:len(masks)]
    assert [r["score"] for r in prediction["result"]] == pytest.approx(expected.scores.tolist())
    assert prediction["score"] == pytest.approx(expected.score)
    assert prediction["model_version"] == "samiam-test"
    assert {(r["from_name"], r["to_name"]) for r in prediction["result"]} == {("phase", "img")}


def test_predict_one_names_regions_from_learned_prototypes():
    pipeline = pytest.importorskip("samiam.pipeline")
    from samiam.booster.prototypes import Prototypes, update
    from samiam.io import load_micrograph

    model = SamiamModel(CLASSICAL, "samiam-test")
    engine = pipeline.Engine(CLASSICAL)
    image = _two_texture_png()
    halves = np.zeros((2, 128, 128), bool)
    halves[0, :, :64], halves[1, :, 64:] = True, True
    # The annotator calls the left texture "B", the right one "A".
    learned = update(Prototypes.empty(engine.embedder), load_micrograph(image).grey, halves,
                     ["B", "A"], engine.embedder, CLASSICAL)
    prediction = model.predict_one(engine, image, _config("A", "B"), {"merging.materials": 2}, learned)

    masks, labels = materials_from_results(prediction["result"])
    left = [int(np.argmax([(m & halves[0]).sum() for m in masks]))]
    assert labels[left[0]] == "B" and sorted(labels) == ["A", "B"]
    assert prediction["model_version"] == f"samiam-test+p{learned.restrict(('A', 'B')).version}"


@pytest.mark.parametrize("event", ["ANNOTATION_CREATED", "ANNOTATION_UPDATED", "START_TRAINING", "PROJECT_UPDATED"])
def test_fit_acknowledges_and_ignores(event):
    answer = SamiamModel(CLASSICAL, "v").fit(event, {"project": {"id": 3}, "annotation": {"id": 1}})
    assert answer["status"] == "ignored"
    assert ("zero-shot" in answer["reason"]) == (event != "PROJECT_UPDATED")
