"""Learning each project's label names from the annotations Label Studio sends, in embedded and
Redis mode: webhooks, prototypes per project, named predictions, versions, the CLI.

A synthetic series with known materials (:mod:`annotated_series`) plays the project: its images
are served by the fake Label Studio, annotations are its ground truth in the SDK's brush RLE, the
engine is the weight-free one (classical proposer).
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import redis
import requests
from annotated_series import CONFIG, LABELS, SERIES, brushes, png, right_names
from fake_label_studio import TOKEN, FakeLabelStudio
from redis_server import RedisServer, redis_server_bin
from rq import Queue
from service_helpers import counters, service_config

from samiam.booster.prototypes import LabelPrototype, Prototypes
from samiam.cli import main
from samiam.service import create_app
from samiam.service.prototype_store import (
    MemoryPrototypeStore,
    RedisPrototypeStore,
    contribution,
    delete,
    derive,
    put,
    replace_all,
)
from samiam.service.worker import run_worker

SETUP = {"project": "1.1700000000", "schema": CONFIG, "access_token": TOKEN}


class Service:
    """The app in one mode, the fake Label Studio holding the series as project 1 (tasks 1-5)."""

    def __init__(self, mode: str, tmp_path):
        self.label_studio = FakeLabelStudio()
        self.redis = RedisServer(tmp_path / "redis").start() if mode == "redis" else None
        self.config = service_config(self.redis.url if self.redis else None, self.label_studio)
        self.app = create_app(self.config)
        self.client = self.app.test_client()
        headers = {"Authorization": f"Token {TOKEN}"}
        requests.post(f"{self.label_studio.url}/api/projects", json={"title": "series", "label_config": CONFIG},
                      headers=headers, timeout=5).raise_for_status()
        tasks = [{"image": self.label_studio.add_file(f"scene{i}.png", png(scene.image))}
                 for i, scene in enumerate(SERIES)]
        requests.post(f"{self.label_studio.url}/api/projects/1/import", json=tasks, headers=headers,
                      timeout=5).raise_for_status()
        assert self.setup() == "test-v1"

    def setup(self) -> str:
        answer = self.client.post("/setup", json={**SETUP, "hostname": self.label_studio.url})
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()["model_version"]

    @property
    def prototypes(self):
        return self.app.extensions["samiam"]["prototypes"]

    def drain(self) -> None:
        """Run every queued job to its end."""
        if self.redis:
            run_worker(self.config, burst=True)
            return
        dispatcher = self.app.extensions["samiam"]["dispatcher"]
        deadline = time.monotonic() + 60
        while dispatcher.queue_depth() and time.monotonic() < deadline:
            time.sleep(0.02)

    def send(self, action: str, annotation: dict) -> dict:
        answer = self.client.post("/webhook", json=self.label_studio.webhook(action, annotation))
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()

    def annotate(self, task_id: int, names=None, annotation_id: int | None = None,
                 action: str = "ANNOTATION_CREATED") -> dict:
        annotation = self.label_studio.annotate(task_id, brushes(SERIES[task_id - 1], names), annotation_id)
        self.send(action, annotation)
        return annotation

    def predict(self, task_ids: list[int]) -> list[dict]:
        tasks = [{"id": i, "data": self.label_studio.tasks[i]["data"], "project": 1} for i in task_ids]
        body = {"tasks": tasks, "label_config": CONFIG, "project": SETUP["project"], "params": {}}
        answer = {}
        thread = threading.Thread(target=lambda: answer.setdefault("r", self.client.post("/predict", json=body)))
        thread.start()
        if self.redis:
            while thread.is_alive():
                run_worker(self.config, burst=True)
                thread.join(0.1)
        thread.join()
        assert answer["r"].status_code == 200, answer["r"].get_json()
        return answer["r"].get_json()["results"]

    def close(self) -> None:
        if self.redis:
            self.redis.stop()
        else:
            self.app.extensions["samiam"]["dispatcher"].shutdown()
        self.label_studio.close()


@pytest.fixture(params=["embedded", "redis"])
def service(request, tmp_path):
    if request.param == "redis" and redis_server_bin() is None:
        pytest.skip("redis-server is not installed")
    service = Service(request.param, tmp_path)
    yield service
    service.close()


@pytest.fixture
def embedded(tmp_path):
    service = Service("embedded", tmp_path)
    yield service
    service.close()


# -- the webhook -------------------------------------------------------------------------------

def test_webhook_answers_at_once_and_queues_the_lesson(service):
    annotation = service.label_studio.annotate(1, brushes(SERIES[0]))
    started = time.perf_counter()
    answer = service.send("ANNOTATION_CREATED", annotation)
    assert time.perf_counter() - started < 0.5  # Label Studio gives up after 1 s
    assert answer == {"status": "queued", "lesson": "learn"}
    if service.redis:
        queue = Queue(service.config.queue_name, connection=redis.Redis.from_url(service.redis.url))
        assert [job.func_name for job in queue.jobs] == ["samiam.service.learning.learn_annotation"]
        assert service.prototypes.get("1") is None  # nothing learned before a worker runs it
    service.drain()
    learned = service.prototypes.get("1")
    assert learned is not None and set(learned.names) == set(SERIES[0].names)
    assert counters(service.client)["samiam_lessons_learned_total"] == 1


def test_after_two_annotated_images_predictions_carry_theright_names(service):
    zero_shot = service.predict([3, 4, 5])
    assert {p["model_version"] for p in zero_shot} == {"test-v1"}
    for task_id in (1, 2):
        service.annotate(task_id)
    service.drain()
    version = service.setup()
    assert version.startswith("test-v1+p") and version == f"test-v1+p{service.prototypes.get('1').restrict(LABELS).version}"

    learned = service.predict([3, 4, 5])
    assert {p["model_version"] for p in learned} == {version}  # Label Studio's skip rule: same as /setup
    right, regions = np.sum([right_names(p, scene) for p, scene in zip(learned, SERIES[2:])], axis=0)
    before, _ = np.sum([right_names(p, scene) for p, scene in zip(zero_shot, SERIES[2:])], axis=0)
    assert right == regions and regions >= 9, (right, regions)
    assert before < regions  # zero-shot names follow config order: the learning made the difference


def test_redelivery_counts_once_an_update_replaces_and_a_late_old_one_is_ignored(service):
    first = service.annotate(1)
    service.drain()
    once = service.prototypes.get("1")
    service.send("ANNOTATION_CREATED", first)  # Label Studio retries a webhook
    service.drain()
    assert service.prototypes.get("1").version == once.version
    assert [label.images for label in once.labels] == [1] * len(once.labels)

    swapped = list(reversed(SERIES[0].names))
    updated = service.annotate(1, names=swapped, annotation_id=first["id"], action="ANNOTATION_UPDATED")
    service.drain()
    replaced = service.prototypes.get("1")
    assert replaced.version != once.version and [label.images for label in replaced.labels] == [1] * len(once.labels)
    assert set(service.prototypes.contributions("1")) == {str(first["id"])}
    assert service.prototypes.contributions("1")[str(first["id"])]["updated_at"].startswith(updated["updated_at"][:19])

    service.send("ANNOTATION_CREATED", first)  # the CREATED delivered late, after the UPDATED
    service.drain()
    assert service.prototypes.get("1").version == replaced.version


def test_start_training_rebuilds_from_every_annotation_equal_to_the_incremental_result(service):
    for task_id in (1, 2):
        service.annotate(task_id)
    service.drain()
    incremental = service.prototypes.get("1")
    assert service.prototypes.remove("1")
    assert service.setup() == "test-v1"

    answer = service.client.post("/webhook", json={"action": "START_TRAINING",
                                                   "project": {"id": 1, "label_config": CONFIG}})
    assert answer.get_json() == {"status": "queued", "lesson": "rebuild"}
    service.drain()
    rebuilt = service.prototypes.get("1")
    assert rebuilt.version == incremental.version
    assert all(np.array_equal(a.exemplars, b.exemplars) for a, b in zip(rebuilt.labels, incremental.labels))


def test_a_deleted_annotation_is_forgotten_even_when_its_learning_job_runs_later(service):
    kept, dropped = service.annotate(1), service.annotate(2)
    answer = service.client.post("/webhook", json={"action": "ANNOTATIONS_DELETED", "annotations": [{"id": dropped["id"]}],
                                                   "project": {"id": 1}})
    assert answer.status_code == 200 and answer.get_json()["status"] == "forgotten"
    service.drain()  # the learning job of the deleted annotation runs now, after its deletion
    learned = service.prototypes.get("1")
    assert {label.images for label in learned.labels} == {1}
    assert set(service.prototypes.contributions("1")) == {str(kept["id"]), str(dropped["id"])}
    assert service.prototypes.contributions("1")[str(dropped["id"])] == {"deleted": True}


@pytest.mark.parametrize("forged", [{"id": 999, "task": 1}, {"id": None}])
def test_a_forged_webhook_teaches_nothing_label_studio_does_not_hold(service, forged):
    real = service.label_studio.annotate(1, brushes(SERIES[0]))
    body = service.label_studio.webhook("ANNOTATION_CREATED", real)
    if forged["id"] is None:  # a real annotation claimed for another project
        body["project"]["id"] = 2
    else:  # an annotation Label Studio never stored, with made-up labels
        body["annotation"] = {**real, "id": forged["id"], "result": brushes(SERIES[0], list(reversed(SERIES[0].names)))}
    assert service.client.post("/webhook", json=body).get_json()["status"] == "queued"
    service.drain()
    assert service.prototypes.get("1") is None and service.prototypes.get("2") is None
    reason = service.app.extensions["samiam"]["store"].failures()[0]["reason"]
    assert ("404" in reason) if forged["id"] else ("of project 1 in Label Studio" in reason), reason


def test_an_annotation_that_cannot_be_learned_is_recorded_not_raised(service):
    bad = service.label_studio.annotate(1, brushes(SERIES[0], names=["Quartz"] * len(SERIES[0].names)))
    service.send("ANNOTATION_CREATED", bad)
    service.drain()
    assert service.prototypes.get("1") is None
    assert counters(service.client)["samiam_lessons_failed_total"] == 1
    assert "Quartz" in service.app.extensions["samiam"]["store"].failures()[0]["reason"]


def test_labels_learned_with_features_of_another_meaning_are_left_out_not_failed(service):
    """After an upgrade that changed the texture features (or a change of merging.embedder) the
    stored exemplars are not comparable: predictions go on without them, and a new annotation
    counts alone until 'Start training' relearns the rest."""
    for task_id in (1, 2):
        service.annotate(task_id)
    service.drain()
    stored = service.prototypes.contributions("1")
    stale = {annotation: {**c, "prototypes": json.dumps({**json.loads(c["prototypes"]), "embedder": "lbp"})}
             for annotation, c in stored.items()}  # as learned before the windowed intensity features
    service.prototypes.update("1", replace_all(stale, "9999"))
    assert service.prototypes.get("1").embedder == "lbp"
    assert {p["model_version"] for p in service.predict([3, 4])} == {"test-v1"}  # zero-shot, not failed
    service.annotate(3)
    service.drain()
    learned = service.prototypes.get("1")
    assert learned.embedder != "lbp"
    assert sum(label.images for label in learned.labels) == len(learned.labels)  # one image: the new annotation


# -- storage: concurrent updates ---------------------------------------------------------------

def _tiny_contribution(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    label = LabelPrototype("Ge", rng.normal(size=(3, 4)).astype(np.float16).astype(np.float32), 3, 1)
    return contribution(f"2026-01-01T00:00:{seed % 60:02d}.000000+00:00", Prototypes("test", (4,), (label,)))


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_concurrent_updates_of_one_project_lose_nothing(kind, tmp_path):
    if kind == "memory":
        stores = [MemoryPrototypeStore(256, 0)] * 2
        server = None
    else:
        if redis_server_bin() is None:
            pytest.skip("redis-server is not installed")
        server = RedisServer(tmp_path / "redis").start()
        stores = [RedisPrototypeStore(redis.Redis.from_url(server.url), 256, 0) for _ in range(2)]  # two workers
    try:
        start = threading.Barrier(8)

        def learn(i):
            start.wait()
            stores[i % 2].update("1", put(str(i), _tiny_contribution(i)))
        threads = [threading.Thread(target=learn, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        learned = stores[0].get("1")
        assert learned.labels[0].seen == 24 and learned.labels[0].images == 8
        assert learned.version == derive({str(i): _tiny_contribution(i) for i in range(8)}, 256, 0).version
        stores[1].update("1", delete(["3"]))
        assert stores[0].get("1").labels[0].images == 7
    finally:
        if server:
            server.stop()


def test_a_rebuild_keeps_annotations_learned_while_it_read_label_studio():
    store = MemoryPrototypeStore(256, 0)
    store.update("1", put("1", _tiny_contribution(1)))  # learned before the rebuild: replaced
    store.update("2", put("9", _tiny_contribution(9)))
    store.update("1", put("3", _tiny_contribution(30)))  # learned while the rebuild read (at :20)
    store.update("1", delete(["4"]))
    store.update("1", replace_all({"2": _tiny_contribution(2)}, "2026-01-01T00:00:20.000000+00:00"))
    assert set(store.contributions("1")) == {"2", "3"}
    assert set(store.contributions("2")) == {"9"}


def test_derived_prototypes_keep_only_contributions_made_like_the_newest():
    old = {str(i): _tiny_contribution(i) for i in (1, 2)}
    for item in old.values():
        item["prototypes"] = json.dumps({**json.loads(item["prototypes"]), "embedder": "old"})
    derived = derive({**old, "3": _tiny_contribution(3)}, 16, 0)
    assert derived.embedder == "test" and derived.labels[0].seen == 3  # contribution 3 alone
    assert derive({**old, "3": _tiny_contribution(3)}, 16, 0).version == derive({"3": _tiny_contribution(3)}, 16, 0).version


def test_derived_prototypes_do_not_depend_on_the_order_of_arrival_and_keep_a_bounded_sample():
    contributions = {str(i): _tiny_contribution(i) for i in range(10)}
    forward = derive(contributions, 16, 0)
    backward = derive(dict(reversed(contributions.items())), 16, 0)
    assert forward.version == backward.version and len(forward.labels[0].exemplars) == 16
    assert forward.labels[0].seen == 30
    assert derive({}, 16, 0) is None and derive({"1": {"deleted": True}}, 16, 0) is None


# -- the CLI -----------------------------------------------------------------------------------

@pytest.mark.skipif(redis_server_bin() is None, reason="redis-server is not installed")
def test_cli_lists_shows_and_deletes_a_projects_prototypes(tmp_path, monkeypatch, capsys):
    service = Service("redis", tmp_path)
    try:
        service.annotate(1)
        service.drain()
        assert service.setup() != "test-v1"
        monkeypatch.setenv("REDIS_URL", service.redis.url)
        assert main(["prototypes", "list"]) == 0
        assert capsys.readouterr().out.split("\t")[0] == "1"
        assert main(["prototypes", "show", "--project", "1"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["annotations"] == 1 and {label["name"] for label in shown["labels"]} == set(SERIES[0].names)
        assert main(["prototypes", "delete", "--project", "1"]) == 0
        assert "deleted" in capsys.readouterr().out
        assert service.setup() == "test-v1"  # back to zero-shot: Label Studio asks for the tasks again
        assert main(["prototypes", "delete", "--project", "1"]) == 0
        assert "nothing was learned" in capsys.readouterr().out
    finally:
        service.close()


def test_cli_refuses_without_redis(monkeypatch, capsys):
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert main(["prototypes", "list"]) == 2
    assert "needs REDIS_URL" in capsys.readouterr().err


# -- hostile bodies ----------------------------------------------------------------------------

def _valid_body() -> dict:
    return {"action": "ANNOTATION_CREATED", "project": {"id": 1, "label_config": CONFIG},
            "task": {"id": 1, "data": {"image": "/data/upload/1/scene0.png"}},
            "annotation": {"id": 7, "result": [], "updated_at": "2026-01-01T00:00:00Z"}}


def _changed(path: tuple, value) -> dict:
    body = _valid_body()
    inner = body
    for key in path[:-1]:
        inner = inner[key]
    inner[path[-1]] = value
    return body


@pytest.mark.parametrize("body, reason", [
    ([1, 2], "JSON object"),
    ({"project": {"id": 1}}, "'action'"),
    (_changed(("action",), 3), "'action'"),
    (_changed(("project",), "1"), "'project' must be an object"),
    (_changed(("project", "id"), True), "project.id must be an integer"),
    (_changed(("project", "id"), -4), "project.id must be an integer"),
    (_changed(("project", "id"), 2**64), "project.id must be an integer"),
    (_changed(("annotation",), None), "'annotation' must be an object"),
    (_changed(("annotation", "id"), "7"), "annotation.id must be an integer"),
    (_changed(("annotation", "id"), 1.5), "annotation.id must be an integer"),
    (_changed(("task",), None), "'task' must be an object"),
    (_changed(("task", "data"), "x"), "task.data must be an object"),
    (_changed(("task", "id"), "1"), "task.id must be an integer"),
    ({"action": "ANNOTATIONS_DELETED", "project": {"id": 1}, "annotations": [{"id": None}]}, "annotations[].id"),
    ({"action": "ANNOTATIONS_DELETED", "project": {"id": 1}, "annotations": {"id": 1}}, "list of objects"),
    ({"action": "START_TRAINING", "project": ["1"]}, "'project' must be an object"),
])
def test_hostile_webhook_bodies_get_400_with_the_reason(embedded, body, reason):
    answer = embedded.client.post("/webhook", json=body)
    assert answer.status_code == 400 and reason in answer.get_json()["error"], answer.get_json()
    assert embedded.app.extensions["samiam"]["dispatcher"].queue_depth() == 0


def test_events_that_teach_nothing_are_acknowledged(embedded):
    for body in ({"action": "PROJECT_UPDATED", "project": {"id": 1}},
                 _changed(("annotation", "was_cancelled"), True)):
        answer = embedded.client.post("/webhook", json=body)
        assert answer.status_code == 200 and answer.get_json()["status"] == "ignored"
