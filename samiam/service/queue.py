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


class RQDispatcher:
    """Enqueues one RQ job per task and per write-back on ``config.queue_name``."""

    def __init__(self, config: ServiceConfig, connection: redis.Redis, store: RedisStore):
        self.config = config
        self.queue = Queue(config.queue_name, connection=connection)
        self.store = store
        self.url = store.url

    @redis_errors_as_unavailable
    def submit_predict(self, request, batch_id):
        retries = self.config.predict_retries
        self.queue.enqueue(
            jobs.predict_task, request, batch_id,
            retry=Retry(max=retries) if retries else None, on_failure=Callback(jobs.predict_abandoned),
            job_timeout=self.config.job_timeout_s, result_ttl=self.config.result_ttl_s,
            failure_ttl=self.config.result_ttl_s, description=f"predict task {request['task_id']}")

    @redis_errors_as_unavailable
    def submit_write_back(self, task_id, prediction, project):
        intervals = list(self.config.writeback_retry_intervals_s)
        self.queue.enqueue(
            jobs.write_back, task_id, prediction, project,
            retry=Retry(max=len(intervals), interval=intervals) if intervals else None,
            job_timeout=self.config.job_timeout_s, result_ttl=self.config.result_ttl_s,
            failure_ttl=self.config.result_ttl_s, description=f"write back task {task_id}")

    @redis_errors_as_unavailable
    def queue_depth(self) -> int:
        return self.queue.count

    @redis_errors_as_unavailable
    def workers(self) -> list[dict]:
        devices = self.store.devices()
        return [{"name": w.name, "state": getattr(w.get_state(), "value", w.get_state()), "device": devices.get(w.name, "unknown"),
                 "job": w.get_current_job_id()}
                for w in Worker.all(queue=self.queue)]
