"""Shared state of the service: task states, batches, counters, failures, projects, cache entries.

Two implementations with the same methods: :class:`RedisStore` (web tier and workers share it)
and :class:`MemoryStore` (embedded mode, one process). Redis errors become
:class:`QueueUnavailableError` so that callers answer 503 instead of crashing.

A *batch* is one ``/predict`` call. Each finished task *deposits* its outcome in the batch; the
web tier *closes* the batch when it stops waiting. Deposit and close are atomic with respect to
each other, so every outcome is delivered exactly once: either it was deposited before the close
(the web tier answers or writes it back) or the depositing job learns that the batch is closed
and writes it back itself. Every deposit also leaves a notice that wakes the web tier blocked in
:meth:`Store.wait_for_deposit` at once (no polling with sleeps).
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
    def tasks(self, project: str) -> dict[str, dict]: ...
    def open_batch(self, batch_id: str) -> None: ...
    def deposit(self, batch_id: str, task_id: int, outcome: dict) -> bool: ...
    def wait_for_deposit(self, batch_id: str, timeout_s: float) -> bool: ...
    def collected(self, batch_id: str) -> dict[str, dict]: ...
    def close_batch(self, batch_id: str) -> dict[str, dict]: ...
    def incr(self, name: str, amount: float = 1) -> None: ...
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
if redis.call('HEXISTS', KEYS[1], ARGV[3]) == 0 or redis.call('HEXISTS', KEYS[1], ARGV[4]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return 1
"""

_CLOSE = """
redis.call('HSET', KEYS[1], ARGV[1], '1')
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('DEL', KEYS[2])
return redis.call('HGETALL', KEYS[1])
"""


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

    @redis_errors_as_unavailable
    def set_task(self, project, task_id, state, reason=None, batch=None):
        key = f"{PREFIX}:tasks:{project_id(project)}"
        with self.redis.pipeline() as pipe:
            pipe.hset(key, str(task_id), json.dumps(_task_record(state, reason, batch)))
            pipe.expire(key, self.ttl_s)
            pipe.execute()

    @redis_errors_as_unavailable
    def tasks(self, project):
        raw = self.redis.hgetall(f"{PREFIX}:tasks:{project_id(project)}")
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    @redis_errors_as_unavailable
    def open_batch(self, batch_id):
        key = f"{PREFIX}:batch:{batch_id}"
        with self.redis.pipeline() as pipe:
            pipe.hset(key, _OPEN, "1")
            pipe.expire(key, self.ttl_s)
            pipe.delete(f"{PREFIX}:deposited:{batch_id}")
            pipe.execute()

    @redis_errors_as_unavailable
    def deposit(self, batch_id, task_id, outcome):
        """Store ``outcome`` for the web tier; False when the batch is closed (or expired)."""
        return bool(self._deposit(keys=[f"{PREFIX}:batch:{batch_id}", f"{PREFIX}:deposited:{batch_id}"],
                                  args=[str(task_id), json.dumps(outcome), _OPEN, _CLOSED, self.ttl_s]))

    @redis_errors_as_unavailable
    def wait_for_deposit(self, batch_id, timeout_s):
        """Block until a deposit in the batch that no earlier call returned for (True), or until
        ``timeout_s`` passes (False). ``timeout_s`` must stay below the connection's socket time-out."""
        if timeout_s <= 0:
            return False
        key = f"{PREFIX}:deposited:{batch_id}"
        return self.redis.blpop([key], timeout=max(timeout_s, _REDIS_TIMEOUT_RESOLUTION_S)) is not None

    @redis_errors_as_unavailable
    def collected(self, batch_id):
        raw = self.redis.hgetall(f"{PREFIX}:batch:{batch_id}")
        return _outcomes({k.decode(): v for k, v in raw.items()})

    @redis_errors_as_unavailable
    def close_batch(self, batch_id):
        """Close the batch and return the outcomes deposited before the close."""
        flat = self._close(keys=[f"{PREFIX}:batch:{batch_id}", f"{PREFIX}:deposited:{batch_id}"],
                           args=[_CLOSED, self.ttl_s])
        return _outcomes({flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)})

    @redis_errors_as_unavailable
    def incr(self, name, amount=1):
        self.redis.hincrbyfloat(f"{PREFIX}:metrics", name, amount)

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
        with self.redis.pipeline() as pipe:
            pipe.lpush(f"{PREFIX}:failures", json.dumps({**entry, "time": time.time()}))
            pipe.ltrim(f"{PREFIX}:failures", 0, self.recent_failures - 1)
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
    return {k: json.loads(v) for k, v in fields.items() if k not in (_OPEN, _CLOSED)}


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
        self._batches: dict[str, dict[str, dict]] = {}
        self._counters: dict[str, float] = {}
        self._failures: list[dict] = []
        self._projects: dict[str, dict] = {}
        self._values: dict[str, tuple[float, str]] = {}
        self._devices: dict[str, str] = {}

    def ping(self):
        return True

    def set_task(self, project, task_id, state, reason=None, batch=None):
        with self._lock:
            self._tasks.setdefault(project_id(project), {})[str(task_id)] = _task_record(state, reason, batch)

    def tasks(self, project):
        with self._lock:
            return dict(self._tasks.get(project_id(project), {}))

    def open_batch(self, batch_id):
        with self._lock:
            self._batches[batch_id] = {}

    def deposit(self, batch_id, task_id, outcome):
        with self._lock:
            if batch_id not in self._batches:  # closed (popped) or never opened
                return False
            self._batches[batch_id][str(task_id)] = outcome
            self._notices[batch_id] = self._notices.get(batch_id, 0) + 1
            self._deposited.notify_all()
            return True

    def wait_for_deposit(self, batch_id, timeout_s):
        with self._deposited:
            if not self._deposited.wait_for(lambda: self._notices.get(batch_id, 0) > 0, max(timeout_s, 0.0)):
                return False
            self._notices[batch_id] -= 1
            return True

    def collected(self, batch_id):
        with self._lock:
            return dict(self._batches.get(batch_id, {}))

    def close_batch(self, batch_id):
        with self._lock:
            self._notices.pop(batch_id, None)
            return self._batches.pop(batch_id, {})

    def incr(self, name, amount=1):
        with self._lock:
            self._counters[name] = self._counters.get(name, 0.0) + amount

    def observe_latency(self, seconds):
        self.incr(latency_bucket(seconds, self.buckets))
        self.incr(_LATENCY_SUM, seconds)
        self.incr(_LATENCY_COUNT)

    def counters(self):
        with self._lock:
            return dict(self._counters)

    def record_failure(self, entry):
        with self._lock:
            self._failures.insert(0, {**entry, "time": time.time()})
            del self._failures[self.recent_failures:]

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
