"""End to end with the real Label Studio 1.23.2: it learns a project's label names from annotations.

Label Studio, redis-server, one `samiam worker` and a web tier under gunicorn, all on loopback.
A project with the 4 materials of a synthetic series as its labels and 5 of the series' images:

1. an annotator's brush annotations (the ground truth, SDK brush RLE) for 2 tasks, submitted
   through Label Studio's API, so that Label Studio's own webhooks reach ``/webhook``;
2. once the worker has learned both, "Retrieve predictions" for the 3 other tasks: every region
   carries the name of the material it covers, and the model version is the learned one;
3. headless Chromium opens one of them in the labeling page; the screenshot (named pre-labels)
   is kept under ``test-artifacts/`` (``docs/img/naming-prelabels.png`` is a copy);
4. the project's prototypes are deleted (``samiam prototypes delete``) and Label Studio's "Start
   training" (``POST /api/ml/{id}/train``) rebuilds them, the same, from its annotations.
"""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
import requests
from annotated_series import CONFIG, LABELS, SERIES, brushes, png, right_names
from browser import ARTIFACTS, require_e2e
from label_studio import label_studio_bin
from test_e2e_label_studio import (
    ENGINE_ENV,
    SCREENSHOT,
    _retrieve_predictions,
    _screenshot_labeling_page,
    _setup_model_version,
)

from samiam.cli import main

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NAMED_SCREENSHOT = ARTIFACTS / "label-studio-named-prelabels.png"
COLORS = ("#ff00ff", "#00ffff", "#ffff00", "#ff8000")
"""The labels' colours: the first three are those the labeling-page helper looks for."""


def _config() -> str:
    """:data:`CONFIG` with a background colour per label."""
    config = CONFIG
    for name, color in zip(LABELS, COLORS):
        config = config.replace(f'<Label value="{name}"/>', f'<Label value="{name}" background="{color}"/>')
    assert config.count("background=") == len(LABELS)
    return config


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    require_e2e(label_studio_bin() is not None, "label-studio (set SAMIAM_LABEL_STUDIO_BIN)")
    require_e2e(shutil.which("redis-server") is not None, "redis-server")
    from service_processes import label_studio_with_backend

    work = tmp_path_factory.mktemp("e2e-naming")
    with label_studio_with_backend(work, "e2e-naming-worker", ENGINE_ENV) as stack:
        yield {"studio": stack["studio"], "backend": stack["backend"], "work": work,
               "redis_url": stack["env"]["REDIS_URL"]}


def _lessons_learned(backend: str) -> float:
    text = requests.get(backend + "/metrics", timeout=5).text
    return next(float(line.split()[1]) for line in text.splitlines() if line.startswith("samiam_lessons_learned_total"))


def test_annotations_teach_label_studio_projects_their_names(stack, monkeypatch, capsys):
    studio, backend = stack["studio"], stack["backend"]
    config = _config()
    project = studio.api("POST", "/api/projects/", json={"title": "samiam naming", "label_config": config}).json()["id"]
    files = {f"file{i}": (f"scene{i}.png", png(scene.image), "image/png") for i, scene in enumerate(SERIES)}
    studio.api("POST", f"/api/projects/{project}/import", files=files)
    tasks = studio.api("GET", f"/api/tasks?project={project}").json()["tasks"]
    task_of = {i: next(t["id"] for t in tasks if t["data"]["image"].endswith(f"-scene{i}.png")) for i in range(5)}
    ml = studio.api("POST", "/api/ml", json={"url": backend, "project": project, "title": "samiam",
                                            "is_interactive": False}).json()["id"]
    zero_shot_version = _setup_model_version(studio, project)

    for i in (0, 1):  # Label Studio posts ANNOTATION_CREATED to the backend's /webhook
        studio.api("POST", f"/api/tasks/{task_of[i]}/annotations/",
                   json={"result": brushes(SERIES[i]), "was_cancelled": False, "ground_truth": False})
    _wait_for_lessons(stack, 2)

    stored = _retrieve_predictions(studio, project, [task_of[i] for i in (2, 3, 4)])
    version = _setup_model_version(studio, project)
    assert version != zero_shot_version and version.startswith(zero_shot_version + "+p")
    right, regions = np.sum([right_names(stored[task_of[i]], SERIES[i]) for i in (2, 3, 4)], axis=0)
    assert {p["model_version"] for p in stored.values()} == {version}
    assert right == regions and regions >= 9, f"{right} of {regions} regions carry the right name"

    _screenshot_labeling_page(studio.url, project, task_of[2], stack["work"])
    shutil.copyfile(SCREENSHOT, NAMED_SCREENSHOT)

    # "Start training": deleted prototypes come back, the same, from the annotations in Label Studio.
    monkeypatch.setenv("REDIS_URL", stack["redis_url"])
    learned = _shown(capsys, project)
    assert main(["prototypes", "delete", "--project", str(project)]) == 0 and _shown(capsys, project)["version"] is None
    studio.api("POST", f"/api/ml/{ml}/train", json={})
    _wait_for_lessons(stack, 3)
    assert _shown(capsys, project) == learned


def _wait_for_lessons(stack: dict, count: int) -> None:
    deadline = time.monotonic() + 120
    while _lessons_learned(stack["backend"]) < count:
        assert time.monotonic() < deadline, (stack["work"] / "worker.log").read_text()[-3000:]
        time.sleep(0.5)


def _shown(capsys, project: int) -> dict:
    """``samiam prototypes show`` of ``project``."""
    capsys.readouterr()
    assert main(["prototypes", "show", "--project", str(project)]) == 0
    return json.loads(capsys.readouterr().out)
