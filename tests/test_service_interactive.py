"""Smart-tool clicks through the service (samiam.service.interactive): Label Studio's interactive
``/predict`` in embedded mode and in Redis mode (a real redis-server and real ``samiam worker``
processes), with the weight-free engine and with a tiny random SAM through the real loading path."""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import redis
from fake_label_studio import PROJECT, TOKEN, task
from PIL import Image
from redis_server import redis_server_bin
from rq import Queue
from segment_anything import SamPredictor
from service_helpers import counters, post_predict, predict_in_thread, service_config
from service_processes import start_worker, stop_all, wait_until
from test_interactive import BAND, SIDE, three_bands
from test_ls_prompts import CONFIG, keypoint
from tiny_sam import TINY_MODEL_TYPE, install_tiny_sam, save_tiny_checkpoint, tiny_sam_settings

from samiam.io import load_micrograph
from samiam.labelstudio.results import materials_from_results
from samiam.service import create_app
from samiam.service.interactive import pick_worker, rendezvous

TESTS = Path(__file__).resolve().parent
TWO_MATERIALS = {"merging.materials": 2}
"""The three-band test image holds two materials."""


def bands_png(seed: int = 0) -> bytes:
    """:func:`three_bands` as an 8-bit PNG: lattice A on the top and bottom thirds, B in the middle."""
    buffer = io.BytesIO()
    Image.fromarray(three_bands(seed).rgb[..., 0]).save(buffer, "PNG")
    return buffer.getvalue()


def point(x: float, y: float, positive: bool = True, label: str = "Ge") -> dict:
    """A smart keypoint at pixel (x, y) of the SIDE x SIDE test image."""
    return keypoint(100 * x / SIDE, 100 * y / SIDE, positive, label, width=SIDE, height=SIDE)


def box(x0: float, y0: float, x1: float, y1: float, label: str = "SrTiO3") -> dict:
    return {"type": "rectanglelabels", "original_width": SIDE, "original_height": SIDE,
            "value": {"x": 100 * x0 / SIDE, "y": 100 * y0 / SIDE, "width": 100 * (x1 - x0) / SIDE,
                      "height": 100 * (y1 - y0) / SIDE, "rectanglelabels": [label]}}


def click(client, url: str, *items: dict, task_id: int = 1, samiam: dict | None = None, **body):
    """An interactive /predict as Label Studio sends it for a smart tool (one task, a context)."""
    params = {"login": None, "password": None, "context": {"result": list(items)},
              "samiam": {**TWO_MATERIALS, **(samiam or {})}}
    return client.post("/predict", json={"tasks": [task(task_id, url)], "label_config": CONFIG,
                                         "project": PROJECT, "params": params, **body})


def region(response) -> tuple[np.ndarray, str, dict]:
    """The one region of a click's answer: (H, W) bool mask, its label, the prediction."""
    assert response.status_code == 200, response.get_json()
    (prediction,) = response.get_json()["results"]
    masks, labels = materials_from_results(prediction["result"])
    assert masks.shape == (1, SIDE, SIDE) and len(labels) == 1
    return masks[0], labels[0], prediction


@pytest.fixture
def embedded(label_studio):
    """An embedded server (weight-free engine) and the URL of the three-band image."""
    app = create_app(service_config(None, label_studio))
    yield app.test_client(), label_studio.add_file("bands.png", bands_png())
    app.extensions["samiam"]["dispatcher"].shutdown()


# -- embedded mode, weight-free --------------------------------------------------------------------

def test_a_keypoint_answers_the_region_under_it_and_nothing_is_written_back(embedded, label_studio):
    client, url = embedded
    mask, label, prediction = region(click(client, url, point(100, 20)))
    assert mask[20, 100] and mask[:BAND].mean() > 0.95 and not mask[2 * BAND:].any()
    assert label == "Ge"  # the label chosen on the smart tool
    assert prediction["model_version"] == "test-v1/weight-free" and prediction["samiam"]["path"] == "weight-free"
    assert prediction["samiam"]["worker"] == "embedded" and not prediction["samiam"]["encoder_ran"]
    assert 0 <= prediction["score"] <= 1
    middle, _, _ = region(click(client, url, point(30, BAND + 30), point(100, 20, positive=False)))
    assert middle[BAND + 30, 30] and not middle[20, 100] and middle[BAND + 5:2 * BAND - 5].mean() > 0.9
    assert label_studio.predictions == []  # Label Studio stores nothing of a click; neither do we
    assert all(n == 0 for n in client.get("/jobs?project=1").get_json()["counts"].values())
    metrics = counters(client)
    assert metrics["samiam_clicks_answered_total"] == 2 and metrics["samiam_batches_answered_total"] == 0


def test_clicks_keep_their_place_when_label_studio_reports_another_image_size(embedded):
    client, url = embedded  # e.g. a preview of half the size: the point is at the same place
    half = keypoint(100 * 50 / (SIDE // 2), 100 * 10 / (SIDE // 2), width=SIDE // 2, height=SIDE // 2)
    mask, _, _ = region(click(client, url, half))
    assert mask[20, 100] and mask[:BAND].mean() > 0.95 and not mask[BAND + 5:].any()


def test_a_box_answers_a_region_inside_it(embedded):
    client, url = embedded
    x0, y0, x1, y1 = 10, BAND + 10, 120, 2 * BAND - 10
    mask, label, _ = region(click(client, url, box(x0, y0, x1, y1)))
    rows, cols = np.nonzero(mask)
    assert mask.any() and label == "SrTiO3"
    assert rows.min() >= y0 and rows.max() < y1 and cols.min() >= x0 and cols.max() < x1


def test_semantic_clicks_grow_to_the_whole_material_per_project_and_per_request(embedded):
    client, url = embedded
    setup = client.post("/setup", json={"project": PROJECT, "schema": CONFIG,
                                        "extra_params": {"interactive.semantic": True}})
    assert setup.status_code == 200, setup.get_json()
    mask, _, prediction = region(click(client, url, point(100, 20)))
    assert prediction["model_version"] == "test-v1/weight-free+semantic"
    assert mask[:BAND].mean() > 0.95 and mask[2 * BAND:].mean() > 0.95 and mask[BAND:2 * BAND].mean() < 0.25
    alone, _, prediction = region(click(client, url, point(100, 20), samiam={"interactive.semantic": False}))
    assert prediction["samiam"]["path"] == "weight-free" and not alone[2 * BAND:].any()


@pytest.mark.parametrize("items, extra, problem", [
    ([{"type": "polygonlabels", "value": {}}], {}, "keypointlabels or rectanglelabels"),
    ([point(100, 20, positive=False)], {}, "foreground point or a box"),
    ([{**point(100, 20), "value": {"x": "1", "y": 5}}], {}, "value.x must be a finite number"),
    ([keypoint(150, 10, width=SIDE, height=SIDE)], {}, "outside the 192x192 image"),
    ([point(100, 20), point(110, 25, positive=False)], {}, "cannot be split"),  # weight-free: no split
    ([point(100, 20)], {"samiam": {"interactive.semantic": "yes"}}, "must be true or false"),
    ([point(100, 20)], {"samiam": {"interactive.everything": True}}, "unknown option"),
    ([point(100, 20)], {"samiam": {"proposals.proposer": "sam"}}, "cannot be set per project or request"),
    ([point(100, 20)], {"label_config": "<View/>"}, "no <BrushLabels>"),
])
def test_hostile_contexts_answer_400_with_the_reason(embedded, items, extra, problem):
    client, url = embedded
    answer = click(client, url, *items, **extra)
    assert answer.status_code == 400 and problem in answer.get_json()["error"], answer.get_json()


def test_a_click_on_several_tasks_or_a_foreign_image_is_refused(embedded, label_studio):
    client, url = embedded
    body = {"tasks": [task(1, url), task(2, url)], "label_config": CONFIG, "project": PROJECT,
            "params": {"context": {"result": [point(100, 20)]}}}
    answer = client.post("/predict", json=body)
    assert answer.status_code == 400 and "about one task" in answer.get_json()["error"]
    foreign = click(client, "http://198.51.100.7/em.png", point(100, 20))
    assert foreign.status_code == 422 and foreign.get_json()["kind"] == "ImageFetchError", foreign.get_json()
    assert label_studio.predictions == []


def test_embedded_clicks_overtake_queued_pre_annotations(embedded, label_studio):
    client, url = embedded
    tasks = [task(10 + i, label_studio.add_file(f"big{i}.png", bands_png(seed=i + 1))) for i in range(6)]
    batch = predict_in_thread(client, tasks)
    wait_until(lambda: client.get("/jobs?project=1").get_json()["counts"]["running"], 60, "a prediction to run")
    mask, _, _ = region(click(client, url, point(100, 20)))
    assert mask[20, 100]
    assert client.get("/jobs?project=1").get_json()["counts"]["queued"] >= 1  # answered ahead of them
    batch["thread"].join(120)
    assert len(batch["response"].get_json()["results"]) == 6


# -- embedded mode, tiny SAM ---------------------------------------------------------------------

@pytest.mark.slow
def test_sam_clicks_with_negative_points_reuse_the_image_embedding(tmp_path, monkeypatch, label_studio):
    checkpoint = save_tiny_checkpoint(tmp_path)
    install_tiny_sam(monkeypatch, checkpoint)
    app = create_app(service_config(None, label_studio, settings=tiny_sam_settings(tmp_path)))
    client, url = app.test_client(), label_studio.add_file("bands.png", bands_png())
    try:
        engine = app.extensions["samiam"]["dispatcher"].runtime.engine()
        encoder_runs = []
        engine.proposer.model.image_encoder.register_forward_hook(lambda *args: encoder_runs.append(1))
        items = (point(100, 20), point(60, 90, positive=False))
        first, _, answer = region(click(client, url, *items))
        second, _, again = region(click(client, url, *items))
        assert answer["samiam"]["path"] == "sam" and answer["model_version"] == "test-v1/sam"
        assert (answer["samiam"]["encoder_ran"], again["samiam"]["encoder_ran"]) == (True, False)
        assert len(encoder_runs) == 1 and counters(client)["samiam_click_encoder_runs_total"] == 1
        predictor = SamPredictor(engine.proposer.model)  # what SAM itself answers to these clicks
        predictor.set_image(load_micrograph(bands_png()).rgb)  # the pixels the worker decodes
        masks, _, _ = predictor.predict(point_coords=np.array([[100.0, 20.0], [60.0, 90.0]]),
                                        point_labels=np.array([1, 0]), multimask_output=False)
        np.testing.assert_array_equal(first, masks[0])
        np.testing.assert_array_equal(second, masks[0])
    finally:
        app.extensions["samiam"]["dispatcher"].shutdown()


# -- routing -------------------------------------------------------------------------------------

def test_rendezvous_keeps_each_images_worker_when_another_worker_leaves():
    workers = [f"w{i}" for i in range(4)]
    keys = [f"1\0/data/upload/1/em{i}.png" for i in range(200)]
    first = {key: rendezvous(key, workers)[0] for key in keys}
    assert len(set(first.values())) == 4  # spread over every worker
    left = [w for w in workers if w != "w2"]
    for key in keys:  # only the images of the worker that left move
        assert rendezvous(key, left)[0] == (first[key] if first[key] != "w2" else rendezvous(key, workers)[1])
    key = keys[0]
    owner, runner_up = rendezvous(key, workers)[:2]
    assert pick_worker(key, dict.fromkeys(workers, False)) == owner
    assert pick_worker(key, {**dict.fromkeys(workers, False), owner: True}) == runner_up  # busy with a batch
    assert pick_worker(key, dict.fromkeys(workers, True)) is None and pick_worker(key, {}) is None


# -- Redis mode: real redis-server, real worker processes -----------------------------------------

needs_redis = pytest.mark.skipif(redis_server_bin() is None, reason="redis-server is not installed")
FAST_LEASE = {"job_lease_s": 2, "worker_heartbeat_s": 0.5}
"""A killed worker counts as gone after 2 s."""


def worker_env(redis_url: str, label_studio, **settings) -> dict[str, str]:
    return {"REDIS_URL": redis_url, "SAMIAM_MODEL_VERSION": "test-v1", "LABEL_STUDIO_URL": label_studio.url,
            "LABEL_STUDIO_API_KEY": TOKEN, "SAMIAM_JOB_LEASE_S": "2", "SAMIAM_WORKER_HEARTBEAT_S": "0.5",
            **settings}


def wait_for_workers(dispatcher, names: set[str], processes: dict, log_dir: Path, timeout_s: float = 120) -> None:
    """Wait until exactly ``names`` take clicks; fail at once with its log when a worker of
    ``processes`` (name -> Popen) that should live exits."""
    def listening():
        for name in names:
            if processes[name].poll() is not None:
                raise AssertionError(f"worker {name} exited: {(log_dir / f'{name}.log').read_text()[-2000:]}")
        return set(dispatcher.click_workers()) == names
    wait_until(listening, timeout_s, f"workers {sorted(names)} to listen")


@needs_redis
@pytest.mark.slow
def test_redis_clicks_stick_to_the_worker_holding_the_embedding_and_fall_back_when_it_dies(
        redis_server, label_studio, tmp_path):
    checkpoint = save_tiny_checkpoint(tmp_path)
    env = worker_env(redis_server.url, label_studio, SAMIAM_TINY_SAM_CHECKPOINT=str(checkpoint),
                     SAMIAM_PROPOSALS_PROPOSER="sam", SAMIAM_PROPOSALS_MODEL_TYPE=TINY_MODEL_TYPE,
                     SAMIAM_PROPOSALS_MODEL_DIR=str(tmp_path),
                     SAMIAM_PROPOSALS_DEVICE="cpu", PYTHONPATH=os.pathsep.join([str(TESTS), str(TESTS.parent)]))
    workers = {name: start_worker(env, name, tmp_path / f"{name}.log", module="tiny_sam_worker")
               for name in ("left", "right")}
    app = create_app(service_config(redis_server.url, label_studio, **FAST_LEASE))
    client, dispatcher = app.test_client(), app.extensions["samiam"]["dispatcher"]
    try:
        wait_for_workers(dispatcher, set(workers), workers, tmp_path)
        urls = [label_studio.add_file(f"em{i}.png", bands_png(seed=i)) for i in range(3)]
        items = (point(100, 20), point(60, 90, positive=False))
        answered_by = {}
        for url in urls:
            first, _, answer = region(click(client, url, *items))
            second, _, again = region(click(client, url, *items))
            assert answer["samiam"]["path"] == "sam" and answer["samiam"]["encoder_ran"]
            assert again["samiam"]["worker"] == answer["samiam"]["worker"] and not again["samiam"]["encoder_ran"]
            np.testing.assert_array_equal(first, second)
            answered_by[url] = answer["samiam"]["worker"]
        assert counters(client)["samiam_click_encoder_runs_total"] == 3  # once per image, not per click
        assert counters(client)["samiam_clicks_answered_total"] == 6

        gone = answered_by[urls[0]]
        os.kill(workers[gone].pid, signal.SIGKILL)
        workers[gone].wait(10)
        (survivor,) = set(workers) - {gone}
        wait_for_workers(dispatcher, {survivor}, workers, tmp_path, 10)
        _, _, answer = region(click(client, urls[0], *items))
        assert answer["samiam"]["worker"] == survivor and answer["samiam"]["encoder_ran"]
    finally:
        stop_all(list(workers.values()))


@needs_redis
@pytest.mark.slow
def test_redis_weight_free_clicks_overtake_queued_pre_annotation_jobs(redis_server, label_studio, tmp_path):
    impatient = create_app(service_config(redis_server.url, label_studio, click_deadline_s=1.0)).test_client()
    url = label_studio.add_file("bands.png", bands_png())
    late = click(impatient, url, point(100, 20))  # no worker yet
    assert late.status_code == 504 and "SAMIAM_CLICK_DEADLINE_S = 1 s" in late.get_json()["error"]
    app = create_app(service_config(redis_server.url, label_studio, predict_deadline_s=0.0, **FAST_LEASE))
    client, dispatcher = app.test_client(), app.extensions["samiam"]["dispatcher"]
    worker = start_worker(worker_env(redis_server.url, label_studio, SAMIAM_PROPOSALS_PROPOSER="classical"),
                          "cpu-1", tmp_path / "cpu-1.log")
    try:
        wait_for_workers(dispatcher, {"cpu-1"}, {"cpu-1": worker}, tmp_path)
        tasks = [task(10 + i, label_studio.add_file(f"big{i}.png", bands_png(seed=i + 1))) for i in range(6)]
        assert post_predict(client, tasks).get_json()["late"] == [t["id"] for t in tasks]
        queue = Queue(dispatcher.config.queue_name, connection=redis.Redis.from_url(redis_server.url))
        wait_until(lambda: dispatcher.click_workers() == {"cpu-1": True}, 30, "the worker to take a prediction job")
        mask, _, prediction = region(click(client, url, point(100, 20)))
        assert prediction["samiam"]["path"] == "weight-free" and prediction["samiam"]["worker"] == "cpu-1"
        assert mask[20, 100] and queue.count >= 1  # answered while pre-annotation jobs still wait
        wait_until(lambda: len(label_studio.predictions) == 6, 120, "the pre-annotations to be written back")
    finally:
        stop_all([worker])
