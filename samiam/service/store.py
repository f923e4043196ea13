"""Shared state of the service: task states, batches, counters, failures, projects, cache entries.

This module holds what both implementations share: the :class:`Store` protocol and the record
formats. :class:`samiam.service.redis_mode.RedisStore` (web tier and workers share it; Redis errors
become :class:`QueueUnavailableError` so that callers answer 503 instead of crashing) and
:class:`samiam.service.memory_mode.MemoryStore` (embedded mode, one process) implement it.

A *batch* is one ``/predict`` call. Each finished task *deposits* its outcome in the batch; the
batch is *closed* once, by whoever hands its outcomes over: the web tier when it stops waiting,
or, when that web tier is gone (its request answered 503, its process killed), the sweep of
batches whose waiter's deadline plus a grace has passed (:meth:`Store.sweep_expired_batches`).
Deposit and close are atomic with respect to each other, so every outcome is delivered exactly
once: either it was deposited before the close (the closer answers or writes it back) or the
depositing job learns that the batch is closed *or expired* and writes it back itself. The web
tier's close also files the batch for an *answer check* at ``check_at`` (in the same atomic
step, so a web process killed between its close and its answer leaves the check behind):
:meth:`Store.sweep_answered_batches` hands each due batch's outcomes over once, and the workers
write back the predictions that Label Studio does not hold (the answer never reached it). The
sweep's close files its batch for a check as well, marked *handed over*: a worker killed between
that close and queuing the batch's write-backs leaves the check behind, which writes them back. A second
deposit of the same task (a job run again) finds the first and delivers nothing. Every deposit
also leaves a notice that wakes the web tier blocked in :meth:`Store.wait_for_deposit` at once.

Per project the store counts predictions *computed*, *delivered* (answered in ``/predict`` or
written back) and *failed*, and keeps the reason of the last failure: what Label Studio does not
show (it answers "Retrieved N predictions" even when it stored none).

A *claim* (:meth:`Store.claim`) is a named lock with an owner and an expiry: one holder at a time
across every process on the store, freed by its owner or, when the owner died, by the expiry.
Write-backs claim their prediction's delivery key, so that two attempts running at once (a slow
worker's lease expired and its job was run again) cannot both post it.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple, Protocol

PREFIX = "samiam"
PROJECT_COUNTS = ("computed", "delivered", "failed")
"""Per-project counters (see :meth:`Store.count_for_project`)."""
LATENCY_SUM = "latency_sum"
LATENCY_COUNT = "latency_count"


def latency_bucket(seconds: float, buckets: tuple[float, ...]) -> str:
    """Counter name of the smallest histogram bucket holding ``seconds`` (``+Inf`` above all)."""
    bound = next((b for b in buckets if seconds <= b), None)
    return f"latency_le_{'+Inf' if bound is None else f'{bound:g}'}"


def project_id(project: Any) -> str:
    """Label Studio's project id from the ``"<id>.<created_at>"`` string of ML calls (or an int)."""
    return str(project).split(".")[0]


class DueCheck(NamedTuple):
    """A closed batch whose check is due (:meth:`Store.sweep_answered_batches`)."""

    project: str
    outcomes: dict[str, dict]
    """Task id -> outcome deposited before the close."""
    handed_over: bool
    """Closed by the sweep of expired batches (its predictions were written back), not by its
    ``/predict`` (its predictions were in the answer)."""


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
    def close_batch(self, batch_id: str, check_at: float | None = None,
                    handed_over: bool = False) -> dict[str, dict] | None: ...
    def sweep_expired_batches(self, check_at: float) -> list[tuple[str, dict[str, dict]]]: ...
    def sweep_answered_batches(self) -> list[DueCheck]: ...
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
    def claim(self, name: str, owner: str, ttl_s: float) -> bool: ...
    def release(self, name: str, owner: str) -> None: ...
    def set_device(self, worker: str, device: str | None) -> None: ...
    def devices(self) -> dict[str, str]: ...


def task_record(state: str, reason: str | None, batch: str | None) -> dict:
    return {"state": state, "reason": reason, "batch": batch, "updated": time.time()}


def failure_entry(entry: dict) -> dict:
    return {**entry, "project": project_id(entry.get("project", "")), "time": time.time()}


def stats_by_project(fields: dict[str, str]) -> dict[str, dict]:
    """``{"<project>:<name>": value}`` -> ``{project: {counts..., "last_failure"}}``."""
    stats: dict[str, dict] = {}
    for field_name, value in fields.items():
        project, _, name = field_name.rpartition(":")
        entry = stats.setdefault(project, {**dict.fromkeys(PROJECT_COUNTS, 0), "last_failure": None})
        entry[name] = value if name == "last_failure" else int(value)
    return stats
