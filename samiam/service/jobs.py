"""The two jobs of the service, as plain importable functions (RQ runs them by name).

* :func:`predict_task` — one Label Studio task (a :class:`TaskRequest` the web tier checked): download its image, look the prediction up in
  the cache or segment it with the loaded engine, stamp it with its delivery key, deposit the
  outcome in its batch, and when the batch was already closed or has expired (no ``/predict``
  waits for it any more), write the prediction back to Label Studio.
* :func:`write_back` — store one prediction in Label Studio (``POST /api/predictions``) unless
  an earlier attempt already did (its delivery key is among the task's predictions); RQ retries
  it with the configured intervals, the last failure is recorded.
* :func:`hand_over_expired` — the sweep (run by workers, and by the embedded dispatcher) that
  writes back the finished predictions of batches whose ``/predict`` went away unanswered, and
  checks later that what was answered or handed over reached Label Studio.
* :func:`predict_abandoned` — RQ's failure callback of :func:`predict_task` jobs, called when the
  worker running one died (RQ's ``AbandonedJobError``): RQ runs the job again while it has
  retries left (``SAMIAM_PREDICT_RETRIES``); after the last one the task fails like any other.

Both read the process's :class:`Runtime` (engine, model, store), installed once by the worker
start-up (:mod:`samiam.service.worker`) or by the embedded server (:mod:`samiam.service.memory_mode`).
This module never imports torch: the engine is built by ``Runtime.engine_factory`` on demand.

Task states recorded in the store: ``queued`` (web tier) -> ``running`` -> ``computed`` (a
prediction exists, not yet delivered) or ``failed`` (with the reason); a computed prediction is
delivered either as ``answered`` (in the ``/predict`` answer) or through ``writing_back`` ->
``written`` (or ``writeback_failed``).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from samiam.errors import ImageFetchError, SamiamError, WriteBackError
from samiam.labelstudio.delivery import delivery_key, find_delivered, key_of, stamp
from samiam.labelstudio.model import SamiamModel
from samiam.labelstudio.model import predict_task as predict_image
from samiam.labelstudio.request import TaskRequest
from samiam.labelstudio.results import versioned
from samiam.service.access import label_studio_for
from samiam.service.cache import PredictionCache, cache_key
from samiam.service.config import ServiceConfig
from samiam.service.store import Store, project_id

log = logging.getLogger(__name__)


class Dispatcher(Protocol):
    """Where jobs run: RQ workers (:class:`samiam.service.redis_mode.RQDispatcher`) or threads of the
    web process (:class:`samiam.service.memory_mode.EmbeddedDispatcher`)."""

    def submit_predictions(self, requests: list[dict], batch_id: str) -> None:
        """Record each of ``requests`` (:meth:`TaskRequest.to_json` dicts of one project) ``queued``
        in batch ``batch_id``, and run :func:`predict_task` on it."""
    def submit_write_backs(self, predictions: dict[int, dict], project: str, answered: bool = False,
                           handed_over: bool = False) -> None:
        """Run :func:`write_back` on each of ``predictions`` (task id -> prediction), with retries."""
    def submit_lesson(self, lesson: dict) -> None:
        """Run the learning job of ``lesson`` (:mod:`samiam.service.learning`)."""
    def click(self, job: dict, image_key: str, deadline_s: float) -> dict:
        """Run :func:`samiam.service.interactive.run_click` on ``job`` ahead of every prediction
        job, preferably where the clicks on ``image_key`` ran before; its outcome, or
        :class:`ClickTimeoutError` after ``deadline_s``."""
    def queue_depth(self) -> int: ...
    def workers(self) -> list[dict]: ...


def make_model(config: ServiceConfig) -> SamiamModel:
    """The Label Studio-facing model for this service's settings, model version and limits."""
    return SamiamModel(config.settings, config.model_version, config.max_tasks_per_request)


def load_engine(config: ServiceConfig):
    """Build the engine and load its models (imports torch)."""
    from samiam.pipeline import Engine
    return Engine(config.settings).load()


class Runtime:
    """What jobs need in this process; the engine is built on first use, once, and so is the
    :class:`~samiam.interactive.Clicker` of click jobs (its cache of SAM image embeddings).
    ``worker_name`` says who answers clicks (the RQ worker's name; ``"embedded"``)."""

    def __init__(self, config: ServiceConfig, store: Store, dispatcher: Dispatcher,
                 engine_factory: Callable[[ServiceConfig], Any] = load_engine, worker_name: str = "embedded"):
        # imported here: prototype_store imports redis_mode, which imports this module
        from samiam.service.prototype_store import make_prototype_store
        self.config = config
        self.store = store
        self.dispatcher = dispatcher
        self.prototypes = make_prototype_store(config, getattr(store, "redis", None))
        """The projects' learned labels (:mod:`samiam.service.prototype_store`), in the store's Redis
        (a :class:`~samiam.service.redis_mode.RedisStore`'s connection), else in memory."""
        self.cache = PredictionCache(store, config.cache_ttl_s)
        self.worker_name = worker_name
        self._engine_factory = engine_factory
        self._engine = None
        self._clicker = None
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

    def clicker(self):
        """The process's :class:`~samiam.interactive.Clicker` on :meth:`engine`."""
        from samiam.interactive import Clicker
        engine = self.engine()
        with self._lock:
            if self._clicker is None:
                self._clicker = Clicker(engine, self.config.click_cache_images)
            return self._clicker


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
    """Label Studio URL and credentials for ``project`` (see :mod:`samiam.service.access`)."""
    from samiam.labelstudio.client import LabelStudioAccess
    config = runtime.config
    limits = {name: value for name, value in (("max_bytes", config.max_image_bytes),
                                              ("timeout_s", config.fetch_timeout_s)) if value is not None}
    url, key = label_studio_for(config, runtime.store.project(project))
    return LabelStudioAccess(url, key, allowed_hosts=config.image_hosts, storage_hosts=config.storage_hosts,
                             local_root=config.local_files_root, **limits)


def _predict(runtime: Runtime, request: TaskRequest) -> dict:
    from samiam.labelstudio.storage import fetch_task_image
    if request.image_url is None:
        raise ImageFetchError(f"task {request.task_id} has no image URL in data[{request.brush.value_key!r}]")
    image = fetch_task_image(request.image_url, request.task_id, access_for(runtime, request.project))
    settings = request.resolve(runtime.config.settings)
    learned = runtime.prototypes.get(request.project)
    if learned is not None and not learned.made_by(runtime.engine().embedder_for(settings)):
        log.warning("project %s: its labels were learned with the %r embedder, which is not the one in use "
                    "(merging.embedder changed, or its features did in an upgrade): predicting without them; "
                    "'Start training' in Label Studio learns them again", project_id(request.project),
                    learned.embedder)
        learned = None
    version = versioned(request.model_version, learned.restrict(request.brush.labels) if learned else None)
    key = cache_key(image, settings, version, request.brush)
    prediction = runtime.cache.get(key)
    if prediction is not None:  # made from these bytes: its regions have their decoded size
        region = prediction["result"][0]
        request.check_size((region["original_height"], region["original_width"]))
    else:
        prediction = predict_image(runtime.engine(), image, request, settings, prototypes=learned)
        runtime.cache.put(key, prediction)
    return prediction


def _fail(store: Store, project: str, task_id: Any, state: str, reason: str, batch: str | None = None) -> None:
    store.set_task(project, task_id, state, reason, batch)
    store.count_for_project(project, "failed")
    store.record_failure({"project": str(project), "task": task_id, "state": state, "reason": reason})


def write_back_later(store: Store, dispatcher: Dispatcher, project: str, predictions: dict[int, dict],
                     batch_id: str | None, why: str) -> None:
    """Record that ``predictions`` (task id -> prediction) go to Label Studio through its API
    (``why``) and submit their write-backs."""
    if predictions:
        store.set_tasks(project, list(predictions), "writing_back", why, batch_id)
        dispatcher.submit_write_backs(predictions, project)


def predict_task(request: dict, batch_id: str) -> dict:
    """Predict one task (``request``: a :meth:`TaskRequest.to_json`) and deliver the outcome;
    returns ``{"ok", "prediction" | "reason"}``.

    Every failure becomes a recorded ``failed`` outcome with its reason (never an exception), so
    that the batch waiting in ``/predict`` learns of it at once.
    """
    runtime = current()
    task = TaskRequest.from_json(request)
    store, task_id, project = runtime.store, task.task_id, task.project
    store.set_task(project, task_id, "running", batch=batch_id)
    store.incr("jobs_started")
    started = time.perf_counter()
    try:
        outcome = {"ok": True, "prediction": _predict(runtime, task)}
    except SamiamError as error:
        outcome = {"ok": False, "reason": str(error)}
    except Exception as error:  # a bug or a resource failure (e.g. out of GPU memory): record, don't hang
        log.exception("task %s failed", task_id)
        outcome = {"ok": False, "reason": f"internal error: {type(error).__name__}: {error}"}
    store.observe_latency(time.perf_counter() - started)
    if outcome["ok"]:
        outcome["prediction"] = stamp(outcome["prediction"], delivery_key(batch_id, task_id))
        store.incr("jobs_finished")
        store.count_for_project(project, "computed")
        store.set_task(project, task_id, "computed", batch=batch_id)
    else:
        store.incr("jobs_failed")
        _fail(store, project, task_id, "failed", outcome["reason"], batch_id)
        log.warning("task %s failed: %s", task_id, outcome["reason"])
    if not store.deposit(batch_id, task_id, outcome) and outcome["ok"]:
        write_back_later(store, runtime.dispatcher, project, {task_id: outcome["prediction"]}, batch_id,
                         "finished after its /predict stopped waiting")
    return outcome


def hand_over_expired(runtime: Runtime | None = None) -> int:
    """Write back the finished predictions of every batch whose ``/predict`` stopped waiting
    without closing it (its request answered 503, its web process was killed) once the batch's
    deadline plus grace has passed; returns how many were handed over. Safe to run anywhere,
    any number of times at once: each expired batch is closed, and handed over, once.

    Also submits the checks that are due (``SAMIAM_ANSWER_CHECK_S`` after a ``/predict`` or this
    sweep closed a batch): a write-back of each finished prediction of the batch, ``answered``
    (and ``handed_over`` when this sweep closed it), which posts only what Label Studio does not
    hold. The close files the check in the same atomic step, so that a process killed between
    a close and queuing the write-backs it decided (a worker here, the web tier in ``/predict``)
    loses no prediction: the check finds it missing and posts it."""
    runtime = runtime or current()
    for project, outcomes, handed_over in runtime.store.sweep_answered_batches():
        finished = _finished(outcomes)
        if finished:
            runtime.dispatcher.submit_write_backs(finished, project, answered=True, handed_over=handed_over)
    handed = 0
    for project, outcomes in runtime.store.sweep_expired_batches(time.time() + runtime.config.answer_check_s):
        finished = _finished(outcomes)
        write_back_later(runtime.store, runtime.dispatcher, project, finished, None,
                         "its /predict went away unanswered")
        handed += len(finished)
        log.warning("project %s: a /predict went away unanswered; %d finished predictions of its batch are "
                    "written back, %d failed", project_id(project), len(finished), len(outcomes) - len(finished))
    return handed


def _finished(outcomes: dict[str, dict | None]) -> dict[int, dict]:
    """The finished predictions among a batch's ``outcomes`` (task id -> outcome; None: not
    deposited): task id -> prediction."""
    return {int(task_id): o["prediction"] for task_id, o in outcomes.items() if o and o["ok"]}


def predict_abandoned(job, connection, exc_type, exc_value, traceback) -> None:
    """RQ ``on_failure`` callback of :func:`predict_task` jobs (which never raise: they only
    "fail" when their worker dies mid-job). Records the retry, or, when no retry is left, fails
    the task and deposits the failure so that a waiting ``/predict`` answers at once."""
    runtime = current()
    store = runtime.store
    request, batch_id = job.args
    task_id, project = request["task_id"], request["project"]
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


CLAIM_TIMEOUTS = 4
"""A delivery claim lasts this many Label Studio time-outs: a token refresh, the list and the
post of one attempt, and one to spare. It outlives its holder only when that holder died."""
CLAIM_POLL_S = 0.1


def await_claim(store: Store, name: str, owner: str, ttl_s: float) -> None:
    """Take claim ``name`` for ``owner`` for ``ttl_s``, waiting while another holder has it (at
    most until it must have expired); :class:`WriteBackError` if it is still taken then."""
    give_up = time.monotonic() + ttl_s + CLAIM_POLL_S
    while not store.claim(name, owner, ttl_s):
        if time.monotonic() > give_up:
            raise WriteBackError(f"another write-back of this prediction held its claim for {ttl_s:g} s")
        time.sleep(CLAIM_POLL_S)


def deliver(task_id: int, prediction: dict, project: str, final: bool, answered: bool = False,
            handed_over: bool = False) -> int | None:
    """Store ``prediction`` for ``task_id`` in Label Studio exactly once; returns its id there.

    When Label Studio already holds a prediction of the task carrying the same delivery key (an
    earlier attempt stored it, then its answer or its worker was lost) nothing is posted. Each
    attempt holds the key's claim (:meth:`Store.claim`) from that check to its post, so that two
    attempts at once (a job run again while its slow first run still posts) post it once.

    ``answered``: the prediction was in a ``/predict`` answer (an answer check, see
    :func:`hand_over_expired`; counted as ``answers_checked``): found, it changes no record; not
    found, the answer was lost and it is posted now (counted as ``answers_lost``; it was counted
    as delivered when answered). ``handed_over`` as well: the check of a batch that the sweep of
    expired batches handed over; not found, its write-back was lost (the worker that handed it
    over died before queuing it) and it is posted and counted as written back now (and as
    ``handovers_lost``).

    A failure is counted and re-raised; when ``final`` it is also recorded as
    ``writeback_failed`` (no retry follows). An answer check that cannot even look (Label
    Studio away) leaves the task's record as it is (its answer most likely arrived) and is
    counted as ``answer_checks_failed`` when ``final``.
    """
    from samiam.labelstudio.client import task_predictions, write_prediction
    runtime = current()
    store = runtime.store
    access, key = access_for(runtime, project), key_of(prediction)
    in_project = project_id(project)
    if answered and not key:
        return None  # an unstamped prediction cannot be found again: nothing to check
    claim, owner = f"delivery:{key}", uuid.uuid4().hex
    looked = False
    try:
        if key:
            await_claim(store, claim, owner, CLAIM_TIMEOUTS * access.timeout_s)
        earlier = find_delivered(task_predictions(task_id, access), key) if key else None
        looked = True
        prediction_id = earlier if earlier is not None else write_prediction(
            task_id, prediction, access, int(in_project) if in_project.isdigit() else None)
    except Exception as error:
        reason = f"write-back to Label Studio failed: {error}"
        if answered and not looked:
            if final:
                store.incr("answer_checks_failed")
            log.log(logging.ERROR if final else logging.WARNING, "task %s: the check that Label Studio stored "
                    "its /predict answer could not look (%s)%s", task_id, error,
                    "; whether it was stored is unknown" if final else "; will retry")
        elif final:
            store.incr("writebacks_failed")
            _fail(store, project, task_id, "writeback_failed", reason)
            log.error("task %s: %s (no retry left)", task_id, reason)
        else:
            store.incr("writeback_retries")
            store.set_task(project, task_id, "writing_back", f"{reason}; will retry")
            log.warning("task %s: %s (will retry)", task_id, reason)
        raise
    finally:
        store.release(claim, owner)
    if answered:
        store.incr("answers_checked")
    if earlier is not None:
        if not answered:
            store.set_task(project, task_id, "written", f"Label Studio prediction {prediction_id}, stored by an "
                                                        "earlier attempt (found by its delivery key)")
        return prediction_id
    if answered and not handed_over:
        store.incr("answers_lost")
        store.set_task(project, task_id, "written", f"Label Studio prediction {prediction_id}, written back: "
                                                    "the /predict answer holding it never reached Label Studio")
        log.warning("task %s: Label Studio did not store the /predict answer holding its prediction (answer lost); "
                    "written back as prediction %s", task_id, prediction_id)
        return prediction_id
    if handed_over:
        store.incr("handovers_lost")
        log.warning("task %s: the write-back of its handed-over prediction was never queued (the worker that "
                    "handed it over died?); written back by the check", task_id)
    store.incr("writebacks_ok")
    store.count_for_project(project, "delivered")
    store.set_task(project, task_id, "written", f"Label Studio prediction {prediction_id}")
    return prediction_id


def write_back(task_id: int, prediction: dict, project: str, answered: bool = False,
               handed_over: bool = False) -> int | None:
    """RQ job around :func:`deliver`; RQ's ``Retry`` re-runs it until no retry is left."""
    from rq import get_current_job
    job = get_current_job()
    return deliver(task_id, prediction, project, final=job is None or not job.retries_left, answered=answered,
                   handed_over=handed_over)
