"""Faults of the Redis mode, fast versions of ``bench/fault_drills.py``: a worker SIGKILLed
mid-job (the job runs again elsewhere, or fails after its last retry), Redis restarted with
queued jobs (append-only file), Label Studio down when a late prediction is written back.

Real redis-server, real ``samiam worker`` subprocesses (classical proposer), the web tier through
Flask's test client, the fake Label Studio. A 2048 px image keeps a job busy for seconds.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from fake_label_studio import TOKEN, FakeLabelStudio, task, two_texture_png
from redis_server import RedisServer, redis_server_bin
from rq import Queue, Retry, Worker
from rq.registry import StartedJobRegistry
from service_helpers import counters, post_predict, predict_in_thread, service_config
from service_processes import (
    busy_workers,
    kill_busy_worker,
    log_tails,
    session_processes,
    start_worker,
    stop_all,
    wait_until,
)

from samiam.labelstudio.results import materials_from_results
from samiam.service import ServiceConfig, create_app
from samiam.service.reconnect import RideOut
from samiam.service.redis_mode import connect
from samiam.service.worker import LeasedWorker, run_worker

pytestmark = pytest.mark.skipif(redis_server_bin() is None, reason="redis-server is not installed")

BIG = 2048
"""Side (px) of the image that keeps a worker busy for seconds (about 3 s on a 2-core box)."""
LEASE = {"SAMIAM_JOB_LEASE_S": "2", "SAMIAM_WORKER_HEARTBEAT_S": "0.5"}


@pytest.fixture
def processes():
    started = []
    yield started
    stop_all(started)


def worker_env(redis_url: str, label_studio: FakeLabelStudio, **extra: str) -> dict[str, str]:
    return {"REDIS_URL": redis_url, "SAMIAM_PROPOSALS_PROPOSER": "classical", "SAMIAM_MODEL_VERSION": "test-v1",
            "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": TOKEN, **LEASE, **extra}


def start_two_workers(tmp_path: Path, env: dict, client, processes: list) -> dict:
    workers = {name: start_worker(env, name, tmp_path / f"{name}.log") for name in ("w1", "w2")}
    processes.extend(workers.values())
    wait_until(lambda: client.get("/health").get_json()["workers"] == 2
               or any(p.poll() is not None for p in workers.values()), 90, "two workers to register")
    assert all(p.poll() is None for p in workers.values()), (tmp_path / "w1.log").read_text()
    return workers


def test_a_job_whose_worker_is_killed_runs_again_and_its_result_is_answered(tmp_path, label_studio, processes):
    with RedisServer(tmp_path / "redis") as server:
        client = create_app(service_config(server.url, label_studio, predict_deadline_s=60.0)).test_client()
        workers = start_two_workers(tmp_path, worker_env(server.url, label_studio), client, processes)
        pending = predict_in_thread(client, [task(1, label_studio.add_file("big.png", two_texture_png(BIG, BIG)))])
        # RQ names the job's worker a moment before the job itself starts (and counts it): kill it after
        wait_until(lambda: counters(client).get("samiam_jobs_started_total") == 1, 60, "the job to start")
        killed = kill_busy_worker(server.url, workers)
        assert pending["thread"].is_alive(), "the job finished before its worker was killed: use a bigger image"
        pending["thread"].join(60)
        results = pending["response"].get_json()["results"]
        assert len(results) == 1, (pending["response"].get_json(), client.get("/jobs?project=1").get_json(),
                                   counters(client), log_tails(tmp_path))
        masks, _ = materials_from_results(results[0]["result"])
        assert masks.shape[1:] == (BIG, BIG) and results[0]["model_version"] == "test-v1"
        metrics = counters(client)
        assert metrics["samiam_jobs_requeued_total"] == 1 and metrics["samiam_jobs_started_total"] == 2
        assert metrics["samiam_jobs_finished_total"] == 1
        assert client.get("/jobs?project=1").get_json()["tasks"][0]["state"] == "answered"
        assert workers[killed].returncode == -signal.SIGKILL


def test_a_job_killed_with_no_retry_left_fails_at_once_with_the_reason(tmp_path, label_studio, processes):
    with RedisServer(tmp_path / "redis") as server:
        config = service_config(server.url, label_studio, predict_deadline_s=60.0, predict_retries=0)
        client = create_app(config).test_client()
        workers = start_two_workers(tmp_path, worker_env(server.url, label_studio), client, processes)
        pending = predict_in_thread(client, [task(1, label_studio.add_file("big.png", two_texture_png(BIG, BIG)))])
        kill_busy_worker(server.url, workers)
        pending["thread"].join(60)
        body = pending["response"].get_json()
        assert body["results"] == [] and [f["task"] for f in body["failed"]] == [1]
        assert "stopped mid-job" in body["failed"][0]["reason"] and "no retry is left" in body["failed"][0]["reason"]
        record = client.get("/jobs?project=1").get_json()["tasks"][0]
        assert record["state"] == "failed" and "stopped mid-job" in record["reason"]
        assert counters(client)["samiam_jobs_failed_total"] == 1 and label_studio.predictions == []


def test_queued_jobs_survive_a_redis_restart_with_the_append_only_file(tmp_path, label_studio):
    server = RedisServer(tmp_path / "redis", persistent=True).start()
    try:
        config = service_config(server.url, label_studio, predict_deadline_s=0.0)
        client = create_app(config).test_client()
        tasks = [task(i, label_studio.add_file(f"em{i}.png", two_texture_png(128, 96 + 16 * i))) for i in (1, 2)]
        answer = post_predict(client, tasks)
        assert answer.get_json()["late"] == [1, 2]  # no worker runs: both jobs wait in the queue
        server.stop()
        server.start()  # same port, same directory: the append-only file is read back
        assert Queue(config.queue_name, connection=redis.Redis.from_url(server.url)).count == 2
        assert run_worker(config, burst=True)
        stored = {p["task"]: p for p in label_studio.predictions}
        assert sorted(stored) == [1, 2]
        for task_id in (1, 2):
            masks, _ = materials_from_results(stored[task_id]["result"])
            assert masks.shape[1:] == (128, 96 + 16 * task_id)
        assert client.get("/jobs?project=1").get_json()["counts"]["written"] == 2
    finally:
        server.stop()


def test_a_write_back_while_label_studio_is_down_is_retried_until_it_is_back(tmp_path, label_studio, processes):
    with RedisServer(tmp_path / "redis") as server:
        client = create_app(service_config(server.url, label_studio, predict_deadline_s=0.0)).test_client()
        env = worker_env(server.url, label_studio, SAMIAM_WRITEBACK_RETRY_INTERVALS_S="1,1,1,1,1,1,1,1,1,1")
        processes.append(start_worker(env, "w1", tmp_path / "w1.log"))
        url = label_studio.add_file("big.png", two_texture_png(BIG, BIG))
        answer = post_predict(client, [task(1, url)])
        assert answer.get_json()["late"] == [1]
        wait_until(lambda: label_studio.downloads == 1, 90, "the worker to download the image")
        files, port = label_studio.files, label_studio.httpd.server_port
        label_studio.close()  # down while the job segments the image: its write-back is refused
        wait_until(lambda: counters(client).get("samiam_writeback_retries_total", 0) >= 2, 60,
                   "two write-back attempts to fail")
        assert client.get("/jobs?project=1").get_json()["tasks"][0]["state"] == "writing_back"
        back = FakeLabelStudio(port)
        try:
            back.files = files
            stored = back.wait_for_predictions(1, 30)
            assert [p["task"] for p in stored] == [1] and stored[0]["result"]
            wait_until(lambda: client.get("/jobs?project=1").get_json()["tasks"][0]["state"] == "written", 10,
                       "the task to be recorded as written")
            assert counters(client)["samiam_writebacks_failed_total"] == 0
        finally:
            back.close()


@pytest.mark.parametrize("stop", ["stop", "kill"])
def test_workers_ride_out_a_redis_restart_mid_job_and_deliver_every_prediction_once(tmp_path, label_studio,
                                                                                  processes, stop):
    server = RedisServer(tmp_path / "redis", persistent=True).start()
    try:
        client = create_app(service_config(server.url, label_studio, predict_deadline_s=0.0)).test_client()
        workers = start_two_workers(tmp_path, worker_env(server.url, label_studio), client, processes)
        tasks = [task(i, label_studio.add_file(f"big{i}.png", two_texture_png(BIG, BIG - 64 * i))) for i in (1, 2, 3)]
        answer = post_predict(client, tasks)
        assert answer.get_json()["late"] == [1, 2, 3]
        wait_until(lambda: len(busy_workers(server.url)) == 2, 60, "both workers to run a job")
        getattr(server, stop)()  # SIGTERM (writes the append-only file, exits) or SIGKILL (a crash)
        time.sleep(3)
        server.start()  # same port and directory: the append-only file is read back
        label_studio.wait_for_predictions(3, 90)
        time.sleep(3)  # a duplicate would arrive within a lease
        assert sorted(p["task"] for p in label_studio.predictions) == [1, 2, 3]
        assert counters(client).get("samiam_jobs_requeued_total", 0) == 0  # no live worker's job was reaped
        assert [name for name, p in workers.items() if p.poll() is not None] == []
        health = client.get("/health").get_json()
        assert (health["redis"], health["workers"], health["ready"]) == ("ok", 2, True)
        for name in workers:
            log = (tmp_path / f"{name}.log").read_text()
            assert log.count("Redis unreachable") == 1 and log.count("Redis reachable again") == 1, log[-3000:]
    finally:
        stop_all(processes)
        server.stop()


def test_a_reaper_whose_lock_waits_out_a_redis_restart_takes_no_live_workers_job(tmp_path, monkeypatch):
    """The reaper's first command meets the outage: it waits until Redis is back, by which time
    the running job's lease has lapsed, as its live worker could not renew it either. The job
    must stay with that worker, not be run again (the race behind a flake of the test above)."""
    server = RedisServer(tmp_path / "redis", persistent=True).start()
    try:
        config = ServiceConfig(redis_url=server.url)

        def worker(name: str) -> LeasedWorker:  # one process each: its own connection and outage record
            ride_out = RideOut(name)
            connection = connect(config, retry=ride_out)
            return LeasedWorker([Queue(config.queue_name, connection=connection)], connection=connection,
                                name=name, lease_s=2, heartbeat_s=0.5, ride_out=ride_out)
        live, reaper = worker("live"), worker("reaper")
        live.queues[0].enqueue(print, retry=Retry(max=1))
        job, _ = Queue.dequeue_any(live.queues, None, connection=live.connection)
        live.prepare_execution(job)  # running, on a lease of 2 s
        with live.connection.pipeline() as pipeline:
            job.prepare_for_execution(live.name, pipeline)
            pipeline.execute()

        def lock_met_by_an_outage(*args, **kwargs):
            server.stop()
            threading.Timer(3.0, server.start).start()  # back once the lease has lapsed
            return take_lock(*args, **kwargs)
        take_lock = reaper.connection.lock
        monkeypatch.setattr(reaper.connection, "lock", lock_met_by_an_outage)
        reaper.reap_abandoned()
        assert reaper.ride_out.back_within(reaper.outage_grace_s)  # its lock did wait out the outage
        registry = StartedJobRegistry(queue=live.queues[0])
        assert registry.get_job_ids(cleanup=False) == [job.id] and live.queues[0].count == 0
        assert job.get_status(refresh=True) == "started" and job.retries_left == 1
    finally:
        server.stop()


def test_a_killed_worker_leaves_no_process_behind_and_another_takes_over_its_scheduling(tmp_path, label_studio,
                                                                                      processes):
    with RedisServer(tmp_path / "redis") as server:
        connection = redis.Redis.from_url(server.url)
        env = worker_env(server.url, label_studio)
        first = start_worker(env, "w1", tmp_path / "w1.log")
        processes.append(first)
        lock = "rq:scheduler-lock:samiam"
        wait_until(lambda: connection.exists(lock), 90, "the first worker to take RQ's scheduler lock")
        processes.append(start_worker(env, "w2", tmp_path / "w2.log"))
        wait_until(lambda: len(Worker.all(connection=connection)) == 2, 90, "the second worker to register")
        os.kill(first.pid, signal.SIGKILL)  # the worker alone, not its process group
        first.wait(10)
        killed_at = time.monotonic()
        due = Queue("samiam", connection=connection).enqueue_in(timedelta(0), "builtins.len", [1, 2])
        wait_until(lambda: due.get_status() == "finished", 30, "the due scheduled job to run")
        assert time.monotonic() - killed_at < float(LEASE["SAMIAM_JOB_LEASE_S"]) + 2
        assert connection.get(lock) == b"w2"
        assert session_processes(first.pid) == [], "a process of the killed worker survived it"


def test_a_worker_restarted_under_its_name_replaces_its_dead_predecessor_but_not_a_live_one(tmp_path, label_studio,
                                                                                          processes):
    with RedisServer(tmp_path / "redis") as server:
        connection = redis.Redis.from_url(server.url)
        env = worker_env(server.url, label_studio)

        def pid_of_w1():
            return [w.pid for w in Worker.all(connection=connection) if w.name == "w1"]

        first = start_worker(env, "w1", tmp_path / "first.log")
        processes.append(first)
        wait_until(pid_of_w1, 90, "w1 to register")
        duplicate = start_worker(env, "w1", tmp_path / "duplicate.log")
        processes.append(duplicate)
        assert duplicate.wait(90) != 0
        assert "a live worker named 'w1' is registered" in (tmp_path / "duplicate.log").read_text()
        assert first.poll() is None and pid_of_w1() == [first.pid]
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        restarted = start_worker(env, "w1", tmp_path / "restarted.log")
        processes.append(restarted)
        wait_until(lambda: pid_of_w1() == [restarted.pid] or restarted.poll() is not None, 90,
                   "the restarted w1 to register")
        assert restarted.poll() is None, (tmp_path / "restarted.log").read_text()[-2000:]


def test_workers_register_again_when_redis_loses_their_registration(tmp_path, label_studio, processes):
    with RedisServer(tmp_path / "redis") as server:
        client = create_app(service_config(server.url, label_studio)).test_client()
        start_two_workers(tmp_path, worker_env(server.url, label_studio), client, processes)
        redis.Redis.from_url(server.url).flushall()  # as a restart without persistence would
        assert client.get("/health").get_json()["workers"] == 0
        wait_until(lambda: client.get("/health").get_json()["workers"] == 2, 5, "the workers to register again")
