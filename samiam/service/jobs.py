"""The two jobs of the service, as plain importable functions (RQ runs them by name).

* :func:`predict_task` — one Label Studio task: download its image, look the prediction up in
  the cache or segment it with the loaded engine, deposit the outcome in its batch, and when the
  batch was already answered (late), write the prediction back to Label Studio.
* :func:`write_back` — POST one prediction to Label Studio's ``/api/predictions``; RQ retries
  it with the configured intervals, the last failure is recorded.
* :func:`predict_abandoned` — RQ's failure callback of :func:`predict_task` jobs, called when the
  worker running one died (RQ's ``AbandonedJobError``): RQ runs the job again while it has
  retries left (``SAMIAM_PREDICT_RETRIES``); after the last one the task fails like any other.

Both read the process's :class:`Runtime` (engine, model, store), installed once by the worker
start-up (:mod:`samiam.service.worker`) or by the embedded server (:mod:`samiam.service.embedded`).
This module never imports torch: the engine is built by ``Runtime.engine_factory`` on demand.

Task states recorded in the store: ``queued`` (web tier) -> ``running`` -> ``done`` (answered to
``/predict``) or ``failed`` (with the reason); late or partly failed batches continue
``writing_back`` -> ``written`` or ``writeback_failed``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from samiam.errors import ImageFetchError, SamiamError
from samiam.labelstudio.model import SamiamModel
from samiam.service.cache import PredictionCache, cache_key
from samiam.service.config import ServiceConfig
from samiam.service.store import Store

log = logging.getLogger(__name__)


class Dispatcher(Protocol):
    """Where jobs run: RQ workers (:class:`samiam.service.queue.RQDispatcher`) or threads of the
    web process (:class:`samiam.service.embedded.EmbeddedDispatcher`)."""

    def submit_predict(self, task: dict, label_config: str, project: str, overrides: dict,
                       batch_id: str) -> None: ...
    def submit_write_back(self, task_id: int, prediction: dict, project: str) -> None: ...
    def queue_depth(self) -> int: ...
    def workers(self) -> list[dict]: ...


def make_model(config: ServiceConfig) -> SamiamModel:
    """The Label Studio-facing model for this service's settings and model version."""
    return SamiamModel(config.settings, config.model_version)


def load_engine(config: ServiceConfig):
    """Build the engine and load its models (imports torch)."""
    from samiam.pipeline import Engine
    return Engine(config.settings).load()


class Runtime:
    """What jobs need in this process; the engine is built on first use, once."""

    def __init__(self, config: ServiceConfig, store: Store, dispatcher: Dispatcher,
                 engine_factory: Callable[[ServiceConfig], Any] = load_engine):
        self.config = config
        self.store = store
        self.dispatcher = dispatcher
        self.model = make_model(config)
        self.cache = PredictionCache(store, config.cache_ttl_s)
        self._engine_factory = engine_factory
        self._engine = None
        self._lock = threading.Lock()

    @property
    def engine_loaded(self) -> bool:
        return self._engine is not None

    def describe_device(self) -> str:
        """``"<proposer> on <device>"`` of the loaded engine, with the GPU's name for CUDA."""
        proposer = self.engine().proposer
        device = str(getattr(proposer, "device", "cpu"))
        if device.startswith("cuda"):
            import torch
            device = f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
        return f"{proposer.name} on {device}"

    def engine(self):
        with self._lock:
            if self._engine is None:
                started = time.perf_counter()
                self._engine = self._engine_factory(self.config)
                log.info("engine loaded in %.1f s", time.perf_counter() - started)
            return self._engine


_runtime: Runtime | None = None


def install(runtime: Runtime | None) -> None:
    """Make ``runtime`` the one the jobs of this process use (None removes it)."""
    global _runtime
    _runtime = runtime


def current() -> Runtime:
    if _runtime is None:
        raise SamiamError("no samiam runtime in this process: start workers with `samiam worker`, "
                          "which loads the engine before taking jobs")
    return _runtime


def access_for(runtime: Runtime, project: str):
    """Label Studio URL and credentials for ``project``: LABEL_STUDIO_URL/LABEL_STUDIO_API_KEY
    when set, else the hostname and token Label Studio sent to ``/setup``."""
    from samiam.labelstudio.client import LabelStudioAccess
    config = runtime.config
    limits = {name: value for name, value in (("max_bytes", config.max_image_bytes),
                                              ("timeout_s", config.fetch_timeout_s)) if value is not None}
    if config.label_studio_url and config.label_studio_api_key:
        url, key = config.label_studio_url, config.label_studio_api_key
    else:
        info = runtime.store.project(project) or {}
        url, key = info.get("hostname") or config.label_studio_url, info.get("access_token")
    return LabelStudioAccess(url, key, allowed_hosts=config.image_hosts,
                             local_root=config.local_files_root, **limits)


def _predict(runtime: Runtime, task: dict, label_config: str, project: str, overrides: dict) -> dict:
    from samiam.labelstudio.client import fetch_image
    from samiam.labelstudio.config import parse_label_config
    from samiam.labelstudio.tasks import segmentation_url
    brush = parse_label_config(label_config)
    url = segmentation_url(task, brush.value_key)  # data["original"] (full range) of imported tasks
    if not isinstance(url, str) or not url:
        raise ImageFetchError(f"task {task.get('id')} has no image URL in data[{brush.value_key!r}]")
    image = fetch_image(url, access_for(runtime, project))
    settings = runtime.model.settings_for(label_config, overrides)
    key = cache_key(image, settings, runtime.config.model_version)
    prediction = runtime.cache.get(key)
    if prediction is None:
        prediction = runtime.model.predict_one(runtime.engine(), image, label_config, overrides)
        if not prediction.get("result"):
            raise SamiamError("the engine found no material region in this image; nothing to store")
        runtime.cache.put(key, prediction)
    return prediction


def _fail(store: Store, project: str, task_id: Any, state: str, reason: str, batch: str | None = None) -> None:
    store.set_task(project, task_id, state, reason, batch)
    store.record_failure({"project": str(project), "task": task_id, "state": state, "reason": reason})


def predict_task(task: dict, label_config: str, project: str, overrides: dict, batch_id: str) -> dict:
    """Predict one task and deliver the outcome; returns ``{"ok", "prediction" | "reason"}``.

    Every failure becomes a recorded ``failed`` outcome with its reason (never an exception), so
    that the batch waiting in ``/predict`` learns of it at once.
    """
    runtime = current()
    store, task_id = runtime.store, task.get("id")
    store.set_task(project, task_id, "running", batch=batch_id)
    store.incr("jobs_started")
    started = time.perf_counter()
    try:
        outcome = {"ok": True, "prediction": _predict(runtime, task, label_config, project, overrides)}
    except SamiamError as error:
        outcome = {"ok": False, "reason": str(error)}
    except Exception as error:  # a bug or a resource failure (e.g. out of GPU memory): record, don't hang
        log.exception("task %s failed", task_id)
        outcome = {"ok": False, "reason": f"internal error: {type(error).__name__}: {error}"}
    store.observe_latency(time.perf_counter() - started)
    if outcome["ok"]:
        store.incr("jobs_finished")
        store.set_task(project, task_id, "done", batch=batch_id)
    else:
        store.incr("jobs_failed")
        _fail(store, project, task_id, "failed", outcome["reason"], batch_id)
        log.warning("task %s failed: %s", task_id, outcome["reason"])
    if not store.deposit(batch_id, task_id, outcome) and outcome["ok"]:
        store.set_task(project, task_id, "writing_back", batch=batch_id)
        runtime.dispatcher.submit_write_back(task_id, outcome["prediction"], project)
    return outcome


def predict_abandoned(job, connection, exc_type, exc_value, traceback) -> None:
    """RQ ``on_failure`` callback of :func:`predict_task` jobs (which never raise: they only
    "fail" when their worker dies mid-job). Records the retry, or, when no retry is left, fails
    the task and deposits the failure so that a waiting ``/predict`` answers at once."""
    runtime = current()
    store = runtime.store
    task, _, project, _, batch_id = job.args
    task_id = task.get("id")
    cause = f"the worker running it stopped mid-job ({getattr(exc_type, '__name__', exc_type)}: killed or out of memory?)"
    if job.retries_left:
        store.incr("jobs_requeued")
        store.set_task(project, task_id, "queued", f"{cause}; run again ({job.retries_left} retries left)", batch_id)
        log.warning("task %s: %s; run again", task_id, cause)
        return
    reason = f"{cause}, and no retry is left (SAMIAM_PREDICT_RETRIES)"
    store.incr("jobs_failed")
    _fail(store, project, task_id, "failed", reason, batch_id)
    store.deposit(batch_id, task_id, {"ok": False, "reason": reason})
    log.error("task %s: %s", task_id, reason)


def deliver(task_id: int, prediction: dict, project: str, final: bool) -> int:
    """POST ``prediction`` for ``task_id`` to Label Studio; returns the new prediction's id.

    A failure is counted and re-raised; when ``final`` it is also recorded as
    ``writeback_failed`` (no retry follows).
    """
    from samiam.labelstudio.client import write_prediction
    runtime = current()
    store = runtime.store
    try:
        prediction_id = write_prediction(task_id, prediction, access_for(runtime, project))
    except Exception as error:
        reason = f"write-back to Label Studio failed: {error}"
        if final:
            store.incr("writebacks_failed")
            _fail(store, project, task_id, "writeback_failed", reason)
            log.error("task %s: %s (no retry left)", task_id, reason)
        else:
            store.incr("writeback_retries")
            store.set_task(project, task_id, "writing_back", f"{reason}; will retry")
            log.warning("task %s: %s (will retry)", task_id, reason)
        raise
    store.incr("writebacks_ok")
    store.set_task(project, task_id, "written", f"Label Studio prediction {prediction_id}")
    return prediction_id


def write_back(task_id: int, prediction: dict, project: str) -> int:
    """RQ job around :func:`deliver`; RQ's ``Retry`` re-runs it until no retry is left."""
    from rq import get_current_job
    job = get_current_job()
    return deliver(task_id, prediction, project, final=job is None or not job.retries_left)
