"""Embedded mode (no ``REDIS_URL``): jobs run in threads of the web process.

One thread runs predictions (so inference is serialised and one engine, loaded on the first
task, serves them all); another runs write-backs and waits between their retries without
holding up predictions. Nothing survives a restart: this is the laptop mode of ``samiam serve``.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from samiam.service import jobs
from samiam.service.config import ServiceConfig

log = logging.getLogger(__name__)


class EmbeddedDispatcher:
    def __init__(self, config: ServiceConfig, sleep=time.sleep):
        self.config = config
        self.runtime: jobs.Runtime | None = None
        self._sleep = sleep
        self._predictions = ThreadPoolExecutor(1, thread_name_prefix="samiam-predict")
        self._write_backs = ThreadPoolExecutor(1, thread_name_prefix="samiam-write-back")
        self._pending = 0
        self._lock = threading.Lock()

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

    def submit_predict(self, request, batch_id):
        self._submit(self._predictions, jobs.predict_task, request, batch_id)

    def submit_write_back(self, task_id, prediction, project):
        self._submit(self._write_backs, self._write_back_with_retries, task_id, prediction, project)

    def _write_back_with_retries(self, task_id, prediction, project):
        intervals = self.config.writeback_retry_intervals_s
        for attempt in range(len(intervals) + 1):
            try:
                jobs.deliver(task_id, prediction, project, final=attempt == len(intervals))
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
        self._predictions.shutdown(wait=True)
        self._write_backs.shutdown(wait=True)

