"""``samiam worker``: an RQ ``SimpleWorker`` that loads the engine once and keeps it.

No fork per job (the models stay in this process's memory, on its GPU), and no forked RQ
scheduler either: a worker is one process, so nothing of it survives a SIGKILL. The worker
records its device under its RQ name so that the status page shows which GPU serves the queue.

A worker can die mid-job (SIGKILL, the OOM killer). RQ then calls the job *abandoned* once its
entry in the started-job registry expires, and retries it if it has retries left
(``StartedJobRegistry.cleanup``). A plain ``SimpleWorker`` registers that entry for the whole
job time-out (15 min) and cleans up every 10 min, so :class:`LeasedWorker` gives the running job
a short lease (``SAMIAM_JOB_LEASE_S``) and runs a keep-alive thread that, every
``SAMIAM_WORKER_HEARTBEAT_S``:

* renews the worker's heartbeat and its running job's lease (and registers the worker again if
  Redis lost its registration);
* does the work of RQ's scheduler — moves due scheduled jobs (write-back retries) to the queue —
  under RQ's scheduler lock, held for one lease: when its holder dies, another worker takes it
  over within about a lease plus a heartbeat;
* reaps abandoned jobs: a job of a dead worker is run again within about one lease plus one
  heartbeat, by any live worker (or by the next one to start).

Redis outages are ridden out (:mod:`samiam.service.reconnect`): every Redis command waits for
Redis, and after an outage no job is reaped for one grace period, so that the live workers,
whose leases lapsed while Redis was away, renew them first.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from rq import Queue, SimpleWorker, worker_registration
from rq.registry import StartedJobRegistry
from rq.scheduler import RQScheduler
from rq.scripts import acquire_or_refresh_lock, release_lock
from rq.timeouts import TimerDeathPenalty
from rq.utils import current_timestamp, now, utcparse

from samiam.errors import SettingsError
from samiam.service import jobs
from samiam.service.config import ServiceConfig
from samiam.service.reconnect import BACKOFF_CAP_S, RideOut
from samiam.service.redis_mode import RQDispatcher, click_queue_name, connect, make_store
from samiam.service.store import PREFIX

log = logging.getLogger(__name__)


class LeasedWorker(SimpleWorker):
    """A ``SimpleWorker`` whose running job holds a lease of ``lease_s`` seconds in RQ's
    started-job registry, renewed by a keep-alive thread that also schedules and reaps."""

    def __init__(self, *args, lease_s: int, heartbeat_s: float, ride_out: RideOut, **kwargs):
        super().__init__(*args, **kwargs)
        self.lease_s = lease_s
        self.heartbeat_s = heartbeat_s
        self.ride_out = ride_out
        self.outage_grace_s = lease_s + heartbeat_s + BACKOFF_CAP_S
        """After an outage, how long jobs are not reaped: every live worker renews its lease first."""
        self._running = None
        self._scheduler = RQScheduler(self.queues, connection=self.connection, serializer=self.serializer)
        self._stop_keep_alive = threading.Event()
        self._keeper: threading.Thread | None = None

    # -- the name ------------------------------------------------------------------------------

    def claim_name(self) -> None:
        """Free this worker's name in Redis before it registers: the registration a dead worker of
        that name left behind (no heartbeat for a lease) is removed; a live one's keeps the name
        and this worker is refused. Waits up to a lease for a recent heartbeat to go stale."""
        give_up = time.monotonic() + self.lease_s + self.heartbeat_s
        while True:
            age = self._registered_heartbeat_age()
            if age is None:
                return
            if age >= self.lease_s:
                log.warning("worker %s: removing the registration left by a dead worker of that name "
                            "(last heartbeat %.0f s ago)", self.name, age)
                self.register_death()
                return
            if time.monotonic() > give_up:
                raise SettingsError(
                    f"a live worker named {self.name!r} is registered in Redis (its last heartbeat was "
                    f"{age:.1f} s ago): start this one with another --name, or stop that one first")
            time.sleep(self.heartbeat_s)

    def _registered_heartbeat_age(self) -> float | None:
        """Seconds since the last heartbeat of the live registration of this name; None if none."""
        death, beat = self.connection.hmget(self.key, ["death", "last_heartbeat"])
        if death is not None or not self.connection.exists(self.key):
            return None
        return float("inf") if beat is None else (now() - utcparse(beat.decode())).total_seconds()

    # -- the lease -----------------------------------------------------------------------------

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

    # -- the keep-alive thread, from registration to death -------------------------------------

    def bootstrap(self, *args, **kwargs):
        super().bootstrap(*args, **kwargs)
        self._keeper = threading.Thread(target=self.keep_alive, name="samiam-keep-alive", daemon=True)
        self._keeper.start()

    def teardown(self):
        self._stop_keep_alive.set()
        if self._keeper is not None:
            self._keeper.join()
        try:
            for queue in self.queues:  # the next scheduler need not wait for the lock to expire
                release_lock(self.connection, RQScheduler.get_locking_key(queue.name), self.name)
        finally:
            super().teardown()

    def request_stop(self, signum, frame):
        self.ride_out.stop_waiting()  # asked to stop: a Redis outage must not keep the process alive
        super().request_stop(signum, frame)

    def keep_alive(self) -> None:
        """Every ``heartbeat_s`` until teardown: :meth:`beat`."""
        while not self._stop_keep_alive.wait(self.heartbeat_s):
            try:
                self.beat()
            except Exception:  # not an outage (ridden out below): log it and try again next beat
                log.warning("worker %s: keep-alive beat failed", self.name, exc_info=True)

    def beat(self) -> None:
        """Renew the worker's heartbeat and its running job's lease, move due scheduled jobs,
        reap abandoned jobs, write back the finished predictions of batches whose ``/predict``
        went away unanswered."""
        self.renew_registration()
        running = self._running
        if running is not None:
            self.maintain_heartbeats(*running)
        self.schedule_due_jobs()
        self.reap_abandoned()
        jobs.hand_over_expired()

    def renew_registration(self) -> None:
        """Heartbeat; when Redis lost the worker's registration (restarted without its data),
        register again so that ``/health`` and the status page count this worker."""
        with self.connection.pipeline() as pipeline:
            self.heartbeat(pipeline=pipeline)
            pipeline.sismember(self.redis_workers_keys, self.key)
            registered = pipeline.execute()[-1]
        # Not "did the heartbeat's HSET make a new hash": RQ's own loop (a state change, its
        # heartbeat after a dequeue) may have re-made the hash first, but never the registry entry.
        if not registered:
            log.warning("worker %s: Redis had lost this worker's registration; registering again", self.name)
            with self.connection.pipeline() as pipeline:
                pipeline.hset(self.key, mapping=self.serialize())
                worker_registration.register(self, pipeline)
                self.set_state(self.get_state(), pipeline=pipeline)
                pipeline.execute()

    def schedule_due_jobs(self) -> None:
        """RQ's scheduler's work: move the due jobs of the scheduled-job registry to the queue,
        under RQ's scheduler lock, held (and renewed each beat) for one lease only."""
        for queue in self.queues:
            lock = RQScheduler.get_locking_key(queue.name)
            if acquire_or_refresh_lock(self.connection, lock, self.name, self.lease_s) == "taken":
                continue
            self._scheduler.prepare_registries([queue.name])
            self._scheduler.enqueue_scheduled_jobs()

    def reap_abandoned(self) -> None:
        """Retry (or fail, when no retry is left) the jobs whose lease had expired when this was
        called; one worker at a time, and not during the grace period after a Redis outage.

        The cut-off is read before the first Redis command: a command that waits out an outage
        (taking the reaper's lock, say) must not make the leases that lapsed during it, those of
        live workers that could not reach Redis either, look abandoned."""
        cutoff = current_timestamp()
        if self.ride_out.back_within(self.outage_grace_s):
            return
        lock = self.connection.lock(f"{PREFIX}:reaper", timeout=self.lease_s, blocking=False)
        if not lock.acquire():
            return
        try:
            for queue in self.queues:  # failure callbacks run under a timer: signals need the main thread
                StartedJobRegistry(queue=queue, death_penalty_class=TimerDeathPenalty).cleanup(timestamp=cutoff)
        finally:
            lock.release()

    def clean_registries(self):
        """RQ's periodic clean-up (every ``maintenance_interval``, 10 min), which reaps too:
        deferred (to the next dequeue) during an outage's grace period. RQ reads its cut-off
        itself, a few commands after this check: an outage that begins within those milliseconds
        can have a live worker's job run again (delivered once all the same: delivery keys)."""
        if not self.ride_out.back_within(self.outage_grace_s):
            super().clean_registries()


def run_worker(config: ServiceConfig, *, queue_name: str | None = None, burst: bool = False,
               name: str | None = None,
               engine_factory: Callable[[ServiceConfig], Any] = jobs.load_engine) -> bool:
    """Load the engine, then work on the queues until stopped (or, with ``burst``, until they
    are empty): this worker's own click queue first, then the shared click queue, then the
    prediction queue (see :mod:`samiam.service.redis_mode`). Returns whether any job was performed."""
    if config.embedded:
        raise SettingsError("samiam worker needs REDIS_URL (e.g. redis://localhost:6379/0): without it "
                            "`samiam serve` runs the jobs itself and no worker is needed")
    if queue_name:
        config = dataclasses.replace(config, queue_name=queue_name)
    ride_out = RideOut(config.redis_url.rsplit("@", 1)[-1])  # no password in the logs
    connection = connect(config, retry=ride_out)
    store = make_store(config, connection)
    name = name or uuid.uuid4().hex  # the web tier finds this worker's click queue by its name
    runtime = jobs.Runtime(config, store, RQDispatcher(config, connection, store), engine_factory, worker_name=name)
    device = runtime.describe_device()  # loads the engine before the first job is taken
    jobs.install(runtime)
    queues = [Queue(queue, connection=connection) for queue in (
        click_queue_name(config.queue_name, name), click_queue_name(config.queue_name), config.queue_name)]
    worker = LeasedWorker(queues, connection=connection, name=name,
                          lease_s=config.job_lease_s, heartbeat_s=config.worker_heartbeat_s, ride_out=ride_out)
    worker.claim_name()
    store.set_device(worker.name, device)
    log.info("worker %s: %s, queues %s", worker.name, device, ", ".join(repr(q.name) for q in queues))
    try:
        worker.schedule_due_jobs()
        worker.reap_abandoned()  # jobs of workers that died while none was left to notice
        return worker.work(burst=burst)
    finally:
        store.set_device(worker.name, None)
        jobs.install(None)
