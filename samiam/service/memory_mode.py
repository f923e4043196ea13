"""Embedded mode (no ``REDIS_URL``): state in memory (:class:`MemoryStore`) and jobs in threads of
the web process (:class:`EmbeddedDispatcher`).

One thread runs predictions and learning jobs (so inference is serialised and one engine,
loaded on the first task, serves them all); another runs write-backs and waits between their
retries without holding up predictions; a third, every ``SAMIAM_WORKER_HEARTBEAT_S``, hands over
the batches whose ``/predict`` went away unanswered (:func:`samiam.service.jobs.hand_over_expired`).
Clicks of smart tools have a thread of their own (:meth:`EmbeddedDispatcher.click`): they never
wait behind the queue of predictions, and share the engine and its click cache.
Nothing survives a restart: this is the laptop mode of ``samiam serve``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from samiam.service import interactive, jobs
from samiam.service.config import ServiceConfig
from samiam.service.store import (
    LATENCY_COUNT,
    LATENCY_SUM,
    DueCheck,
    failure_entry,
    latency_bucket,
    project_id,
    stats_by_project,
    task_record,
)

log = logging.getLogger(__name__)


class EmbeddedDispatcher:
    def __init__(self, config: ServiceConfig, sleep=time.sleep):
        self.config = config
        self.runtime: jobs.Runtime | None = None
        self._sleep = sleep
        self._predictions = ThreadPoolExecutor(1, thread_name_prefix="samiam-predict")
        self._write_backs = ThreadPoolExecutor(1, thread_name_prefix="samiam-write-back")
        self._clicks = ThreadPoolExecutor(1, thread_name_prefix="samiam-click")
        self._pending = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sweeper = threading.Thread(target=self._sweep, name="samiam-sweep", daemon=True)
        self._sweeper.start()

    def _sweep(self) -> None:
        while not self._stop.wait(self.config.worker_heartbeat_s):
            if self.runtime is not None:
                try:
                    jobs.hand_over_expired(self.runtime)
                except Exception:  # a bug here must not stop the next sweeps
                    log.exception("hand-over of expired batches failed")

    def _counted(self, function, *args):
        try:
            function(*args)
        except Exception:  # already recorded by the job; keep the thread alive
            log.debug("embedded job failed", exc_info=True)
        finally:
            with self._lock:
                self._pending -= 1

    def _submit(self, executor: ThreadPoolExecutor, function, *args) -> None:
        with self._lock:
            self._pending += 1
        executor.submit(self._counted, function, *args)

    def submit_predictions(self, requests, batch_id):
        self.runtime.store.set_tasks(requests[0]["project"], [r["task_id"] for r in requests], "queued", batch=batch_id)
        for request in requests:
            self._submit(self._predictions, jobs.predict_task, request, batch_id)

    def submit_write_backs(self, predictions, project, answered=False, handed_over=False):
        for task_id, prediction in predictions.items():
            self._submit(self._write_backs, self._write_back_with_retries, task_id, prediction, project, answered,
                         handed_over)

    def submit_lesson(self, lesson):
        """On the prediction thread, which holds the engine."""
        from samiam.service.learning import JOBS
        self._submit(self._predictions, JOBS[lesson["kind"]], lesson)

    def click(self, job, image_key, deadline_s):
        """Run the click on the click thread (one process holds one embedding cache, so
        ``image_key`` routes nothing) and wait up to ``deadline_s`` for it."""
        future = self._clicks.submit(interactive.run_click, self.runtime, job, self.runtime.worker_name)
        try:
            return future.result(timeout=deadline_s)
        except FutureTimeout:
            future.cancel()  # not started yet: never run; running: its answer is dropped
            raise interactive.too_late(deadline_s) from None

    def _write_back_with_retries(self, task_id, prediction, project, answered, handed_over):
        intervals = self.config.writeback_retry_intervals_s
        for attempt in range(len(intervals) + 1):
            try:
                jobs.deliver(task_id, prediction, project, final=attempt == len(intervals), answered=answered,
                             handed_over=handed_over)
                return
            except Exception as error:  # noqa: BLE001 - deliver() recorded it; retry after the interval
                log.debug("write-back of task %s, attempt %d: %s", task_id, attempt + 1, error)
                if attempt < len(intervals):
                    self._sleep(intervals[attempt])

    def queue_depth(self) -> int:
        with self._lock:
            return self._pending

    def workers(self) -> list[dict]:
        runtime = self.runtime
        loaded = runtime is not None and runtime.engine_loaded
        return [{"name": "embedded", "state": "busy" if self.queue_depth() else "idle",
                 "device": runtime.describe_device() if loaded else "engine loads on the first task",
                 "job": None}]

    def shutdown(self) -> None:
        self._stop.set()
        self._sweeper.join()
        self._predictions.shutdown(wait=True)
        self._write_backs.shutdown(wait=True)
        self._clicks.shutdown(wait=True)


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

    Only cache entries (dropped when a new one is stored) and claims expire: an embedded server holds one
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
        self.stats_by_project: dict[str, str] = {}
        self._failures: list[dict] = []
        self._projects: dict[str, dict] = {}
        self._values: dict[str, tuple[float, str]] = {}
        self._devices: dict[str, str] = {}
        self._claims: dict[str, tuple[float, str]] = {}
        """name -> (expiry, owner)."""
        self._checks: dict[str, tuple[float, DueCheck]] = {}
        """batch id -> (time of its check, what the check reads)."""

    def ping(self):
        return True

    def set_task(self, project, task_id, state, reason=None, batch=None):
        self.set_tasks(project, [task_id], state, reason, batch)

    def set_tasks(self, project, task_ids, state, reason=None, batch=None):
        with self._lock:
            records = self._tasks.setdefault(project_id(project), {})
            for task_id in task_ids:
                records[str(task_id)] = task_record(state, reason, batch)

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

    def close_batch(self, batch_id, check_at=None, handed_over=False):
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None or batch.closed:
                return None
            batch.closed = True
            self._notices.pop(batch_id, None)
            outcomes, batch.outcomes = batch.outcomes, dict.fromkeys(batch.outcomes)  # ids only: a re-run's check
            if check_at is not None:
                self._checks[batch_id] = (check_at, DueCheck(batch.project, outcomes, handed_over))
            return outcomes

    def sweep_answered_batches(self):
        now = time.time()
        with self._lock:
            due = [b for b, (check_at, _) in self._checks.items() if check_at <= now]
            return [self._checks.pop(b)[1] for b in due]

    def sweep_expired_batches(self, check_at):
        now = time.time()
        with self._lock:
            expired = [b for b, batch in self._batches.items() if not batch.closed and batch.expires_at < now]
        swept = []
        for batch_id in expired:
            outcomes = self.close_batch(batch_id, check_at, handed_over=True)
            if outcomes is not None:
                swept.append((self._batches[batch_id].project, outcomes))
        return swept

    def incr(self, name, amount=1):
        with self._lock:
            self._counters[name] = self._counters.get(name, 0.0) + amount

    def count_for_project(self, project, name, amount=1):
        key = f"{project_id(project)}:{name}"
        with self._lock:
            self.stats_by_project[key] = str(int(self.stats_by_project.get(key, 0)) + amount)

    def project_stats(self):
        with self._lock:
            return stats_by_project(dict(self.stats_by_project))

    def observe_latency(self, seconds):
        self.incr(latency_bucket(seconds, self.buckets))
        self.incr(LATENCY_SUM, seconds)
        self.incr(LATENCY_COUNT)

    def counters(self):
        with self._lock:
            return dict(self._counters)

    def record_failure(self, entry):
        entry = failure_entry(entry)
        with self._lock:
            self._failures.insert(0, entry)
            del self._failures[self.recent_failures:]
            self.stats_by_project[f"{entry['project']}:last_failure"] = entry["reason"]

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

    def claim(self, name, owner, ttl_s):
        now = time.time()
        with self._lock:
            expires, _ = self._claims.get(name, (0.0, ""))
            if expires > now:
                return False
            self._claims[name] = (now + ttl_s, owner)
            return True

    def release(self, name, owner):
        with self._lock:
            if self._claims.get(name, (0.0, ""))[1] == owner:
                del self._claims[name]

    def set_device(self, worker, device):
        with self._lock:
            if device is None:
                self._devices.pop(worker, None)
            else:
                self._devices[worker] = device

    def devices(self):
        with self._lock:
            return dict(self._devices)
