"""Workers ride out Redis outages: every Redis command of a worker process waits for Redis.

A worker's Redis client gets one :class:`RideOut` (a redis-py ``Retry``): a command that fails
with a connection error or time-out (Redis restarting, loading its append-only file, briefly
unreachable) is sent again after a backoff that grows to :data:`BACKOFF_CAP_S`, for as long as
the outage lasts. Whatever the worker was doing — waiting for a job, renewing a lease,
depositing a finished prediction — pauses and carries on when Redis is back, so no outcome held
in memory is dropped. Each outage is logged twice, not per attempt: once it has lasted
:data:`REPORT_AFTER_S`, and when it ends. When the process is asked to stop
(:meth:`RideOut.stop_waiting`), failing commands raise at once so that the worker can exit; a job
it leaves unfinished is run again by another worker once its lease lapses.

The web tier does not use this: its calls must fail fast (``/health`` has 1 s).
"""

from __future__ import annotations

import logging
import threading
import time

from redis.backoff import EqualJitterBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

BACKOFF_BASE_S = 0.05
"""First wait before a failed Redis command is sent again; it doubles on each failure..."""
BACKOFF_CAP_S = 1.0
"""...up to this: a worker notices that Redis is back at most this late."""
REPORT_AFTER_S = 1.0
"""An outage is logged once it has lasted this long (a restarting Redis flickers: one log, not several)."""


class RideOut(Retry):
    """Retry Redis commands for the whole of an outage; one instance per process, shared by all
    of its connections (redis-py deep-copies a ``Retry`` per connection: this one returns itself)."""

    def __init__(self, where: str):
        super().__init__(EqualJitterBackoff(cap=BACKOFF_CAP_S, base=BACKOFF_BASE_S), retries=-1)
        self.where = where
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._reported = False
        self._back_at = float("-inf")
        self._stopping = threading.Event()

    def __deepcopy__(self, memo) -> RideOut:
        return self

    def call_with_retry(self, do, fail, is_retryable=None, with_failure_count=False):
        attempt_started = [time.monotonic()]

        def attempt():
            attempt_started[0] = time.monotonic()
            return do()

        def failed(error, *failure_count):
            self._failed(error, attempt_started[0])
            fail(error, *failure_count)

        result = super().call_with_retry(attempt, failed, is_retryable, with_failure_count)
        if self._down_since is not None:
            self._succeeded()
        return result

    def _failed(self, error: Exception, attempt_started: float) -> None:
        if self._stopping.is_set():
            raise error
        with self._lock:
            # An attempt sent before Redis came back belongs to the outage that has just ended.
            if self._down_since is None and attempt_started >= self._back_at:
                self._down_since = time.monotonic()
            if not self._reported and self._down_since is not None \
                    and time.monotonic() - self._down_since >= REPORT_AFTER_S:
                self._reported = True
                log.warning("Redis unreachable at %s for %.1f s (%s: %s); waiting for it, retrying every %g s "
                            "at most", self.where, time.monotonic() - self._down_since, type(error).__name__,
                            error, BACKOFF_CAP_S)

    def _succeeded(self) -> None:
        with self._lock:
            if self._down_since is not None:
                self._back_at = time.monotonic()
                if self._reported:
                    log.warning("Redis reachable again at %s after %.1f s", self.where,
                                self._back_at - self._down_since)
                self._down_since, self._reported = None, False

    def back_within(self, seconds: float) -> bool:
        """Whether an outage is going on or ended less than ``seconds`` ago."""
        return self._down_since is not None or time.monotonic() - self._back_at < seconds

    def stop_waiting(self) -> None:
        """From now on a failing command raises instead of waiting (the process is stopping)."""
        self._stopping.set()
