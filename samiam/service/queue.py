"""Jobs on an RQ queue in Redis, run by ``samiam worker`` processes (one engine each)."""

from __future__ import annotations

import redis
from rq import Callback, Queue, Retry, Worker

from samiam.service import jobs
from samiam.service.config import ServiceConfig
from samiam.service.store import RedisStore, redis_errors_as_unavailable


def connect(config: ServiceConfig, timeout_s: float | None = None) -> redis.Redis:
    """A Redis client for ``config.redis_url``; ``timeout_s`` bounds every socket operation
    (the web tier's calls must fail fast; workers block on the queue and pass None)."""
    return redis.Redis.from_url(config.redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)


def make_store(config: ServiceConfig, connection: redis.Redis) -> RedisStore:
    return RedisStore(connection, config.result_ttl_s, config.latency_buckets_s, config.recent_failures)


ENQUEUE_CHUNK = 500
"""Jobs per Redis transaction when enqueuing in bulk (500 take about 0.15 s)."""


class RQDispatcher:
    """Enqueues one RQ job per task and per write-back on ``config.queue_name``."""

    def __init__(self, config: ServiceConfig, connection: redis.Redis, store: RedisStore):
        self.config = config
        self.queue = Queue(config.queue_name, connection=connection)
        self.store = store
        self.url = store.url

    def _enqueue(self, job_datas: list) -> None:
        """RQ's ``enqueue_many`` (one transaction), ``ENQUEUE_CHUNK`` jobs at a time so that no
        single Redis reply outlasts the web tier's socket time-out."""
        for start in range(0, len(job_datas), ENQUEUE_CHUNK):
            self.queue.enqueue_many(job_datas[start:start + ENQUEUE_CHUNK])

    @redis_errors_as_unavailable
    def submit_predictions(self, tasks, label_config, project, overrides, batch_id):
        """One job per task, enqueued in bulk."""
        retries = self.config.predict_retries
        self._enqueue([Queue.prepare_data(
            jobs.predict_task, (task, label_config, project, overrides, batch_id),
            retry=Retry(max=retries) if retries else None, on_failure=Callback(jobs.predict_abandoned),
            timeout=self.config.job_timeout_s, result_ttl=self.config.result_ttl_s,
            failure_ttl=self.config.result_ttl_s, description=f"predict task {task.get('id')}")
            for task in tasks])

    @redis_errors_as_unavailable
    def submit_write_backs(self, predictions, project):
        """One write-back job per task (task id -> prediction), enqueued in bulk."""
        intervals = list(self.config.writeback_retry_intervals_s)
        self._enqueue([Queue.prepare_data(
            jobs.write_back, (task_id, prediction, project),
            retry=Retry(max=len(intervals), interval=intervals) if intervals else None,
            timeout=self.config.job_timeout_s, result_ttl=self.config.result_ttl_s,
            failure_ttl=self.config.result_ttl_s, description=f"write back task {task_id}")
            for task_id, prediction in predictions.items()])

    @redis_errors_as_unavailable
    def queue_depth(self) -> int:
        return self.queue.count

    @redis_errors_as_unavailable
    def workers(self) -> list[dict]:
        devices = self.store.devices()
        return [{"name": w.name, "state": getattr(w.get_state(), "value", w.get_state()), "device": devices.get(w.name, "unknown"),
                 "job": w.get_current_job_id()}
                for w in Worker.all(queue=self.queue)]
