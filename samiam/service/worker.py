"""``samiam worker``: an RQ ``SimpleWorker`` that loads the engine once and keeps it.

No fork per job (the models stay in this process's memory, on its GPU). The worker records its
device under its RQ name so that the status page shows which GPU serves the queue; it runs
RQ's scheduler too, which re-enqueues write-backs whose retry interval has passed.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from rq import Queue, SimpleWorker

from samiam.errors import SettingsError
from samiam.service import jobs
from samiam.service.config import ServiceConfig
from samiam.service.queue import RQDispatcher, connect, make_store

log = logging.getLogger(__name__)


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
    worker = SimpleWorker([Queue(config.queue_name, connection=connection)], connection=connection, name=name)
    store.set_device(worker.name, device)
    log.info("worker %s: %s, queue %r", worker.name, device, config.queue_name)
    try:
        return worker.work(burst=burst, with_scheduler=True)
    finally:
        store.set_device(worker.name, None)
        jobs.install(None)
