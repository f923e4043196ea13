"""The Redis mode: state in Redis (:class:`RedisStore`) and jobs on an RQ queue
(:class:`RQDispatcher`), run by ``samiam worker`` processes (one engine each).

Clicks of smart tools have queues of their own, which every worker takes jobs from before the
prediction queue: each worker's own (``<queue>-clicks@<worker>``), where the web tier sends the
clicks on the images it routes to that worker, then the shared one (``<queue>-clicks``), for
clicks when every live worker is busy with a pre-annotation job (or none lives). The answer comes
back through a Redis list the web tier blocks on (:meth:`RedisStore.wait_reply`).

The web tier and the workers share everything through Redis; see :mod:`samiam.service.store`
for the batch hand-over both stores implement.
"""

from __future__ import annotations

import functools
import json
import math
import time
from collections.abc import Callable
from typing import Any

import redis
from rq import Callback, Queue, Retry, Worker
from rq.utils import now

from samiam.errors import QueueUnavailableError
from samiam.service import interactive, jobs
from samiam.service.config import ServiceConfig
from samiam.service.store import (
    LATENCY_COUNT,
    LATENCY_SUM,
    PREFIX,
    DueCheck,
    failure_entry,
    latency_bucket,
    project_id,
    stats_by_project,
    task_record,
)

_OPEN = "_open"
_CLOSED = "_closed"
_PROJECT = "_project"
_EXPIRES = "_expires"
_DEPOSITS = "_deposits"
_FAILURES = "_failures"
_HANDED_OVER = "_handed_over"
"""Bookkeeping fields of a batch (task ids never start with ``_``)."""
_REDIS_TIMEOUT_RESOLUTION_S = 0.001
"""Redis rounds blocking time-outs down to milliseconds, and 0 means "wait for ever"."""


def redis_errors_as_unavailable(method):
    """Decorate a method of an object with a ``url`` attribute: Redis errors -> QueueUnavailableError."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except redis.exceptions.RedisError as error:
            raise QueueUnavailableError(
                f"Redis at {self.url} cannot be reached ({type(error).__name__}: {error}); "
                "check that redis-server runs and REDIS_URL points at it") from None
    return wrapper


_DEPOSIT = """
-- KEYS: batch hash, notice list; ARGV: task id, outcome JSON, failed (0/1), now, ttl
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return 1
end
if redis.call('HEXISTS', KEYS[1], '_open') == 0 or redis.call('HEXISTS', KEYS[1], '_closed') == 1 then
  return 0
end
if tonumber(redis.call('HGET', KEYS[1], '_expires')) < tonumber(ARGV[4]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[1], '_deposits', 1)
redis.call('HINCRBY', KEYS[1], '_failures', ARGV[3])
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return 1
"""

_CLOSE = """
-- KEYS: batch hash, notice list, open-batch index, answer-check index; ARGV: batch id, ttl,
-- time of the answer check ('' for none), handed over ('1') or answered ('0').
-- 1 when this call closed it.
redis.call('ZREM', KEYS[3], ARGV[1])
if redis.call('HEXISTS', KEYS[1], '_open') == 0 or redis.call('HEXISTS', KEYS[1], '_closed') == 1 then
  return 0
end
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
end
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[1], '_handed_over', '1')
end
redis.call('HSET', KEYS[1], '_closed', '1')
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('DEL', KEYS[2])
return 1
"""
_RELEASE = """
-- KEYS: claim; ARGV: owner. Deletes the claim only while this owner holds it.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
SCAN_COUNT = 500
"""Outcomes read per round trip from a closed batch (whose outcomes no longer change)."""


class RedisStore:
    """State in Redis under ``samiam:*`` keys; every key with per-task data expires after ``ttl_s``."""

    def __init__(self, connection: redis.Redis, ttl_s: int, buckets: tuple[float, ...], recent_failures: int):
        self.redis = connection
        self.ttl_s = ttl_s
        self.buckets = buckets
        self.recent_failures = recent_failures
        kwargs = connection.connection_pool.connection_kwargs
        self.url = f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
        self._deposit = connection.register_script(_DEPOSIT)
        self._close = connection.register_script(_CLOSE)
        self._release = connection.register_script(_RELEASE)

    def ping(self) -> bool:
        try:
            return bool(self.redis.ping())
        except redis.exceptions.RedisError:
            return False

    def set_task(self, project, task_id, state, reason=None, batch=None):
        self.set_tasks(project, [task_id], state, reason, batch)

    @redis_errors_as_unavailable
    def set_tasks(self, project, task_ids, state, reason=None, batch=None):
        with self.redis.pipeline(transaction=False) as pipe:
            self.add_task_records(pipe, project, task_ids, state, reason, batch)
            pipe.execute()

    def add_task_records(self, pipe: redis.client.Pipeline, project, task_ids, state, reason=None, batch=None):
        """Add the commands of :meth:`set_tasks` to ``pipe``, which the caller executes."""
        key = f"{PREFIX}:tasks:{project_id(project)}"
        record = json.dumps(task_record(state, reason, batch))
        pipe.hset(key, mapping={str(task_id): record for task_id in task_ids})
        pipe.expire(key, self.ttl_s)

    @redis_errors_as_unavailable
    def tasks(self, project):
        raw = self.redis.hgetall(f"{PREFIX}:tasks:{project_id(project)}")
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    @redis_errors_as_unavailable
    def open_batch(self, batch_id, project, expires_at):
        """Open a batch of ``project`` whose waiter gives up at ``expires_at`` (Unix time): later
        deposits count as closed, and :meth:`sweep_expired_batches` hands it over."""
        key = f"{PREFIX}:batch:{batch_id}"
        with self.redis.pipeline() as pipe:
            pipe.hset(key, mapping={_OPEN: "1", _PROJECT: str(project), _EXPIRES: repr(expires_at),
                                    _DEPOSITS: 0, _FAILURES: 0})
            pipe.expire(key, self.ttl_s)
            pipe.delete(f"{PREFIX}:deposited:{batch_id}")
            pipe.zadd(f"{PREFIX}:open-batches", {batch_id: expires_at})
            pipe.execute()

    @redis_errors_as_unavailable
    def deposit(self, batch_id, task_id, outcome):
        """Store ``outcome`` for whoever closes the batch (True; also when this task was deposited
        before); False when the batch is closed, expired or unknown: the caller delivers it."""
        return bool(self._deposit(keys=[f"{PREFIX}:batch:{batch_id}", f"{PREFIX}:deposited:{batch_id}"],
                                  args=[str(task_id), json.dumps(outcome), int(not outcome["ok"]), time.time(),
                                        self.ttl_s]))

    @redis_errors_as_unavailable
    def wait_for_deposit(self, batch_id, timeout_s):
        """Block until a deposit in the batch since the last call returned (True), or until
        ``timeout_s`` passes (False). ``timeout_s`` must stay below the connection's socket time-out."""
        if timeout_s <= 0:
            return False
        key = f"{PREFIX}:deposited:{batch_id}"
        if self.redis.blpop([key], timeout=max(timeout_s, _REDIS_TIMEOUT_RESOLUTION_S)) is None:
            return False
        self.redis.delete(key)  # one wake-up for all deposits so far: progress() reads them after this
        return True

    @redis_errors_as_unavailable
    def progress(self, batch_id):
        """``(outcomes deposited, of which failed)`` in the batch."""
        deposits, failures = self.redis.hmget(f"{PREFIX}:batch:{batch_id}", _DEPOSITS, _FAILURES)
        return int(deposits or 0), int(failures or 0)

    @redis_errors_as_unavailable
    def close_batch(self, batch_id, check_at=None, handed_over=False):
        """Close the batch and return the outcomes deposited before the close (task id -> outcome);
        None when it was closed before (by the web tier or a sweep) or is unknown. With
        ``check_at`` (a time): the batch's delivery is checked then (:meth:`sweep_answered_batches`),
        as that of an answer or, ``handed_over``, of write-backs."""
        key = f"{PREFIX}:batch:{batch_id}"
        if not self._close(keys=[key, f"{PREFIX}:deposited:{batch_id}", f"{PREFIX}:open-batches",
                                 f"{PREFIX}:answered-batches"],
                           args=[batch_id, self.ttl_s, "" if check_at is None else repr(check_at),
                                 int(handed_over)]):
            return None
        return self._batch_outcomes(batch_id)

    def _batch_outcomes(self, batch_id):
        key = f"{PREFIX}:batch:{batch_id}"
        return _outcomes({k.decode(): v for k, v in self.redis.hscan_iter(key, count=SCAN_COUNT)})

    @redis_errors_as_unavailable
    def sweep_answered_batches(self):
        """A :class:`DueCheck` of every closed batch whose check is due, each to one caller only
        (the batch's outcomes stay readable for ``ttl_s`` after its close)."""
        due = self.redis.zrangebyscore(f"{PREFIX}:answered-batches", "-inf", time.time())
        checked = []
        for batch_id in (b.decode() for b in due):
            if self.redis.zrem(f"{PREFIX}:answered-batches", batch_id):
                project, handed_over = self.redis.hmget(f"{PREFIX}:batch:{batch_id}", _PROJECT, _HANDED_OVER)
                checked.append(DueCheck(project.decode() if project else "", self._batch_outcomes(batch_id),
                                        handed_over is not None))
        return checked

    @redis_errors_as_unavailable
    def sweep_expired_batches(self, check_at):
        """Close every open batch whose waiter's deadline (plus grace) has passed, each filed for
        a check of its hand-over at ``check_at``; returns ``(project, outcomes)`` of each batch
        this call closed (another sweep gets none of them)."""
        expired = self.redis.zrangebyscore(f"{PREFIX}:open-batches", "-inf", time.time())
        swept = []
        for batch_id in (b.decode() for b in expired):
            project = self.redis.hget(f"{PREFIX}:batch:{batch_id}", _PROJECT)
            outcomes = self.close_batch(batch_id, check_at, handed_over=True)
            if outcomes is not None:
                swept.append((project.decode() if project else "", outcomes))
        return swept

    @redis_errors_as_unavailable
    def incr(self, name, amount=1):
        self.redis.hincrbyfloat(f"{PREFIX}:metrics", name, amount)

    @redis_errors_as_unavailable
    def count_for_project(self, project, name, amount=1):
        """Add ``amount`` to counter ``name`` (one of :data:`PROJECT_COUNTS`) of ``project``."""
        self.redis.hincrby(f"{PREFIX}:project-stats", f"{project_id(project)}:{name}", amount)

    @redis_errors_as_unavailable
    def project_stats(self):
        """Project id -> ``{"computed", "delivered", "failed", "last_failure"}``."""
        raw = self.redis.hgetall(f"{PREFIX}:project-stats")
        return stats_by_project({k.decode(): v.decode() for k, v in raw.items()})

    @redis_errors_as_unavailable
    def observe_latency(self, seconds):
        with self.redis.pipeline() as pipe:
            pipe.hincrbyfloat(f"{PREFIX}:metrics", latency_bucket(seconds, self.buckets), 1)
            pipe.hincrbyfloat(f"{PREFIX}:metrics", LATENCY_SUM, seconds)
            pipe.hincrbyfloat(f"{PREFIX}:metrics", LATENCY_COUNT, 1)
            pipe.execute()

    @redis_errors_as_unavailable
    def counters(self):
        return {k.decode(): float(v) for k, v in self.redis.hgetall(f"{PREFIX}:metrics").items()}

    @redis_errors_as_unavailable
    def record_failure(self, entry):
        """Keep ``entry`` (``{"project", "task", "state", "reason"}``) among the recent failures
        and as its project's last failure."""
        entry = failure_entry(entry)
        with self.redis.pipeline() as pipe:
            pipe.lpush(f"{PREFIX}:failures", json.dumps(entry))
            pipe.ltrim(f"{PREFIX}:failures", 0, self.recent_failures - 1)
            pipe.hset(f"{PREFIX}:project-stats", f"{entry['project']}:last_failure", entry["reason"])
            pipe.execute()

    @redis_errors_as_unavailable
    def failures(self):
        return [json.loads(v) for v in self.redis.lrange(f"{PREFIX}:failures", 0, -1)]

    @redis_errors_as_unavailable
    def save_project(self, project, info):
        self.redis.set(f"{PREFIX}:project:{project_id(project)}", json.dumps(info))

    @redis_errors_as_unavailable
    def project(self, project):
        raw = self.redis.get(f"{PREFIX}:project:{project_id(project)}")
        return None if raw is None else json.loads(raw)

    @redis_errors_as_unavailable
    def get_json(self, key):
        raw = self.redis.get(f"{PREFIX}:{key}")
        return None if raw is None else json.loads(raw)

    @redis_errors_as_unavailable
    def set_json(self, key, value, ttl_s):
        self.redis.set(f"{PREFIX}:{key}", json.dumps(value), ex=ttl_s)

    @redis_errors_as_unavailable
    def claim(self, name, owner, ttl_s):
        return bool(self.redis.set(f"{PREFIX}:claim:{name}", owner, nx=True, px=max(1, int(ttl_s * 1000))))

    @redis_errors_as_unavailable
    def release(self, name, owner):
        self._release(keys=[f"{PREFIX}:claim:{name}"], args=[owner])

    @redis_errors_as_unavailable
    def push_reply(self, key, outcome):
        """Hand a click's ``outcome`` to the web tier waiting in :meth:`wait_reply` on ``key``
        (kept one minute: a web tier that gave up never reads it)."""
        with self.redis.pipeline() as pipe:
            pipe.rpush(f"{PREFIX}:{key}", json.dumps(outcome))
            pipe.expire(f"{PREFIX}:{key}", 60)
            pipe.execute()

    @redis_errors_as_unavailable
    def wait_reply(self, key, timeout_s):
        """The outcome pushed to ``key``, waiting up to ``timeout_s`` (below the socket
        time-out) for it; None when none came."""
        if timeout_s <= 0:
            return None
        reply = self.redis.blpop([f"{PREFIX}:{key}"], timeout=max(timeout_s, _REDIS_TIMEOUT_RESOLUTION_S))
        return None if reply is None else json.loads(reply[1])

    @redis_errors_as_unavailable
    def set_device(self, worker, device):
        if device is None:
            self.redis.hdel(f"{PREFIX}:devices", worker)
        else:
            self.redis.hset(f"{PREFIX}:devices", worker, device)

    @redis_errors_as_unavailable
    def devices(self):
        return {k.decode(): v.decode() for k, v in self.redis.hgetall(f"{PREFIX}:devices").items()}


def _outcomes(fields: dict[str, Any]) -> dict[str, dict]:
    return {k: json.loads(v) for k, v in fields.items() if not k.startswith("_")}


def connect(config: ServiceConfig, timeout_s: float | None = None, retry: redis.retry.Retry | None = None) -> redis.Redis:
    """A Redis client for ``config.redis_url``; ``timeout_s`` bounds every socket operation
    (the web tier's calls must fail fast; workers block on the queue and pass None). ``retry``
    replaces redis-py's default retry of failed commands (workers pass a
    :class:`samiam.service.reconnect.RideOut`)."""
    options = {"retry": retry} if retry is not None else {}
    return redis.Redis.from_url(config.redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                **options)


def make_store(config: ServiceConfig, connection: redis.Redis) -> RedisStore:
    return RedisStore(connection, config.result_ttl_s, config.latency_buckets_s, config.recent_failures)


def click_queue_name(queue_name: str, worker: str | None = None) -> str:
    """The shared click queue that goes with prediction queue ``queue_name``, or ``worker``'s own."""
    return f"{queue_name}-clicks" + (f"@{worker}" if worker else "")


ENQUEUE_CHUNK = 500
"""Jobs per Redis transaction when enqueuing in bulk (500 take about 0.15 s)."""


class RQDispatcher:
    """Enqueues one RQ job per task and per write-back on ``config.queue_name``."""

    def __init__(self, config: ServiceConfig, connection: redis.Redis, store: RedisStore):
        self.config = config
        self.queue = Queue(config.queue_name, connection=connection)
        self.clicks = Queue(click_queue_name(config.queue_name), connection=connection)
        self.store = store
        self.url = store.url

    def _enqueue(self, job_datas: list, record: Callable[[redis.client.Pipeline, slice], None] | None = None) -> None:
        """RQ's ``enqueue_many``, ``ENQUEUE_CHUNK`` jobs per transaction so that no single Redis
        reply outlasts the web tier's socket time-out; ``record(pipe, chunk)`` adds what goes with
        the jobs ``job_datas[chunk]`` to their transaction."""
        for start in range(0, len(job_datas), ENQUEUE_CHUNK):
            chunk = slice(start, start + ENQUEUE_CHUNK)
            with self.queue.connection.pipeline() as pipe:
                if record is not None:
                    record(pipe, chunk)
                self.queue.enqueue_many(job_datas[chunk], pipeline=pipe)
                pipe.execute()

    @redis_errors_as_unavailable
    def submit_predictions(self, requests, batch_id):
        """One job per task (``requests``: :meth:`TaskRequest.to_json` dicts of one project),
        enqueued in bulk, each in the same transaction as its task's ``queued`` record: a web
        process killed, or Redis lost, in between leaves neither."""
        retries = self.config.predict_retries
        project, task_ids = requests[0]["project"], [request["task_id"] for request in requests]
        self._enqueue([Queue.prepare_data(
            jobs.predict_task, (request, batch_id),
            retry=Retry(max=retries) if retries else None, on_failure=Callback(jobs.predict_abandoned),
            timeout=self.config.job_timeout_s, result_ttl=self.config.result_ttl_s,
            failure_ttl=self.config.result_ttl_s, description=f"predict task {request['task_id']}")
            for request in requests],
            lambda pipe, chunk: self.store.add_task_records(pipe, project, task_ids[chunk], "queued", batch=batch_id))

    @redis_errors_as_unavailable
    def submit_write_backs(self, predictions, project, answered=False, handed_over=False):
        """One write-back job per task (task id -> prediction), enqueued in bulk."""
        intervals = list(self.config.writeback_retry_intervals_s)
        self._enqueue([Queue.prepare_data(
            jobs.write_back, (task_id, prediction, project, answered, handed_over),
            retry=Retry(max=len(intervals), interval=intervals) if intervals else None,
            timeout=self.config.job_timeout_s, result_ttl=self.config.result_ttl_s,
            failure_ttl=self.config.result_ttl_s,
            description=f"{'check the answer of' if answered else 'write back'} task {task_id}")
            for task_id, prediction in predictions.items()])

    @redis_errors_as_unavailable
    def submit_lesson(self, lesson):
        """One learning job (:mod:`samiam.service.learning`) for ``lesson``."""
        from samiam.service.learning import JOBS
        self.queue.enqueue(JOBS[lesson["kind"]], lesson, job_timeout=self.config.job_timeout_s,
                           result_ttl=self.config.result_ttl_s, failure_ttl=self.config.result_ttl_s,
                           description=f"{lesson['kind']} project {lesson['project']}")

    @redis_errors_as_unavailable
    def queue_depth(self) -> int:
        return self.queue.count

    @redis_errors_as_unavailable
    def workers(self) -> list[dict]:
        devices = self.store.devices()
        return [{"name": w.name, "state": getattr(w.get_state(), "value", w.get_state()), "device": devices.get(w.name, "unknown"),
                 "job": w.get_current_job_id()}
                for w in Worker.all(queue=self.queue)]

    @redis_errors_as_unavailable
    def click_workers(self) -> dict[str, bool]:
        """Live workers that take clicks: name -> busy with a pre-annotation job. A worker whose
        last heartbeat is older than a lease (``SAMIAM_JOB_LEASE_S``) is gone (killed: RQ keeps
        its registration for minutes)."""
        live = {}
        for worker in Worker.all(queue=self.clicks):
            beat = worker.last_heartbeat
            if beat is None or (now() - beat).total_seconds() > self.config.job_lease_s:
                continue
            job = worker.get_current_job_id()
            live[worker.name] = bool(job) and not job.startswith(interactive.JOB_PREFIX)
        return live

    @redis_errors_as_unavailable
    def click(self, job, image_key, deadline_s):
        """Enqueue the click on the queue of the worker :func:`interactive.pick_worker` picks for
        ``image_key`` (the shared click queue when it picks none) and wait for its outcome; the
        job is dropped by RQ if no worker started it within ``deadline_s``."""
        worker = interactive.pick_worker(image_key, self.click_workers())
        queue = self.clicks if worker is None else \
            Queue(click_queue_name(self.config.queue_name, worker), connection=self.queue.connection)
        reply = f"click-reply:{job['id']}"
        queue.enqueue_call(interactive.click_task, args=(job, reply), job_id=interactive.JOB_PREFIX + job["id"],
                           timeout=self.config.job_timeout_s, ttl=max(1, math.ceil(deadline_s)), result_ttl=0,
                           failure_ttl=self.config.result_ttl_s, description=f"click on task {job['task']['task_id']}")
        give_up = time.monotonic() + deadline_s
        while (left := give_up - time.monotonic()) > 0:
            outcome = self.store.wait_reply(reply, min(left, self.config.poll_interval_s))
            if outcome is not None:
                return outcome
        raise interactive.too_late(deadline_s)
