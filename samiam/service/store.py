"""Shared state of the service: task states, batches, counters, failures, projects, cache entries.

Two implementations with the same methods: :class:`RedisStore` (web tier and workers share it)
and :class:`MemoryStore` (embedded mode, one process). Redis errors become
:class:`QueueUnavailableError` so that callers answer 503 instead of crashing.

A *batch* is one ``/predict`` call. Each finished task *deposits* its outcome in the batch; the
batch is *closed* once, by whoever hands its outcomes over: the web tier when it stops waiting,
or, when that web tier is gone (its request answered 503, its process killed), the sweep of
batches whose waiter's deadline plus a grace has passed (:meth:`Store.sweep_expired_batches`).
Deposit and close are atomic with respect to each other, so every outcome is delivered exactly
once: either it was deposited before the close (the closer answers or writes it back) or the
depositing job learns that the batch is closed *or expired* and writes it back itself. A second
deposit of the same task (a job run again) finds the first and delivers nothing. Every deposit
also leaves a notice that wakes the web tier blocked in :meth:`Store.wait_for_deposit` at once.

Per project the store counts predictions *computed*, *delivered* (answered in ``/predict`` or
written back) and *failed*, and keeps the reason of the last failure: what Label Studio does not
show (it answers "Retrieved N predictions" even when it stored none).
"""

from __future__ import annotations

import functools
import json
import threading
import time
from typing import Any, Protocol

import redis

from samiam.errors import QueueUnavailableError

PREFIX = "samiam"
_OPEN = "_open"
_CLOSED = "_closed"
_PROJECT = "_project"
_EXPIRES = "_expires"
_DEPOSITS = "_deposits"
_FAILURES = "_failures"
"""Bookkeeping fields of a batch (task ids never start with ``_``)."""
PROJECT_COUNTS = ("computed", "delivered", "failed")
"""Per-project counters (see :meth:`Store.count_for_project`)."""
_LATENCY_SUM = "latency_sum"
_LATENCY_COUNT = "latency_count"
_REDIS_TIMEOUT_RESOLUTION_S = 0.001
"""Redis rounds blocking time-outs down to milliseconds, and 0 means "wait for ever"."""


def latency_bucket(seconds: float, buckets: tuple[float, ...]) -> str:
    """Counter name of the smallest histogram bucket holding ``seconds`` (``+Inf`` above all)."""
    bound = next((b for b in buckets if seconds <= b), None)
    return f"latency_le_{'+Inf' if bound is None else f'{bound:g}'}"


def project_id(project: Any) -> str:
    """Label Studio's project id from the ``"<id>.<created_at>"`` string of ML calls (or an int)."""
    return str(project).split(".")[0]


class Store(Protocol):
    def ping(self) -> bool: ...
    def set_task(self, project: str, task_id: int, state: str, reason: str | None = None,
                 batch: str | None = None) -> None: ...
    def set_tasks(self, project: str, task_ids: list[int], state: str, reason: str | None = None,
                  batch: str | None = None) -> None: ...
    def tasks(self, project: str) -> dict[str, dict]: ...
    def open_batch(self, batch_id: str, project: str, expires_at: float) -> None: ...
    def deposit(self, batch_id: str, task_id: int, outcome: dict) -> bool: ...
    def wait_for_deposit(self, batch_id: str, timeout_s: float) -> bool: ...
    def progress(self, batch_id: str) -> tuple[int, int]: ...
    def close_batch(self, batch_id: str) -> dict[str, dict] | None: ...
    def sweep_expired_batches(self) -> list[tuple[str, dict[str, dict]]]: ...
    def incr(self, name: str, amount: float = 1) -> None: ...
    def count_for_project(self, project: str, name: str, amount: int = 1) -> None: ...
    def project_stats(self) -> dict[str, dict]: ...
    def observe_latency(self, seconds: float) -> None: ...
    def counters(self) -> dict[str, float]: ...
    def record_failure(self, entry: dict) -> None: ...
    def failures(self) -> list[dict]: ...
    def save_project(self, project: str, info: dict) -> None: ...
    def project(self, project: str) -> dict | None: ...
    def get_json(self, key: str) -> Any: ...
    def set_json(self, key: str, value: Any, ttl_s: int) -> None: ...
    def set_device(self, worker: str, device: str | None) -> None: ...
    def devices(self) -> dict[str, str]: ...


def _task_record(state: str, reason: str | None, batch: str | None) -> dict:
    return {"state": state, "reason": reason, "batch": batch, "updated": time.time()}


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
-- KEYS: batch hash, notice list, open-batch index; ARGV: batch id, ttl. 1 when this call closed it.
redis.call('ZREM', KEYS[3], ARGV[1])
if redis.call('HEXISTS', KEYS[1], '_open') == 0 or redis.call('HEXISTS', KEYS[1], '_closed') == 1 then
  return 0
end
redis.call('HSET', KEYS[1], '_closed', '1')
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('DEL', KEYS[2])
return 1
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

    def ping(self) -> bool:
        try:
            return bool(self.redis.ping())
        except redis.exceptions.RedisError:
            return False

    def set_task(self, project, task_id, state, reason=None, batch=None):
        self.set_tasks(project, [task_id], state, reason, batch)

    @redis_errors_as_unavailable
    def set_tasks(self, project, task_ids, state, reason=None, batch=None):
        key = f"{PREFIX}:tasks:{project_id(project)}"
        record = json.dumps(_task_record(state, reason, batch))
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, mapping={str(task_id): record for task_id in task_ids})
            pipe.expire(key, self.ttl_s)
            pipe.execute()

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
    def close_batch(self, batch_id):
        """Close the batch and return the outcomes deposited before the close (task id -> outcome);
        None when it was closed before (by the web tier or a sweep) or is unknown."""
        key = f"{PREFIX}:batch:{batch_id}"
        if not self._close(keys=[key, f"{PREFIX}:deposited:{batch_id}", f"{PREFIX}:open-batches"],
                           args=[batch_id, self.ttl_s]):
            return None
        return _outcomes({k.decode(): v for k, v in self.redis.hscan_iter(key, count=SCAN_COUNT)})

    @redis_errors_as_unavailable
    def sweep_expired_batches(self):
        """Close every open batch whose waiter's deadline (plus grace) has passed; returns
        ``(project, outcomes)`` of each batch this call closed (another sweep gets none of them)."""
        expired = self.redis.zrangebyscore(f"{PREFIX}:open-batches", "-inf", time.time())
        swept = []
        for batch_id in (b.decode() for b in expired):
            project = self.redis.hget(f"{PREFIX}:batch:{batch_id}", _PROJECT)
            outcomes = self.close_batch(batch_id)
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
        return _project_stats({k.decode(): v.decode() for k, v in raw.items()})

    @redis_errors_as_unavailable
    def observe_latency(self, seconds):
        with self.redis.pipeline() as pipe:
            pipe.hincrbyfloat(f"{PREFIX}:metrics", latency_bucket(seconds, self.buckets), 1)
            pipe.hincrbyfloat(f"{PREFIX}:metrics", _LATENCY_SUM, seconds)
            pipe.hincrbyfloat(f"{PREFIX}:metrics", _LATENCY_COUNT, 1)
            pipe.execute()

    @redis_errors_as_unavailable
    def counters(self):
        return {k.decode(): float(v) for k, v in self.redis.hgetall(f"{PREFIX}:metrics").items()}

    @redis_errors_as_unavailable
    def record_failure(self, entry):
        """Keep ``entry`` (``{"project", "task", "state", "reason"}``) among the recent failures
        and as its project's last failure."""
        entry = _failure_entry(entry)
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


def _failure_entry(entry: dict) -> dict:
    return {**entry, "project": project_id(entry.get("project", "")), "time": time.time()}


def _project_stats(fields: dict[str, str]) -> dict[str, dict]:
    """``{"<project>:<name>": value}`` -> ``{project: {counts..., "last_failure"}}``."""
    stats: dict[str, dict] = {}
    for field_name, value in fields.items():
        project, _, name = field_name.rpartition(":")
        entry = stats.setdefault(project, {**dict.fromkeys(PROJECT_COUNTS, 0), "last_failure": None})
        entry[name] = value if name == "last_failure" else int(value)
    return stats


class _Batch:
    """One batch of the :class:`MemoryStore`."""

    def __init__(self, project: str, expires_at: float):
        self.project = project
        self.expires_at = expires_at
        self.outcomes: dict[str, dict | None] = {}
        self.failures = 0
        self.closed = False


class MemoryStore:
    """The same state in dicts, for the embedded mode (one process, several threads).

    Only cache entries expire (dropped when a new one is stored): an embedded server holds one
    user's session, not a long-lived queue.
    """

    def __init__(self, buckets: tuple[float, ...], recent_failures: int):
        self.buckets = buckets
        self.recent_failures = recent_failures
        self._lock = threading.Lock()
        self._deposited = threading.Condition(self._lock)
        self._notices: dict[str, int] = {}
        self._tasks: dict[str, dict[str, dict]] = {}
        self._batches: dict[str, _Batch] = {}
        self._counters: dict[str, float] = {}
        self._project_stats: dict[str, str] = {}
        self._failures: list[dict] = []
        self._projects: dict[str, dict] = {}
        self._values: dict[str, tuple[float, str]] = {}
        self._devices: dict[str, str] = {}

    def ping(self):
        return True

    def set_task(self, project, task_id, state, reason=None, batch=None):
        self.set_tasks(project, [task_id], state, reason, batch)

    def set_tasks(self, project, task_ids, state, reason=None, batch=None):
        with self._lock:
            records = self._tasks.setdefault(project_id(project), {})
            for task_id in task_ids:
                records[str(task_id)] = _task_record(state, reason, batch)

    def tasks(self, project):
        with self._lock:
            return dict(self._tasks.get(project_id(project), {}))

    def open_batch(self, batch_id, project, expires_at):
        with self._lock:
            self._batches[batch_id] = _Batch(str(project), expires_at)

    def deposit(self, batch_id, task_id, outcome):
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is not None and str(task_id) in batch.outcomes:
                return True
            if batch is None or batch.closed or batch.expires_at < time.time():
                return False
            batch.outcomes[str(task_id)] = outcome
            batch.failures += not outcome["ok"]
            self._notices[batch_id] = self._notices.get(batch_id, 0) + 1
            self._deposited.notify_all()
            return True

    def wait_for_deposit(self, batch_id, timeout_s):
        with self._deposited:
            if not self._deposited.wait_for(lambda: self._notices.get(batch_id, 0) > 0, max(timeout_s, 0.0)):
                return False
            self._notices[batch_id] = 0
            return True

    def progress(self, batch_id):
        with self._lock:
            batch = self._batches.get(batch_id)
            return (0, 0) if batch is None else (len(batch.outcomes), batch.failures)

    def close_batch(self, batch_id):
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None or batch.closed:
                return None
            batch.closed = True
            self._notices.pop(batch_id, None)
            outcomes, batch.outcomes = batch.outcomes, dict.fromkeys(batch.outcomes)  # ids only: a re-run's check
            return outcomes

    def sweep_expired_batches(self):
        now = time.time()
        with self._lock:
            expired = [b for b, batch in self._batches.items() if not batch.closed and batch.expires_at < now]
        swept = []
        for batch_id in expired:
            outcomes = self.close_batch(batch_id)
            if outcomes is not None:
                swept.append((self._batches[batch_id].project, outcomes))
        return swept

    def incr(self, name, amount=1):
        with self._lock:
            self._counters[name] = self._counters.get(name, 0.0) + amount

    def count_for_project(self, project, name, amount=1):
        key = f"{project_id(project)}:{name}"
        with self._lock:
            self._project_stats[key] = str(int(self._project_stats.get(key, 0)) + amount)

    def project_stats(self):
        with self._lock:
            return _project_stats(dict(self._project_stats))

    def observe_latency(self, seconds):
        self.incr(latency_bucket(seconds, self.buckets))
        self.incr(_LATENCY_SUM, seconds)
        self.incr(_LATENCY_COUNT)

    def counters(self):
        with self._lock:
            return dict(self._counters)

    def record_failure(self, entry):
        entry = _failure_entry(entry)
        with self._lock:
            self._failures.insert(0, entry)
            del self._failures[self.recent_failures:]
            self._project_stats[f"{entry['project']}:last_failure"] = entry["reason"]

    def failures(self):
        with self._lock:
            return list(self._failures)

    def save_project(self, project, info):
        with self._lock:
            self._projects[project_id(project)] = dict(info)

    def project(self, project):
        with self._lock:
            return self._projects.get(project_id(project))

    def get_json(self, key):
        with self._lock:
            expires, raw = self._values.get(key, (0.0, "null"))
            return json.loads(raw) if expires > time.time() else None

    def set_json(self, key, value, ttl_s):
        now = time.time()
        with self._lock:
            self._values = {k: v for k, v in self._values.items() if v[0] > now}
            self._values[key] = (now + ttl_s, json.dumps(value))

    def set_device(self, worker, device):
        with self._lock:
            if device is None:
                self._devices.pop(worker, None)
            else:
                self._devices[worker] = device

    def devices(self):
        with self._lock:
            return dict(self._devices)
