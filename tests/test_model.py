import io
import json

import numpy as np
import pytest
from PIL import Image

from samiam.errors import LabelConfigError, RequestError, RequestTooLargeError, SettingsError
from samiam.labelstudio.config import parse_label_config
from samiam.labelstudio.model import SamiamModel, predict_task
from samiam.labelstudio.request import TaskRequest
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


def test_setup_checks_the_config_and_the_project_overrides():
    model = SamiamModel(CLASSICAL, "samiam-1")
    assert model.setup(CONFIG) == {}
    assert model.setup(CONFIG, {"merging.materials": 2}) == {"merging.materials": 2}
    with pytest.raises(LabelConfigError):
        model.setup('<View><Image name="img" value="$image"/></View>')
    with pytest.raises(SettingsError, match="only 3 brush labels"):
        model.setup(CONFIG, {"merging.materials": 4})


@pytest.mark.parametrize("name, value", [("image.max_pixels", 10**12), ("proposals.proposer", "sam"),
                                         ("merging.embedder_checkpoint", "/etc/passwd"),
                                         ("merging.embedder", "resnet18")])
def test_requests_cannot_set_what_loads_files_or_bounds_images(name, value):
    with pytest.raises(SettingsError, match="cannot be set per project or request"):
        SamiamModel(CLASSICAL, "v").setup(CONFIG, {name: value})


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


@pytest.mark.parametrize("overrides, message", [
    ({"merging.materials": 4}, "only 3 brush labels"),
    ({"merging.nope": 1}, "unknown setting"),
    ({"merging.materials": 0}, "at least one material"),
    ({"merging.max_materials": -1}, "at least one material"),
    ({"merging.materials": "three"}, "is not an integer or None"),
    ({"merging.materials": [3]}, "is not an integer or None"),
    ({"merging.materials": True}, "is not an integer or None"),
    ({"removal.child_inside": "most"}, "is not a finite number"),
    ({"merging.k_estimator": 2}, "is not text"),
])
def test_settings_refuse_bad_overrides_with_a_reason(overrides, message):
    with pytest.raises(SettingsError, match=message):
        SamiamModel(CLASSICAL, "v").settings_for(CONFIG, overrides)


def _body(tasks, **extra) -> dict:
    return {"tasks": tasks, "label_config": CONFIG, "project": "4.1700000000", **extra}


def test_requests_carry_the_parsed_config_and_resolved_settings_as_json():
    model = SamiamModel(CLASSICAL, "v7")
    tasks = [{"id": 3, "data": {"image": "/data/upload/4/a.png"}}, {"id": 1, "data": {"image": 7}}]
    requests = model.requests(_body(tasks, params={"samiam": {"merging.crop_size": "48"}}),
                              lambda project: {"merging.materials": 2} if project == "4.1700000000" else {})
    assert [(r.task_id, r.image_url) for r in requests] == [(3, "/data/upload/4/a.png"), (1, None)]
    request = requests[0]
    assert request.brush == parse_label_config(CONFIG) and request.project == "4.1700000000"
    assert request.settings == {"merging.materials": 2, "merging.crop_size": 48, "merging.max_materials": 3}
    assert request.model_version == "v7"
    again = TaskRequest.from_json(json.loads(json.dumps(request.to_json())))
    assert again == request
    assert again.resolve(CLASSICAL) == model.settings_for(CONFIG, {"merging.materials": 2, "merging.crop_size": 48})


@pytest.mark.parametrize("tasks, error, message", [
    ([{"id": True, "data": {}}], RequestError, "integer 'id'"),
    ([{"id": -1, "data": {}}], RequestError, "integer 'id'"),
    ([{"id": 2**63, "data": {}}], RequestError, "integer 'id'"),
    ([{"id": 1, "data": []}], RequestError, "'data' object"),
    ([{"id": i, "data": {}} for i in range(4)], RequestTooLargeError, "SAMIAM_MAX_TASKS_PER_REQUEST = 3"),
])
def test_requests_refuse_bad_tasks(tasks, error, message):
    with pytest.raises(error, match=message):
        SamiamModel(CLASSICAL, "v", max_tasks=3).requests(_body(tasks), lambda project: {})


class RecordingEngine:
    """The real engine, remembering the settings each call received."""

    def __init__(self, engine):
        self.engine = engine
        self.settings = engine.settings
        self.calls = []

    def segment(self, image, settings, prototypes=None):
        self.calls.append(settings)
        return self.engine.segment(image, settings, prototypes=prototypes)


@pytest.mark.parametrize("overrides, counts", [({"merging.crops_per_mask": 8}, (1, 2)),
                                                ({"merging.materials": 2}, (2,))])
def test_predict_task_with_the_real_engine(overrides, counts):
    pipeline = pytest.importorskip("samiam.pipeline")
    model = SamiamModel(CLASSICAL, "samiam-test")
    engine = RecordingEngine(pipeline.Engine(CLASSICAL))
    image = _two_texture_png()
    body = {"tasks": [{"id": 1, "data": {"image": "x.png"}}], "label_config": _config("A", "B"),
            "params": {"samiam": overrides}}
    (request,) = model.requests(body, lambda project: {})
    prediction = predict_task(engine, image, request)

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


def test_predict_task_names_regions_from_learned_prototypes():
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
    body = {"tasks": [{"id": 1, "data": {"image": "x.png"}}], "label_config": _config("A", "B"),
            "params": {"samiam": {"merging.materials": 2}}}
    (request,) = model.requests(body, lambda project: {})
    prediction = predict_task(engine, image, request, prototypes=learned)

    masks, labels = materials_from_results(prediction["result"])
    left = [int(np.argmax([(m & halves[0]).sum() for m in masks]))]
    assert labels[left[0]] == "B" and sorted(labels) == ["A", "B"]
    assert prediction["model_version"] == f"samiam-test+p{learned.restrict(('A', 'B')).version}"


@pytest.mark.parametrize("event", ["PROJECT_UPDATED", "TASKS_CREATED"])
def test_fit_ignores_events_that_teach_nothing(event):
    assert SamiamModel(CLASSICAL, "v").fit({"action": event, "project": {"id": 3}}) is None
