"""Faults of the Redis mode, fast versions of ``bench/fault_drills.py``: a worker SIGKILLed
mid-job (the job runs again elsewhere, or fails after its last retry), Redis restarted with
queued jobs (append-only file), Label Studio down when a late prediction is written back.

Real redis-server, real ``samiam worker`` subprocesses (classical proposer), the web tier through
Flask's test client, the fake Label Studio. A 2048 px image keeps a job busy for seconds.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import redis
from fake_label_studio import TOKEN, FakeLabelStudio, task, two_texture_png
from redis_server import RedisServer, redis_server_bin
from rq import Queue
from service_helpers import counters, post_predict, predict_in_thread, service_config
from service_processes import kill_busy_worker, start_worker, stop_all, wait_until

from samiam.labelstudio.results import materials_from_results
from samiam.service import create_app
from samiam.service.worker import run_worker

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
        killed = kill_busy_worker(server.url, workers)
        assert pending["thread"].is_alive(), "the job finished before its worker was killed: use a bigger image"
        pending["thread"].join(60)
        results = pending["response"].get_json()["results"]
        assert len(results) == 1, pending["response"].get_json()
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
