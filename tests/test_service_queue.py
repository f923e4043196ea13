"""The Redis mode: a real redis-server, real RQ SimpleWorkers (a ``samiam worker`` subprocess and
in-process burst workers), the real engine (classical proposer) and a fake Label Studio."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
from fake_label_studio import PROJECT, TOKEN, FakeLabelStudio, task, two_texture_png
from redis_server import RedisServer, redis_server_bin
from rq import Queue
from rq.registry import FailedJobRegistry
from service_helpers import counters, post_predict, predict_in_thread, service_config
from service_processes import wait_until

from samiam.errors import QueueUnavailableError, WriteBackError
from samiam.labelstudio.delivery import delivery_key, stamp
from samiam.labelstudio.results import materials_from_results
from samiam.service import ServiceConfig, create_app, jobs
from samiam.service.memory_mode import MemoryStore
from samiam.service.redis_mode import RedisStore, RQDispatcher, connect, make_store
from samiam.service.worker import run_worker

pytestmark = pytest.mark.skipif(redis_server_bin() is None, reason="redis-server is not installed")

ROOT = Path(__file__).resolve().parents[1]


class Killed(BaseException):
    """The process died here."""


# -- the batch hand-over, on both stores -------------------------------------------------------

@pytest.fixture(params=["redis", "memory"])
def store(request, tmp_path):
    if request.param == "memory":
        yield MemoryStore((1.0,), 10)
        return
    with RedisServer(tmp_path / "redis") as server:
        config = ServiceConfig(redis_url=server.url)
        yield make_store(config, connect(config, 1.0))


def test_deposits_before_the_close_go_to_the_closer_and_after_it_to_the_job(store):
    store.open_batch("b", PROJECT, time.time() + 60)
    assert store.deposit("b", 1, {"ok": True, "prediction": {"result": [1]}})
    assert store.deposit("b", 2, {"ok": False, "reason": "not an image"})
    assert store.progress("b") == (2, 1)
    assert store.close_batch("b") == {"1": {"ok": True, "prediction": {"result": [1]}},
                                      "2": {"ok": False, "reason": "not an image"}}
    assert store.close_batch("b") is None  # closed once: nobody hands the outcomes over twice
    assert not store.deposit("b", 3, {"ok": True, "prediction": {}})  # the job must write back
    assert store.deposit("b", 1, {"ok": True, "prediction": {}})  # a re-run: the closer delivered it
    assert not store.deposit("never-opened", 3, {"ok": True, "prediction": {}})


def test_a_deposit_after_the_waiters_deadline_is_left_to_the_job(store):
    store.open_batch("gone", PROJECT, time.time() - 1)  # its /predict died, the grace has passed
    assert not store.deposit("gone", 1, {"ok": True, "prediction": {"result": [1]}})
    assert store.progress("gone") == (0, 0)


def test_a_batch_closed_for_a_check_is_checked_once_when_due(store):
    store.open_batch("answered", PROJECT, time.time() + 60)
    store.open_batch("unchecked", PROJECT, time.time() + 60)
    store.open_batch("handed", PROJECT, time.time() + 0.1)
    assert store.deposit("answered", 1, {"ok": True, "prediction": {"result": [1]}})
    assert store.deposit("handed", 2, {"ok": True, "prediction": {"result": [2]}})
    assert store.close_batch("answered", check_at=time.time() + 0.3) is not None
    assert store.close_batch("unchecked") is not None
    time.sleep(0.15)
    assert store.sweep_expired_batches(check_at=time.time() + 0.15) == [
        (PROJECT, {"2": {"ok": True, "prediction": {"result": [2]}}})]
    assert store.sweep_answered_batches() == []
    time.sleep(0.4)
    assert sorted(store.sweep_answered_batches(), key=lambda due: due.handed_over) == [
        (PROJECT, {"1": {"ok": True, "prediction": {"result": [1]}}}, False),
        (PROJECT, {"2": {"ok": True, "prediction": {"result": [2]}}}, True)]
    assert store.sweep_answered_batches() == []


def test_a_claim_has_one_holder_until_it_releases_it_or_it_expires(store):
    assert store.claim("delivery:k", "first", 0.3)
    assert not store.claim("delivery:k", "second", 60)
    store.release("delivery:k", "second")  # not its holder: nothing happens
    assert not store.claim("delivery:k", "second", 60)
    time.sleep(0.4)  # the first holder died without releasing it
    assert store.claim("delivery:k", "second", 60)
    store.release("delivery:k", "first")  # a late release by the dead holder frees nothing
    assert not store.claim("delivery:k", "third", 60)
    store.release("delivery:k", "second")
    assert store.claim("delivery:k", "third", 60)


def test_expired_open_batches_are_swept_once(store):
    store.open_batch("gone", PROJECT, time.time() + 0.3)
    store.open_batch("waiting", PROJECT, time.time() + 60)
    assert store.deposit("gone", 1, {"ok": True, "prediction": {"result": [1]}})
    assert store.deposit("waiting", 2, {"ok": True, "prediction": {"result": [2]}})
    assert store.sweep_expired_batches(check_at=time.time() + 60) == []
    time.sleep(0.4)
    assert store.sweep_expired_batches(check_at=time.time() + 60) == [
        (PROJECT, {"1": {"ok": True, "prediction": {"result": [1]}}})]
    assert store.sweep_expired_batches(check_at=time.time() + 60) == []
    assert store.close_batch("gone") is None  # its web tier, back too late, delivers nothing
    assert store.close_batch("waiting") == {"2": {"ok": True, "prediction": {"result": [2]}}}


def test_concurrent_deposits_and_close_deliver_every_outcome_exactly_once(store):
    for round_ in range(5):
        batch, delivered_by_jobs = f"race{round_}", []
        store.open_batch(batch, PROJECT, time.time() + 60)

        def job(task_id, batch=batch, delivered=delivered_by_jobs):
            if not store.deposit(batch, task_id, {"ok": True, "prediction": {}}):
                delivered.append(str(task_id))

        threads = [threading.Thread(target=job, args=(i,)) for i in range(20)]
        for thread in threads[:10]:
            thread.start()
        closed = store.close_batch(batch)
        for thread in threads[10:]:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(list(closed) + delivered_by_jobs, key=int) == [str(i) for i in range(20)]


def test_project_stats_count_per_label_studio_project_id(store):
    store.count_for_project("5.1796079499", "computed", 3)
    store.count_for_project("5.1796079499", "delivered", 2)
    store.count_for_project(5, "delivered")
    store.record_failure({"project": "5.1796079499", "task": 9, "state": "failed", "reason": "not an image"})
    assert store.project_stats() == {"5": {"computed": 3, "delivered": 3, "failed": 0,
                                           "last_failure": "not an image"}}
    assert store.failures()[0]["project"] == "5"


# -- web tier + workers --------------------------------------------------------------------------

def test_a_worker_process_answers_predict_and_shows_its_device(redis_server, label_studio, tmp_path):
    config = service_config(redis_server.url, label_studio)
    client = create_app(config).test_client()
    assert client.get("/health").get_json() == {
        "status": "UP", "model_class": "SamiamModel", "model_version": "test-v1", "mode": "redis",
        "redis": "ok", "workers": 0, "ready": False}
    env = {**os.environ, "REDIS_URL": redis_server.url, "SAMIAM_PROPOSALS_PROPOSER": "classical",
           "SAMIAM_MODEL_VERSION": "test-v1", "LABEL_STUDIO_URL": label_studio.url,
           "LABEL_STUDIO_API_KEY": TOKEN}
    with open(tmp_path / "worker.log", "wb") as log:
        worker = subprocess.Popen([sys.executable, "-m", "samiam.cli", "worker", "--name", "gpu-test"],
                                  cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: client.get("/health").get_json()["workers"] == 1 or worker.poll() is not None,
                   60, "the worker to register")
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()
        page = client.get("/").get_data(as_text=True)
        assert "gpu-test" in page and "classical on cpu" in page
        shapes = [(128, 128), (112, 96)]
        tasks = [task(i, label_studio.add_file(f"em{i}.png", two_texture_png(*s))) for i, s in enumerate(shapes)]
        answer = post_predict(client, tasks)
        results = answer.get_json()["results"]
        assert answer.status_code == 200 and len(results) == 2
        for prediction, shape in zip(results, shapes):
            masks, _ = materials_from_results(prediction["result"])
            assert masks.shape[1:] == shape and prediction["model_version"] == "test-v1"
        assert client.get("/jobs?project=1").get_json()["counts"]["answered"] == 2
        assert label_studio.predictions == []
    finally:
        worker.terminate()  # by PID: a warm shutdown
        worker.wait(30)
    assert client.get("/health").get_json()["workers"] == 0


def test_late_predictions_reach_label_studio_through_the_api(redis_server, label_studio):
    config = service_config(redis_server.url, label_studio, predict_deadline_s=0.3)
    client = create_app(config).test_client()
    tasks = [task(i, label_studio.add_file(f"em{i}.png", two_texture_png(128, 112 + i))) for i in (1, 2)]
    answer = post_predict(client, tasks)
    assert answer.get_json() == {"results": [], "failed": [], "late": [1, 2], "written_back": []}
    states = client.get("/jobs?project=1").get_json()
    assert states["counts"]["queued"] == 2
    assert run_worker(config, burst=True)  # predicts, then writes back (same queue, same burst)
    stored = {p["task"]: p for p in label_studio.predictions}
    assert sorted(stored) == [1, 2] and len(label_studio.predictions) == 2
    for task_id in (1, 2):
        masks, _ = materials_from_results(stored[task_id]["result"])
        assert masks.shape[1:] == (128, 112 + task_id) and stored[task_id]["model_version"] == "test-v1"
    assert client.get("/jobs?project=1").get_json()["counts"]["written"] == 2
    assert "samiam_writebacks_ok_total 2\n" in client.get("/metrics").get_data(as_text=True)


def test_write_backs_are_retried_by_rq_then_recorded_as_failed(redis_server, label_studio):
    config = service_config(redis_server.url, label_studio, predict_deadline_s=0.0, writeback_retry_intervals_s=(0, 0))
    client = create_app(config).test_client()
    label_studio.refuse_next_writes = 1
    post_predict(client, [task(1, label_studio.add_file("a.png", two_texture_png(128, 128)))])
    run_worker(config, burst=True)
    assert [p["task"] for p in label_studio.predictions] == [1] and label_studio.refused_writes == 1

    label_studio.refuse_next_writes = 3
    post_predict(client, [task(2, label_studio.add_file("b.png", two_texture_png(96, 96)))])
    run_worker(config, burst=True)
    assert [p["task"] for p in label_studio.predictions] == [1]
    record = {r["task"]: r for r in client.get("/jobs?project=1").get_json()["tasks"]}[2]
    assert record["state"] == "writeback_failed" and "400" in record["reason"]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "samiam_writebacks_failed_total 1\n" in metrics and "samiam_writeback_retries_total 3\n" in metrics
    queue = Queue(config.queue_name, connection=redis.Redis.from_url(redis_server.url))
    assert FailedJobRegistry(queue=queue).count == 1


def test_redis_going_away_mid_request_gives_503_and_health_stays_up(redis_server, label_studio):
    config = service_config(redis_server.url, label_studio, predict_deadline_s=20.0)
    client = create_app(config).test_client()
    queue = Queue(config.queue_name, connection=redis.Redis.from_url(redis_server.url))
    pending = predict_in_thread(client, [task(1, label_studio.add_file("a.png", two_texture_png(64, 64)))])
    wait_until(lambda: queue.count == 1, 10, "the job to be queued")
    redis_server.process.kill()
    redis_server.process.wait()
    pending["thread"].join(10)
    response = pending["response"]
    assert response.status_code == 503
    assert "Redis" in response.get_json()["error"] and response.get_json()["kind"] == "QueueUnavailableError"
    started = time.perf_counter()
    health = client.get("/health")
    assert health.status_code == 200 and time.perf_counter() - started < 1.0
    assert health.get_json()["redis"] == "down" and health.get_json()["ready"] is False
    assert client.get("/").status_code == 200 and client.get("/metrics").status_code == 503


def test_a_web_process_killed_while_it_queues_leaves_no_task_queued_without_its_job(
        redis_server, label_studio, monkeypatch):
    """Task records and jobs go to Redis in one transaction: a web process killed in between
    (or Redis gone) leaves no task recorded ``queued`` that no job will ever run."""
    config = service_config(redis_server.url, label_studio, predict_deadline_s=0.0)
    app = create_app(config)
    queue = app.extensions["samiam"]["dispatcher"].queue
    enqueue_many = queue.enqueue_many

    def dies_before_sending(job_datas, pipeline=None):
        enqueue_many(job_datas, pipeline=pipeline)
        raise Killed
    monkeypatch.setattr(queue, "enqueue_many", dies_before_sending)
    with pytest.raises(Killed):
        post_predict(app.test_client(), [task(i, label_studio.add_file(f"em{i}.png", two_texture_png(64, 64)))
                                         for i in (1, 2)])
    monkeypatch.undo()
    assert app.extensions["samiam"]["store"].tasks(PROJECT) == {} and queue.count == 0
    client = app.test_client()
    answer = post_predict(client, [task(3, label_studio.add_file("em3.png", two_texture_png(64, 64)))])
    assert answer.status_code == 200 and queue.count == 1  # the same path, not killed: record and job
    assert client.get("/jobs?project=1").get_json()["tasks"][0]["state"] == "queued"


# -- every finished prediction reaches Label Studio exactly once --------------------------------

def vanishing_waits(app, monkeypatch, error: Exception) -> None:
    """Make the /predict of ``app`` fail while it waits, leaving its batch open: as when Redis
    goes away mid-wait (503) or its web process is killed."""
    def fail(batch_id, timeout_s):
        raise error
    monkeypatch.setattr(app.extensions["samiam"]["store"], "wait_for_deposit", fail)


def test_a_prediction_finished_after_predict_answered_503_is_written_back(tmp_path, label_studio):
    server = RedisServer(tmp_path / "redis", persistent=True).start()
    try:
        config = service_config(server.url, label_studio, predict_deadline_s=1.0, batch_grace_s=0.0)
        client = create_app(config).test_client()
        queue = Queue(config.queue_name, connection=redis.Redis.from_url(server.url))
        pending = predict_in_thread(client, [task(1, label_studio.add_file("a.png", two_texture_png(64, 64)))])
        wait_until(lambda: queue.count == 1, 10, "the job to be queued")
        server.stop()  # Redis away while /predict waits
        pending["thread"].join(10)
        assert pending["response"].status_code == 503
        server.start()  # the job survived (append-only file); its /predict is gone
        time.sleep(1.0)  # past the deadline: nobody will close the batch
        assert run_worker(config, burst=True)
        assert [p["task"] for p in label_studio.predictions] == [1]
        record = client.get("/jobs?project=1").get_json()["tasks"][0]
        assert record["state"] == "written", record
    finally:
        server.stop()


class ShiftedClock:
    """``time`` for a store's module whose wall clock runs ``ahead_s`` ahead: a deadline passes
    when the test says so, not when a loaded machine happens to be slow."""

    monotonic = staticmethod(time.monotonic)

    def __init__(self):
        self.ahead_s = 0.0

    def time(self) -> float:
        return time.time() + self.ahead_s


def shift_store_clock(monkeypatch, store_class: type) -> ShiftedClock:
    """Give the module of ``store_class`` (RedisStore or MemoryStore) a :class:`ShiftedClock`."""
    clock = ShiftedClock()
    monkeypatch.setattr(sys.modules[store_class.__module__], "time", clock)
    return clock


def vanished_predict(redis_server, label_studio, monkeypatch, **changes):
    """A ``/predict`` of tasks 1 and 2 (Redis mode, deadline 60 s, no grace) that answered 503
    while it waited, both tasks deposited in its open batch by a burst worker; returns the
    config, the web tier's test client, the runtime of a worker that sweeps, and the Redis
    store's clock."""
    clock = shift_store_clock(monkeypatch, RedisStore)
    config = service_config(redis_server.url, label_studio, predict_deadline_s=60.0, batch_grace_s=0.0, **changes)
    app = create_app(config)
    client = app.test_client()
    vanishing_waits(app, monkeypatch, QueueUnavailableError("Redis went away"))
    answer = post_predict(client, [task(i, label_studio.add_file(f"em{i}.png", two_texture_png(64, 64 + i)))
                                   for i in (1, 2)])
    assert answer.status_code == 503
    assert run_worker(config, burst=True)  # within the deadline: both deposited in the open batch
    assert label_studio.predictions == []
    assert client.get("/jobs?project=1").get_json()["counts"]["computed"] == 2
    connection = connect(config)
    store = make_store(config, connection)
    return config, client, jobs.Runtime(config, store, RQDispatcher(config, connection, store)), clock


def test_the_sweep_writes_back_what_a_vanished_predict_left_in_its_batch(redis_server, label_studio, monkeypatch):
    config, client, runtime, clock = vanished_predict(redis_server, label_studio, monkeypatch)
    assert jobs.hand_over_expired(runtime) == 0  # the deadline has not passed: /predict may still answer
    clock.ahead_s = 61.0
    assert jobs.hand_over_expired(runtime) == 2
    assert jobs.hand_over_expired(runtime) == 0
    assert run_worker(config, burst=True)
    assert sorted(p["task"] for p in label_studio.predictions) == [1, 2]
    assert client.get("/jobs?project=1").get_json()["counts"]["written"] == 2


@pytest.mark.parametrize("queued", [True, False], ids=["write-backs-queued", "sweeper-died-before-queuing"])
def test_the_check_of_a_handed_over_batch_posts_what_its_sweep_never_queued_and_nothing_twice(
        redis_server, label_studio, monkeypatch, queued):
    config, client, runtime, clock = vanished_predict(redis_server, label_studio, monkeypatch, answer_check_s=100.0)
    clock.ahead_s = 61.0
    if queued:
        assert jobs.hand_over_expired(runtime) == 2
    else:  # the worker sweeping dies after its close, before queuing the write-backs it decided
        def die(*args, **kwargs):
            raise Killed
        with monkeypatch.context() as dying, pytest.raises(Killed):
            dying.setattr(runtime.dispatcher, "submit_write_backs", die)
            jobs.hand_over_expired(runtime)
    assert jobs.hand_over_expired(runtime) == 0  # closed: no later sweep hands it over
    run_worker(config, burst=True)
    assert len(label_studio.predictions) == (2 if queued else 0)
    clock.ahead_s = 61.0 + 100.0  # the check is due
    assert jobs.hand_over_expired(runtime) == 0
    assert run_worker(config, burst=True)
    assert sorted(p["task"] for p in label_studio.predictions) == [1, 2]
    metrics, jobs_now = counters(client), client.get("/jobs?project=1").get_json()
    assert metrics["samiam_answers_checked_total"] == 2
    assert metrics["samiam_handovers_lost_total"] == (0 if queued else 2)
    assert metrics["samiam_writebacks_ok_total"] == 2 and metrics["samiam_answers_lost_total"] == 0
    assert jobs_now["totals"]["delivered"] == 2 and jobs_now["counts"]["written"] == 2


def test_the_embedded_server_sweeps_what_a_vanished_predict_left(label_studio, monkeypatch):
    clock = shift_store_clock(monkeypatch, MemoryStore)
    config = service_config(None, label_studio, predict_deadline_s=60.0, batch_grace_s=0.0, worker_heartbeat_s=0.2)
    app = create_app(config)
    client = app.test_client()
    store = app.extensions["samiam"]["store"]
    try:
        vanishing_waits(app, monkeypatch, RuntimeError("the web process died"))
        assert post_predict(client, [task(2, label_studio.add_file("a.png", two_texture_png(64, 64)))]).status_code == 500
        batch_id = store.tasks(PROJECT)["2"]["batch"]
        wait_until(lambda: store.progress(batch_id) == (1, 0), 60, "the prediction to be deposited in its open batch")
        time.sleep(0.5)  # a few sweeps: the deadline has not passed, so /predict may still answer
        assert label_studio.predictions == []
        clock.ahead_s = 61.0
        assert [p["task"] for p in label_studio.wait_for_predictions(1, 30)] == [2]
        # Label Studio holds it before the thread that posted it records the task written
        wait_until(lambda: store.tasks(PROJECT)["2"]["state"] == "written", 10, "task 2 to be recorded as written")
        time.sleep(0.5)  # more sweeps: the batch was handed over once
        assert len(label_studio.predictions) == 1
    finally:
        app.extensions["samiam"]["dispatcher"].shutdown()


def test_a_write_back_whose_answer_was_lost_is_stored_once(redis_server, label_studio):
    config = service_config(redis_server.url, label_studio, predict_deadline_s=0.0, writeback_retry_intervals_s=(0, 0))
    client = create_app(config).test_client()
    label_studio.lose_next_answers = 1  # stored, but the answer never reaches the worker
    post_predict(client, [task(1, label_studio.add_file("a.png", two_texture_png(64, 64)))])
    run_worker(config, burst=True)
    assert [(p["task"], p["project"]) for p in label_studio.predictions] == [(1, 1)]  # LS logs a missing project
    record = client.get("/jobs?project=1").get_json()["tasks"][0]
    assert record["state"] == "written" and "earlier attempt" in record["reason"], record


def test_two_write_backs_of_one_prediction_at_once_store_it_once(store, label_studio):
    """A slow write-back whose lease expired runs again beside itself: both attempts find nothing
    stored yet, and only the claim on the delivery key keeps the second from posting too."""
    runtime = jobs.Runtime(service_config(None, label_studio), store, dispatcher=None)
    jobs.install(runtime)
    try:
        prediction = stamp({"result": [{"type": "brushlabels", "value": {}}], "model_version": "test-v1"},
                           delivery_key("batch", 1))
        label_studio.post_delay_s = 0.5  # both attempts list the task's predictions before either stores
        attempts = [threading.Thread(target=jobs.deliver, args=(1, prediction, PROJECT, True)) for _ in range(2)]
        for attempt in attempts:
            attempt.start()
        for attempt in attempts:
            attempt.join(30)
        assert len(label_studio.predictions) == 1
        assert store.tasks(PROJECT)["1"]["state"] == "written"
        claim, owner = f"delivery:{delivery_key('batch', 1)}", "next"
        assert store.claim(claim, owner, 1.0)  # released by its holder: a later attempt need not wait
        store.release(claim, owner)
    finally:
        jobs.install(None)


def test_an_answer_check_that_cannot_look_leaves_the_answered_task_as_it_is(store, label_studio):
    """Label Studio away through every retry of the check: whether the answer arrived is unknown
    (most likely it did), so the task stays answered and no delivery is counted as failed; an
    answer found missing whose post then fails is a failed write-back like any other."""
    away = FakeLabelStudio()
    away.close()
    prediction = stamp({"result": [{"type": "brushlabels", "value": {}}], "model_version": "test-v1"},
                       delivery_key("batch", 1))
    label_studio.refuse_next_writes = 2  # the reachable one finds the answer missing and cannot post it
    for label_studio_now, state in ((away, "answered"), (label_studio, "writeback_failed")):
        jobs.install(jobs.Runtime(service_config(None, label_studio_now), store, dispatcher=None))
        try:
            store.set_task(PROJECT, 1, "answered", "in the /predict answer")
            for final in (False, True):
                with pytest.raises(WriteBackError, match="cannot connect" if label_studio_now is away else "HTTP 400"):
                    jobs.deliver(1, prediction, PROJECT, final, answered=True)
            assert store.tasks(PROJECT)["1"]["state"] == state
        finally:
            jobs.install(None)
    counters = store.counters()
    assert counters.get("answer_checks_failed") == 1 and counters.get("writebacks_failed") == 1
    assert store.project_stats()["1"]["failed"] == 1 and label_studio.refused_writes == 2


def test_the_embedded_server_writes_back_an_answer_that_label_studio_did_not_store(label_studio, monkeypatch):
    clock = shift_store_clock(monkeypatch, MemoryStore)
    config = service_config(None, label_studio, answer_check_s=60.0, worker_heartbeat_s=0.2)
    app = create_app(config)
    client = app.test_client()
    try:
        tasks = [task(i, label_studio.add_file(f"em{i}.png", two_texture_png(64, 64 + i))) for i in (1, 2)]
        stored, lost = post_predict(client, tasks[:1]).get_json(), post_predict(client, tasks[1:]).get_json()
        assert len(stored["results"]) == len(lost["results"]) == 1
        assert label_studio.store_answer(tasks[:1], stored)  # the second answer never reached Label Studio
        time.sleep(0.5)  # a few sweeps: no check is due yet
        assert label_studio.predictions == []
        clock.ahead_s = 61.0
        assert [p["task"] for p in label_studio.wait_for_predictions(1, 30)] == [2]
        wait_until(lambda: counters(client).get("samiam_answers_checked_total") == 2 and client.get(
            "/jobs?project=1").get_json()["counts"].get("written") == 1, 30, "both answers to be checked, one written")
        assert [p["task"] for p in label_studio.predictions] == [2]  # the stored answer is not posted again
        record = {r["task"]: r for r in client.get("/jobs?project=1").get_json()["tasks"]}
        assert record[2]["state"] == "written" and "never reached Label Studio" in record[2]["reason"]
        assert record[1]["state"] == "answered"
        assert "samiam_answers_lost_total 1\n" in client.get("/metrics").get_data(as_text=True)
    finally:
        app.extensions["samiam"]["dispatcher"].shutdown()


def test_status_page_and_jobs_tell_computed_from_delivered_per_project(redis_server, label_studio, caplog):
    config = service_config(redis_server.url, label_studio, predict_deadline_s=0.0)
    client = create_app(config).test_client()
    tasks = [task(1, label_studio.add_file("a.png", two_texture_png(64, 64))),
             task(2, label_studio.add_file("notes.png", b"plain text", "text/plain"))]
    with caplog.at_level(logging.WARNING, logger="samiam.service.batch"):
        answer = post_predict(client, tasks)
    assert answer.get_json()["late"] == [1, 2]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith("project 1, tasks [1, 2]: not finished within PREDICT_DEADLINE_S") for m in warnings)
    assert run_worker(config, burst=True)
    states = client.get("/jobs?project=1").get_json()
    assert states["counts"]["written"] == 1 and states["counts"]["failed"] == 1
    assert states["totals"]["computed"] == 1 and states["totals"]["delivered"] == 1
    assert states["totals"]["failed"] == 1 and "not an image" in states["totals"]["last_failure"]
    page = client.get("/").get_data(as_text=True)
    row = page[page.index('<table id="projects">'):].split("</table>")[0]
    cells = [c.split("</td>")[0] for c in row.split("<td>")[1:]]
    assert cells[:4] == ["1", "1", "1", "1"] and "not an image" in cells[4], cells
    assert "1.1700000000" not in page
