"""The web tier's routes (Flask test client) in embedded mode, with the real engine (classical
proposer) and a fake Label Studio serving images and receiving write-backs."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import hypothesis
import pytest
from fake_label_studio import LABEL_CONFIG, PROJECT, TOKEN, task, two_texture_png
from hypothesis import strategies as st
from service_helpers import CLASSICAL, post_predict

from samiam.errors import SettingsError
from samiam.labelstudio.results import materials_from_results
from samiam.service import ServiceConfig, create_app

ROOT = Path(__file__).resolve().parents[1]
NO_BRUSH_CONFIG = '<View><Image name="image" value="$image"/><Choices name="c" toName="image">' \
                  '<Choice value="a"/></Choices></View>'


def make_config(**changes) -> ServiceConfig:
    return ServiceConfig(**{"model_version": "test-v1", "settings": CLASSICAL,
                            "writeback_retry_intervals_s": (0,), **changes})


@pytest.fixture
def make_app():
    apps = []

    def make(**changes):
        app = create_app(make_config(**changes))
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["samiam"]["dispatcher"].shutdown()


@pytest.fixture
def client(make_app, label_studio):
    """Embedded app whose projects are set up with the fake Label Studio as /setup would."""
    app = make_app()
    client = app.test_client()
    answer = client.post("/setup", json={"project": "1.1700000000", "schema": LABEL_CONFIG,
                                         "hostname": label_studio.url, "access_token": TOKEN})
    assert answer.status_code == 200
    return client



def wait_for_state(client, task_id: int, state: str, timeout_s: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        records = {r["task"]: r for r in client.get("/jobs?project=1").get_json()["tasks"]}
        if records.get(task_id, {}).get("state") == state:
            return records[task_id]
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} never reached {state!r}: {records.get(task_id)}")


# -- Label Studio's routes -------------------------------------------------------------------

def test_health_answers_up_in_embedded_mode(make_app):
    body = make_app().test_client().get("/health").get_json()
    assert body["status"] == "UP" and body["mode"] == "embedded" and body["redis"] == "not used"
    assert body["workers"] == 1 and body["ready"] is True and body["model_class"] == "SamiamModel"


def test_setup_returns_the_model_version_and_loads_no_model(make_app, label_studio):
    app = make_app()
    answer = app.test_client().post("/setup", json={"project": "7.1700000000", "schema": LABEL_CONFIG,
                                                    "hostname": label_studio.url, "access_token": TOKEN})
    assert answer.status_code == 200 and answer.get_json() == {"model_version": "test-v1"}
    store, dispatcher = app.extensions["samiam"]["store"], app.extensions["samiam"]["dispatcher"]
    assert store.project("7") == {"hostname": label_studio.url, "access_token": TOKEN, "overrides": {}}
    assert not dispatcher.runtime.engine_loaded


@pytest.mark.parametrize("schema", ["", NO_BRUSH_CONFIG, "<View><Image"])
def test_setup_refuses_a_config_without_brush_labels(make_app, schema):
    answer = make_app().test_client().post("/setup", json={"project": "1.1", "schema": schema})
    assert answer.status_code == 400
    assert "BrushLabels" in answer.get_json()["error"] and answer.get_json()["kind"] == "LabelConfigError"


def test_predict_answers_one_prediction_per_task_in_order(client, label_studio):
    shapes = [(128, 128), (96, 112)]
    tasks = [task(10 + i, label_studio.add_file(f"em{i}.png", two_texture_png(*shape)))
             for i, shape in enumerate(shapes)]
    answer = post_predict(client, tasks)
    assert answer.status_code == 200
    results = answer.get_json()["results"]
    assert len(results) == 2
    for prediction, (height, width) in zip(results, shapes):
        assert prediction["model_version"] == "test-v1" and prediction["result"]
        assert 0 <= prediction["score"] <= 1
        region = prediction["result"][0]
        assert (region["original_height"], region["original_width"]) == (height, width)
        assert region["from_name"] == "tag" and region["to_name"] == "image"
        masks, labels = materials_from_results(prediction["result"])
        assert masks.shape[1:] == (height, width) and set(labels) <= {"Material 1", "Material 2"}
        assert masks.any() and masks.sum(axis=0).max() == 1  # non-empty, disjoint materials
    assert label_studio.predictions == []  # answered in time: nothing written back
    states = client.get("/jobs?project=1").get_json()
    assert states["counts"]["answered"] == 2 and states["project"] == "1"


def test_a_repeated_image_comes_from_the_cache(client, label_studio):
    url = label_studio.add_file("em.png", two_texture_png(128, 128))
    first = post_predict(client, [task(1, url)]).get_json()["results"][0]
    second = post_predict(client, [task(2, url)]).get_json()["results"][0]
    regions = [[{k: v for k, v in region.items() if k != "id"} for region in p["result"]] for p in (first, second)]
    assert regions[0] == regions[1]  # the same regions; their ids carry each task's delivery key
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "samiam_cache_hits_total 1\n" in metrics and "samiam_cache_misses_total 1\n" in metrics


def test_failed_tasks_are_reported_and_the_good_one_is_written_back(client, label_studio):
    good = label_studio.add_file("good.png", two_texture_png(128, 128))
    not_image = label_studio.add_file("notes.png", b"just some text, not an image", "text/plain")
    tasks = [task(1, good), task(2, not_image), task(3, "http://203.0.113.9/foreign.png"),
             task(4, "/data/upload/1/missing.png")]
    answer = post_predict(client, tasks)
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["results"] == []  # Label Studio would store an empty prediction for a failed task
    # /predict answers at the first failure (task 2, after task 1 in the one embedded thread);
    # tasks 3 and 4 fail a moment later, in the answer or after it (then listed as late).
    reported = {f["task"]: f["reason"] for f in body["failed"]}
    assert "not an image" in reported[2]
    assert sorted([*reported, *body["late"], *body["written_back"]]) == [1, 2, 3, 4]
    assert 1 not in reported
    reasons = {i: wait_for_state(client, i, "failed")["reason"] for i in (2, 3, 4)}
    assert "not an image" in reasons[2] and "refused" in reasons[3] and "404" in reasons[4]
    wait_for_state(client, 1, "written")
    assert [p["task"] for p in label_studio.predictions] == [1]
    assert label_studio.predictions[0]["result"] and label_studio.predictions[0]["model_version"] == "test-v1"
    states = client.get("/jobs?project=1").get_json()
    assert states["counts"]["failed"] == 3 and states["counts"]["written"] == 1
    page = client.get("/").get_data(as_text=True)
    assert "not an image" in page and "http-equiv=\"refresh\"" in page


def test_past_the_deadline_the_answer_is_empty_and_predictions_are_written_back(make_app, label_studio):
    client = make_app(predict_deadline_s=0.0, label_studio_url=label_studio.url,
                      label_studio_api_key=TOKEN).test_client()
    tasks = [task(i, label_studio.add_file(f"em{i}.png", two_texture_png(128, 96 + 16 * i))) for i in (1, 2)]
    answer = post_predict(client, tasks).get_json()
    assert answer["results"] == [] and answer["failed"] == []
    assert sorted(answer["late"] + answer["written_back"]) == [1, 2]
    for task_id in (1, 2):
        wait_for_state(client, task_id, "written")
    stored = {p["task"]: p for p in label_studio.predictions}
    assert sorted(stored) == [1, 2] and len(label_studio.predictions) == 2  # each exactly once
    for task_id in (1, 2):
        masks, _ = materials_from_results(stored[task_id]["result"])
        assert masks.shape[1:] == (128, 96 + 16 * task_id) and stored[task_id]["model_version"] == "test-v1"


def test_a_refused_write_back_is_retried_then_recorded_as_failed(make_app, label_studio):
    client = make_app(predict_deadline_s=0.0, label_studio_url=label_studio.url, label_studio_api_key=TOKEN,
                      writeback_retry_intervals_s=(0, 0)).test_client()
    label_studio.refuse_next_writes = 3
    post_predict(client, [task(5, label_studio.add_file("em.png", two_texture_png(128, 128)))])
    record = wait_for_state(client, 5, "writeback_failed")
    assert "400" in record["reason"] and label_studio.refused_writes == 3 and label_studio.predictions == []
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "samiam_writebacks_failed_total 1\n" in metrics and "samiam_writeback_retries_total 2\n" in metrics


def test_project_overrides_from_extra_params_apply_and_requests_override_them(client, label_studio):
    bad = client.post("/setup", json={"project": "2.1", "schema": LABEL_CONFIG, "extra_params": {"nope.x": 1}})
    assert bad.status_code == 400 and "unknown setting" in bad.get_json()["error"]
    answer = client.post("/setup", json={"project": "1.1700000000", "schema": LABEL_CONFIG,
                                         "hostname": label_studio.url, "access_token": TOKEN,
                                         "extra_params": {"merging.materials": 1}})
    assert answer.status_code == 200
    url = label_studio.add_file("em.png", two_texture_png(128, 128))
    one = post_predict(client, [task(1, url)]).get_json()["results"][0]
    assert len(one["result"]) == 1  # K = 1 for the whole project
    too_many = post_predict(client, [task(2, url)], params={"samiam": {"merging.materials": 3}})
    assert too_many.status_code == 400 and "only 2 brush labels" in too_many.get_json()["error"]


@pytest.mark.parametrize("body, message", [
    ("{not json", "JSON object"),
    (json.dumps([1, 2]), "JSON object"),
    (json.dumps({"label_config": LABEL_CONFIG}), "non-empty list"),
    (json.dumps({"tasks": [{"data": {}}], "label_config": LABEL_CONFIG}), "integer 'id'"),
    (json.dumps({"tasks": [task(1, "a"), task(1, "b")], "label_config": LABEL_CONFIG}), "repeat"),
    (json.dumps({"tasks": [task(1, "a")], "label_config": NO_BRUSH_CONFIG}), "BrushLabels"),
    (json.dumps({"tasks": [task(1, "a")], "label_config": LABEL_CONFIG,
                 "params": {"samiam": {"merging.nope": 1}}}), "unknown setting"),
    (json.dumps({"tasks": [task(1, "a")], "label_config": LABEL_CONFIG,
                 "params": {"samiam": {"merging.materials": 5}}}), "only 2 brush labels"),
])
def test_bad_predict_requests_get_400_with_a_message(make_app, body, message):
    answer = make_app().test_client().post("/predict", data=body, content_type="application/json")
    assert answer.status_code == 400 and message in answer.get_json()["error"]


def test_webhook_versions_and_unknown_routes(make_app):
    client = make_app().test_client()
    started = time.perf_counter()
    answer = client.post("/webhook", json={"action": "PROJECT_UPDATED", "project": {"id": 1}})
    assert answer.status_code == 200 and answer.get_json()["status"] == "ignored"
    assert time.perf_counter() - started < 1.0
    assert client.get("/versions").get_json() == {"versions": ["test-v1"]}
    assert client.get("/nope").status_code == 404 and "error" in client.get("/nope").get_json()
    assert client.get("/jobs").status_code == 400


def test_basic_auth_protects_every_route(make_app):
    client = make_app(basic_auth_user="ls", basic_auth_pass="s3cret").test_client()
    good = {"Authorization": "Basic " + base64.b64encode(b"ls:s3cret").decode()}
    bad = {"Authorization": "Basic " + base64.b64encode(b"ls:wrong").decode()}
    for path in ("/health", "/metrics", "/", "/versions", "/jobs?project=1"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers=bad).status_code == 401
        assert client.get(path, headers=good).status_code == 200
    assert client.post("/setup", json={"schema": LABEL_CONFIG}).status_code == 401
    assert client.post("/setup", json={"schema": LABEL_CONFIG}, headers=good).status_code == 200


def test_metrics_is_prometheus_text_with_a_cumulative_histogram(client, label_studio):
    post_predict(client, [task(1, label_studio.add_file("em.png", two_texture_png(128, 128)))])
    answer = client.get("/metrics")
    assert answer.mimetype == "text/plain"
    samples = {}
    for line in answer.get_data(as_text=True).splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    assert samples["samiam_jobs_queued_total"] == samples["samiam_jobs_finished_total"] == 1
    buckets = [v for k, v in samples.items() if k.startswith("samiam_task_seconds_bucket")]
    assert buckets == sorted(buckets) and buckets[-1] == samples["samiam_task_seconds_count"] == 1
    assert 'samiam_task_seconds_bucket{le="+Inf"}' in samples and samples["samiam_task_seconds_sum"] > 0


# -- entry points ----------------------------------------------------------------------------

def test_the_web_tier_never_imports_torch_when_redis_is_used():
    code = "import sys, _wsgi; assert _wsgi.app; print('torch' in sys.modules)"
    env = {**os.environ, "REDIS_URL": "redis://127.0.0.1:1/0"}  # never contacted at import
    out = subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_worker_command_without_redis_url_explains_itself(monkeypatch, capsys):
    from samiam.cli import main
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert main(["worker", "--burst"]) == 2
    assert "needs REDIS_URL" in capsys.readouterr().err


def test_service_config_reads_the_environment():
    config = ServiceConfig.from_env({"REDIS_URL": "redis://r:6379/0", "PREDICT_DEADLINE_S": "12.5",
                                     "SAMIAM_WRITEBACK_RETRY_INTERVALS_S": "1, 2,3",
                                     "SAMIAM_IMAGE_HOSTS": "a.example, b.example:8080",
                                     "SAMIAM_MERGING_MATERIALS": "3", "BASIC_AUTH_USER": ""})
    assert config.redis_url == "redis://r:6379/0" and not config.embedded
    assert config.predict_deadline_s == 12.5 and config.writeback_retry_intervals_s == (1, 2, 3)
    assert config.image_hosts == ("a.example", "b.example:8080") and config.settings.merging.materials == 3
    assert not config.auth_required and ServiceConfig.from_env({}).embedded


# -- untrusted input -------------------------------------------------------------------------

class Canary:
    """An HTTP server on loopback that records every request it gets and answers 404."""

    def __init__(self):
        self.requests: list[dict] = []
        canary = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                canary.requests.append({"path": self.path, "headers": dict(self.headers)})
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_GET

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def canary():
    server = Canary()
    yield server
    server.close()


def no_traceback_logged(caplog) -> bool:
    return not any(record.exc_info or "Traceback" in record.getMessage() for record in caplog.records)


def test_an_unauthenticated_setup_cannot_move_a_project_to_another_host(client, label_studio, canary, caplog):
    attack = client.post("/setup", json={"project": "1.1700000000", "schema": LABEL_CONFIG,
                                         "hostname": canary.url, "access_token": "attacker"})
    assert attack.status_code == 403 and "may not move it" in attack.get_json()["error"]
    assert any(r.levelname == "WARNING" and "refused /setup" in r.getMessage() and "may not move it" in r.getMessage()
               for r in caplog.records)
    answer = post_predict(client, [task(1, label_studio.add_file("em.png", two_texture_png(128, 128)))])
    assert answer.get_json()["results"] and label_studio.downloads == 1
    assert canary.requests == []
    same_host = client.post("/setup", json={"project": "1.1700000000", "schema": LABEL_CONFIG,
                                            "hostname": label_studio.url + "/", "access_token": TOKEN})
    assert same_host.status_code == 200


def test_a_configured_label_studio_url_always_wins_over_setup(make_app, label_studio, canary):
    client = make_app(label_studio_url=label_studio.url).test_client()
    answer = client.post("/setup", json={"project": "1.1700000000", "schema": LABEL_CONFIG,
                                         "hostname": canary.url, "access_token": TOKEN})
    assert answer.status_code == 200
    prediction = post_predict(client, [task(1, label_studio.add_file("em.png", two_texture_png(128, 128)))])
    assert prediction.get_json()["results"] and label_studio.downloads == 1  # /setup's token, LS's origin
    assert canary.requests == []


def test_with_basic_auth_label_studio_may_move_its_project(make_app, label_studio, canary):
    client = make_app(basic_auth_user="ls", basic_auth_pass="s3cret").test_client()
    auth = {"Authorization": "Basic " + base64.b64encode(b"ls:s3cret").decode()}
    for hostname in (canary.url, label_studio.url):
        answer = client.post("/setup", headers=auth, json={"project": "1.1", "schema": LABEL_CONFIG,
                                                           "hostname": hostname, "access_token": TOKEN})
        assert answer.status_code == 200
    store = client.application.extensions["samiam"]["store"]
    assert store.project("1")["hostname"] == label_studio.url


@pytest.mark.parametrize("hostname", ["ftp://ls.example", "http://user@ls.example", "http://ls.example\\@evil",
                                      "http://ls .example", "http://ls.example:99999", "http://", ["http://a"]])
def test_setup_refuses_a_hostname_that_is_not_a_plain_http_url(make_app, hostname):
    answer = make_app().test_client().post("/setup", json={"project": "1.1", "schema": LABEL_CONFIG,
                                                           "hostname": hostname, "access_token": TOKEN})
    assert answer.status_code == 403 and "plain http(s) URL" in answer.get_json()["error"]


def test_an_api_key_without_label_studio_url_is_refused_at_start():
    with pytest.raises(SettingsError, match="LABEL_STUDIO_API_KEY needs LABEL_STUDIO_URL"):
        ServiceConfig.from_env({"LABEL_STUDIO_API_KEY": TOKEN})
    with pytest.raises(SettingsError, match="BASIC_AUTH_PASS"):
        ServiceConfig.from_env({"BASIC_AUTH_USER": "ls"})


@pytest.mark.parametrize("check_s, ttl_s", [("-1", "86400"), ("600", "600"), ("900", "600")])
def test_an_answer_check_the_batch_does_not_outlive_is_refused_at_start(check_s, ttl_s):
    with pytest.raises(SettingsError, match="SAMIAM_ANSWER_CHECK_S=.* below SAMIAM_RESULT_TTL_S"):
        ServiceConfig.from_env({"SAMIAM_ANSWER_CHECK_S": check_s, "SAMIAM_RESULT_TTL_S": ttl_s})
    assert ServiceConfig.from_env({"SAMIAM_ANSWER_CHECK_S": "599", "SAMIAM_RESULT_TTL_S": "600"}).answer_check_s == 599


@pytest.mark.parametrize("password", ["pässwörd", "s3cret"])
def test_basic_auth_with_non_ascii_passwords(make_app, password, caplog):
    client = make_app(basic_auth_user="ls", basic_auth_pass=password).test_client()

    def header(user: bytes, secret: bytes) -> dict:
        return {"Authorization": "Basic " + base64.b64encode(user + b":" + secret).decode()}

    assert client.get("/health", headers=header(b"ls", password.encode("utf-8"))).status_code == 200  # curl
    assert client.get("/health", headers=header(b"ls", password.encode("latin-1"))).status_code == 200  # LS
    for wrong in ("pässwort".encode(), b"s3cre", "s3crét".encode(), b"\xff\xfe"):
        assert client.get("/health", headers=header(b"ls", wrong)).status_code == 401
    assert client.get("/health", headers={"Authorization": "Basic ä"}).status_code == 401
    assert client.get("/health", headers={"Authorization": "Basic !!!"}).status_code == 401
    assert no_traceback_logged(caplog)


LS_TASK = {"id": 1, "data": {"image": "/data/upload/1/a.png"}}


@pytest.mark.parametrize("body, message", [
    ({"tasks": [LS_TASK], "label_config": ["<View/>"]}, "must be a string of XML, not list"),
    ({"tasks": [LS_TASK], "label_config": 7}, "must be a string of XML, not int"),
    ({"tasks": [LS_TASK], "label_config": LABEL_CONFIG, "params": ["samiam"]}, "'params' must be an object"),
    ({"tasks": [LS_TASK], "label_config": LABEL_CONFIG, "params": {"samiam": [1]}}, "must map setting names"),
    ({"tasks": [LS_TASK], "label_config": LABEL_CONFIG, "params": {"samiam": {"merging.materials": "three"}}},
     "is not an integer"),
    ({"tasks": [LS_TASK], "label_config": LABEL_CONFIG, "params": {"samiam": {"merging.materials": [2]}}},
     "is not an integer"),
    ({"tasks": [LS_TASK], "label_config": LABEL_CONFIG, "params": {"samiam": {"merging.materials": 0}}},
     "at least one material"),
    ({"tasks": [{"id": True, "data": {}}], "label_config": LABEL_CONFIG}, "integer 'id'"),
    ({"tasks": [LS_TASK], "label_config": LABEL_CONFIG, "project": {"id": 1}}, "project id"),
    ({"tasks": [LS_TASK], "label_config": LABEL_CONFIG, "project": "1." + "7" * 200}, "project id"),
    ({"tasks": [LS_TASK], "label_config": "<!DOCTYPE v [<!ENTITY a 'b'>]><View>&a;</View>"}, "document type"),
])
def test_bad_input_answers_400_with_the_reason_and_no_traceback(make_app, body, message, caplog):
    answer = make_app().test_client().post("/predict", json=body)
    assert answer.status_code == 400 and message in answer.get_json()["error"]
    assert no_traceback_logged(caplog)


@pytest.mark.parametrize("body, message", [
    ({"schema": {"xml": LABEL_CONFIG}}, "must be a string of XML, not dict"),
    ({"schema": LABEL_CONFIG, "extra_params": "merging.materials=3"}, "must map setting names"),
    ({"schema": LABEL_CONFIG, "extra_params": {"merging.materials": "three"}}, "is not an integer"),
    ({"schema": LABEL_CONFIG, "project": ["1"]}, "project id"),
    ({"schema": LABEL_CONFIG, "project": "1.1", "hostname": "http://ls:8080", "access_token": 5},
     "access_token must be a token"),
])
def test_bad_setup_answers_400_or_403_with_the_reason_and_a_warning(make_app, body, message, caplog):
    answer = make_app().test_client().post("/setup", json=body)
    assert answer.status_code in (400, 403) and message in answer.get_json()["error"]
    assert [r.levelname for r in caplog.records if "refused /setup" in r.getMessage()] == ["WARNING"]
    assert no_traceback_logged(caplog)


def test_deeply_nested_json_answers_400(make_app):
    body = "[" * 100_000 + "]" * 100_000
    answer = make_app().test_client().post("/predict", data=body, content_type="application/json")
    assert answer.status_code == 400 and "nested too deeply" in answer.get_json()["error"]


def test_request_size_and_task_count_are_capped(make_app):
    assert (ServiceConfig().max_tasks_per_request, ServiceConfig().max_request_bytes) == (10_000, 64 * 2**20)
    client = make_app(max_tasks_per_request=2, max_request_bytes=2000).test_client()
    tasks = [{"id": i, "data": {"image": f"/data/upload/1/{i}.png"}} for i in range(3)]
    too_many = client.post("/predict", json={"tasks": tasks, "label_config": LABEL_CONFIG})
    assert too_many.status_code == 413 and "SAMIAM_MAX_TASKS_PER_REQUEST = 2" in too_many.get_json()["error"]
    too_large = client.post("/predict", json={"tasks": tasks[:1], "label_config": LABEL_CONFIG + " " * 2000})
    assert too_large.status_code == 413
    assert too_large.get_json() == {"error": "the request body is larger than SAMIAM_MAX_REQUEST_BYTES = 2000 bytes",
                                    "kind": "RequestTooLargeError"}


def test_jobs_get_the_parsed_request_not_the_raw_config(client, label_studio):
    dispatcher = client.application.extensions["samiam"]["dispatcher"]
    submitted = []
    submit = dispatcher.submit_predictions
    dispatcher.submit_predictions = lambda *args: (submitted.append(args), submit(*args))
    url = label_studio.add_file("em.png", two_texture_png(128, 128))
    assert post_predict(client, [task(1, url)], params={"samiam": {"merging.crop_size": "48"}}).get_json()["results"]
    (([request], _batch),) = submitted
    assert json.loads(json.dumps(request)) == request and LABEL_CONFIG not in json.dumps(request)
    assert request["brush"] == {"from_name": "tag", "to_name": "image", "value_key": "image",
                                "labels": ["Material 1", "Material 2"]}
    assert request["settings"] == {"merging.crop_size": 48, "merging.max_materials": 2}
    assert (request["task_id"], request["image_url"], request["project"]) == (1, url, PROJECT)


def test_one_image_in_two_label_configs_gets_each_configs_regions(client, label_studio):
    other = LABEL_CONFIG.replace('name="tag"', 'name="phase"').replace("Material 1", "Oxide")
    url = label_studio.add_file("em.png", two_texture_png(128, 128))
    first = post_predict(client, [task(1, url)]).get_json()["results"][0]["result"]
    second = post_predict(client, [task(2, url)], label_config=other).get_json()["results"][0]["result"]
    assert {r["from_name"] for r in first} == {"tag"} and {r["from_name"] for r in second} == {"phase"}
    assert "Oxide" in {r["value"]["brushlabels"][0] for r in second}


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8)
"""Any JSON value (and NaN/Infinity, which Flask's JSON reader accepts)."""

FUZZ_BODIES = {
    "/predict": {"tasks": [{"id": 1, "data": {"image": "/data/upload/1/a.png"}, "project": 1}],
                 "label_config": LABEL_CONFIG, "project": PROJECT, "params": {"samiam": {"merging.materials": 2}}},
    "/setup": {"project": "1.1", "schema": LABEL_CONFIG, "hostname": "http://127.0.0.1:9",
               "access_token": TOKEN, "extra_params": {"merging.materials": 1}},
    "/webhook": {"action": "ANNOTATION_CREATED", "project": {"id": 1, "label_config": LABEL_CONFIG},
                 "task": {"id": 1, "data": {"image": "/data/upload/1/a.png"}},
                 "annotation": {"id": 3, "result": [], "updated_at": "2026-01-01T00:00:00Z"}},
}


def _places(value, path=()):
    """Every path into ``value`` (dict keys and list indices), the empty path (the whole body) first."""
    yield path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, inner in items:
        yield from _places(inner, (*path, key))


def _with(body, path, value):
    if not path:
        return value
    body = json.loads(json.dumps(body))
    inner = body
    for key in path[:-1]:
        inner = inner[key]
    inner[path[-1]] = value
    return body


@pytest.mark.parametrize("route", sorted(FUZZ_BODIES))
def test_json_routes_never_answer_500_to_wrong_values_anywhere(make_app, route, caplog):
    client = make_app(predict_deadline_s=2.0).test_client()
    template = FUZZ_BODIES[route]
    places = list(_places(template))

    @hypothesis.settings(max_examples=150, deadline=None, suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(place=st.sampled_from(places), value=JSON_VALUES)
    def check(place, value):
        answer = client.post(route, data=json.dumps(_with(template, place, value)), content_type="application/json")
        assert answer.status_code < 500, (place, value, answer.get_data(as_text=True))
        assert answer.is_json

    check()
    assert no_traceback_logged(caplog)
