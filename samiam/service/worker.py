"""``samiam worker``: an RQ ``SimpleWorker`` that loads the engine once and keeps it.

No fork per job (the models stay in this process's memory, on its GPU). The worker records its
device under its RQ name so that the status page shows which GPU serves the queue; it runs
RQ's scheduler too, which re-enqueues write-backs whose retry interval has passed.

A worker can die mid-job (SIGKILL, the OOM killer). RQ then calls the job *abandoned* once its
entry in the started-job registry expires, and retries it if it has retries left
(``StartedJobRegistry.cleanup``). A plain ``SimpleWorker`` registers that entry for the whole
job time-out (15 min) and cleans up every 10 min, so :class:`LeasedWorker` gives the running job
a short lease (``SAMIAM_JOB_LEASE_S``) that a thread renews every ``SAMIAM_WORKER_HEARTBEAT_S``
and, in the same thread, runs that clean-up: a job of a dead worker is run again within about
one lease plus one heartbeat, by any live worker (or by the next one to start).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import Any

from rq import Queue, SimpleWorker
from rq.registry import StartedJobRegistry
from rq.timeouts import TimerDeathPenalty

from samiam.errors import SettingsError
from samiam.service import jobs
from samiam.service.config import ServiceConfig
from samiam.service.redis_mode import RQDispatcher, connect, make_store
from samiam.service.store import PREFIX

log = logging.getLogger(__name__)


class LeasedWorker(SimpleWorker):
    """A ``SimpleWorker`` whose running job holds a lease of ``lease_s`` seconds in RQ's
    started-job registry; :meth:`keep_alive` renews it and requeues the jobs of dead workers."""

    def __init__(self, *args, lease_s: int, heartbeat_s: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.lease_s = lease_s
        self.heartbeat_s = heartbeat_s
        self._running = None

    def get_heartbeat_ttl(self, job, working_time: float = 0.0) -> int:
        return self.lease_s

    def prepare_execution(self, job):
        execution = super().prepare_execution(job)
        self._running = (job, execution)
        return execution

    def execute_job(self, job, queue):
        try:
            super().execute_job(job, queue)
        finally:
            self._running = None

    def reap_abandoned(self) -> None:
        """Retry (or fail, when no retry is left) the jobs whose lease expired; one worker at a time."""
        lock = self.connection.lock(f"{PREFIX}:reaper", timeout=self.lease_s, blocking=False)
        if not lock.acquire():
            return
        try:
            for queue in self.queues:  # failure callbacks run under a timer: signals need the main thread
                StartedJobRegistry(queue=queue, death_penalty_class=TimerDeathPenalty).cleanup()
        finally:
            lock.release()

    def keep_alive(self, stop: threading.Event) -> None:
        """Every ``heartbeat_s`` until ``stop``: renew the running job's lease, reap abandoned jobs,
        write back the finished predictions of batches whose ``/predict`` went away unanswered."""
        while not stop.wait(self.heartbeat_s):
            try:
                running = self._running
                if running is not None:
                    self.maintain_heartbeats(*running)
                self.reap_abandoned()
                jobs.hand_over_expired()
            except Exception:  # Redis away for a moment: RQ's own loop reports it; try again next beat
                log.warning("worker %s: lease renewal or clean-up failed", self.name, exc_info=True)


def run_worker(config: ServiceConfig, *, queue_name: str | None = None, burst: bool = False,
               name: str | None = None,
               engine_factory: Callable[[ServiceConfig], Any] = jobs.load_engine) -> bool:
    """Load the engine, then work on the queue until stopped (or, with ``burst``, until it is
    empty). Returns whether any job was performed."""
    if config.embedded:
        raise SettingsError("samiam worker needs REDIS_URL (e.g. redis://localhost:6379/0): without it "
                            "`samiam serve` runs the jobs itself and no worker is needed")
    if queue_name:
        config = dataclasses.replace(config, queue_name=queue_name)
    connection = connect(config)
    store = make_store(config, connection)
    runtime = jobs.Runtime(config, store, RQDispatcher(config, connection, store), engine_factory)
    device = runtime.describe_device()  # loads the engine before the first job is taken
    jobs.install(runtime)
    worker = LeasedWorker([Queue(config.queue_name, connection=connection)], connection=connection, name=name,
                          lease_s=config.job_lease_s, heartbeat_s=config.worker_heartbeat_s)
    store.set_device(worker.name, device)
    log.info("worker %s: %s, queue %r", worker.name, device, config.queue_name)
    worker.reap_abandoned()  # jobs of workers that died while none was left to notice
    stop = threading.Event()
    keeper = threading.Thread(target=worker.keep_alive, args=(stop,), name="samiam-lease", daemon=True)
    keeper.start()
    try:
        return worker.work(burst=burst, with_scheduler=True)
    finally:
        stop.set()
        keeper.join()
        store.set_device(worker.name, None)
        jobs.install(None)
