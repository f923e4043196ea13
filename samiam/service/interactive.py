"""Click-to-fix through the service: Label Studio's interactive ``/predict``, answered with one
brush region.

Label Studio sends a click or a box of a smart tool (``KeyPointLabels`` / ``RectangleLabels``
with ``smart="true"``) as a ``/predict`` of one task whose ``params.context`` is not empty, from
the labeling page and from ``POST /api/ml/{id}/interactive-annotating``. It stores nothing of the
answer: the annotator sees the region and keeps or discards it. So a click is no batch: nothing
is written back, and a failure is a plain 4xx/5xx with the reason.

* Web side, :func:`answer_click`: the task is checked as ``/predict`` checks tasks
  (:meth:`SamiamModel.requests`), the prompt by :func:`prompt_from_context`; the
  :class:`ClickJob` goes to the dispatcher's ``click`` (ahead of every pre-annotation job), which
  waits for its outcome up to ``SAMIAM_CLICK_DEADLINE_S``.
* Job side, :func:`run_click`: fetch the image, decode it, ask the process's
  :class:`~samiam.interactive.Clicker` (its cache of SAM image embeddings), build the region.
  Never raises: the outcome carries the error's reason, kind and HTTP status.
* Routing, :func:`pick_worker`: the clicks on one image go to one worker (rendezvous hashing of
  the task's image over the live workers), so that the second click finds the embedding cached.

The **semantic** option grows the clicked region to every region of its material in the image
(the booster's clustering seeded by the click): ``"interactive.semantic": true`` in the ML
backend's ``extra_params`` (per project) or in the request's ``params.samiam`` (per request,
wins). :func:`split_options` takes it out before the engine's setting overrides are checked.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from samiam import errors
from samiam.errors import ImageFetchError, RequestError, SamiamError, SettingsError, shown
from samiam.labelstudio.model import SamiamModel
from samiam.labelstudio.prompts import ClickRequest, click_prediction, prompt_from_context
from samiam.labelstudio.request import TaskRequest
from samiam.service import jobs
from samiam.service.store import Store, project_id

log = logging.getLogger(__name__)

OPTION_PREFIX = "interactive."
SEMANTIC = "interactive.semantic"
"""The one interactive option: grow a click to the whole material (true/false, default false)."""
JOB_PREFIX = "click-"
"""RQ job ids of click jobs start with this (a worker running one is not busy with a batch job)."""


def split_options(overrides: Any, where: str) -> tuple[Any, dict[str, bool]]:
    """``overrides`` (``extra_params`` or ``params.samiam``) split into the engine's setting
    overrides (left for :func:`setting_overrides` to check) and the interactive options
    (``{"semantic": bool}`` when given). Raises :class:`SettingsError` for an unknown
    ``interactive.*`` name or a value that is not true or false."""
    if not isinstance(overrides, dict):
        return overrides, {}
    settings, options = {}, {}
    for name, value in overrides.items():
        if not (isinstance(name, str) and name.startswith(OPTION_PREFIX)):
            settings[name] = value
        elif name != SEMANTIC:
            raise SettingsError(f"{where}: unknown option {shown(name)}; the interactive option is "
                                f"{SEMANTIC} (true or false)")
        elif not isinstance(value, bool):
            raise SettingsError(f"{where}: {SEMANTIC} must be true or false; got {shown(value)}")
        else:
            options["semantic"] = value
    return settings, options


@dataclass(frozen=True)
class ClickJob:
    """One click to answer: the task (checked like a ``/predict`` task) and the prompt."""

    id: str
    task: TaskRequest
    click: ClickRequest
    semantic: bool

    @property
    def image_key(self) -> str:
        """What routes the clicks on one image to one worker: the project and the image URL
        (the web tier never downloads the image, so it cannot hash its pixels)."""
        return f"{project_id(self.task.project)}\0{self.task.image_url}"

    def to_json(self) -> dict:
        return {"id": self.id, "task": self.task.to_json(), "click": self.click.to_json(),
                "semantic": self.semantic}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClickJob:
        return cls(data["id"], TaskRequest.from_json(data["task"]), ClickRequest.from_json(data["click"]),
                   bool(data["semantic"]))


def read_click(body: Mapping[str, Any], model: SamiamModel, store: Store) -> ClickJob:
    """The click job of an interactive ``/predict`` body (``params.context`` not empty).

    Raises :class:`RequestError` unless the body holds exactly one task, and the errors of
    :meth:`SamiamModel.requests` and :func:`prompt_from_context` (all 4xx) for the rest.
    """
    params = body["params"]
    request_settings, request_options = split_options(params.get("samiam"), "params.samiam")
    body = {**body, "params": {**params, "samiam": request_settings}}
    requests = model.requests(body, lambda project: (store.project(project) or {}).get("overrides") or {})
    if len(requests) != 1:
        raise RequestError(f"an interactive request (with params.context) is about one task; got {len(requests)}")
    task = requests[0]
    if task.image_url is None:
        raise ImageFetchError(f"task {task.task_id} has no image URL in data[{task.brush.value_key!r}]")
    project_options = (store.project(task.project) or {}).get("interactive") or {}
    options = {**project_options, **request_options}
    return ClickJob(uuid.uuid4().hex, task, prompt_from_context(params["context"]), options.get("semantic", False))


def error_of(outcome: Mapping[str, Any]) -> SamiamError:
    """The error a failed click ``outcome`` reports, as its own class (so with its HTTP status)."""
    kind = getattr(errors, str(outcome.get("kind")), None)
    kind = kind if isinstance(kind, type) and issubclass(kind, SamiamError) else SamiamError
    return kind(outcome["reason"])


def answer_click(body: Mapping[str, Any], *, model: SamiamModel, store: Store, dispatcher: jobs.Dispatcher,
                 deadline_s: float) -> dict:
    """The ``/predict`` answer to an interactive request: ``{"results": [one prediction]}``.

    Raises the job's error (its class, so its HTTP status), or :class:`ClickTimeoutError` (504)
    when no answer came within ``deadline_s``.
    """
    job = read_click(body, model, store)
    started = time.perf_counter()
    outcome = dispatcher.click(job.to_json(), job.image_key, deadline_s)
    if not outcome["ok"]:
        raise error_of(outcome)
    answer = outcome["prediction"]["samiam"]
    log.info("click on task %s answered in %.0f ms by %s (%s path, encoder %s)", job.task.task_id,
             (time.perf_counter() - started) * 1e3, answer["worker"], answer["path"],
             "ran" if answer["encoder_ran"] else "cached or not used")
    return {"results": [outcome["prediction"]]}


def too_late(deadline_s: float) -> errors.ClickTimeoutError:
    return errors.ClickTimeoutError(f"no worker answered the click within SAMIAM_CLICK_DEADLINE_S = {deadline_s:g} s")


# -- the job -----------------------------------------------------------------------------------

def run_click(runtime: jobs.Runtime, job: Mapping[str, Any], worker: str) -> dict:
    """Answer one click (``job``: a :meth:`ClickJob.to_json`) with this process's engine:
    ``{"ok": True, "prediction"}`` or ``{"ok": False, "reason", "kind"}``; never raises.

    The prediction's ``model_version`` ends with the path that answered (``/sam``,
    ``/weight-free``, ``+semantic``), and its ``samiam`` entry says which ``worker`` answered,
    the path, whether SAM's image encoder ran and the step times in ms.
    """
    from samiam.io import load_micrograph
    from samiam.labelstudio.fetch import fetch_image

    store, started = runtime.store, time.perf_counter()
    try:
        click = ClickJob.from_json(job)
        task = click.task
        image = fetch_image(task.image_url, jobs.access_for(runtime, task.project))
        settings = task.resolve(runtime.config.settings)
        fetched = time.perf_counter()
        micrograph = load_micrograph(image, settings.image)
        request = click.click.scaled_to(micrograph.shape)
        answer = runtime.clicker().click(micrograph, request.prompt, semantic=click.semantic, settings=settings)
        prediction = click_prediction(answer, task.brush, request.label, f"{task.model_version}/{answer.path}")
    except SamiamError as error:
        store.incr("clicks_failed")
        log.warning("click failed on %s: %s", worker, error)
        return {"ok": False, "reason": str(error), "kind": type(error).__name__}
    except Exception as error:  # a bug or a resource failure: answer 500 with it, keep the worker
        store.incr("clicks_failed")
        log.exception("click failed on %s", worker)
        return {"ok": False, "reason": f"internal error: {type(error).__name__}: {error}", "kind": "SamiamError"}
    timings = {"fetch_ms": (fetched - started) * 1e3,
               **{name.replace("_s", "_ms"): seconds * 1e3 for name, seconds in answer.timings.items()},
               "total_ms": (time.perf_counter() - started) * 1e3}
    store.incr("clicks_answered")
    if answer.encoder_ran:
        store.incr("click_encoder_runs")
    log.info("click on task %s: %s path on %s, encoder %s, %.0f ms", task.task_id, answer.path, worker,
             "ran" if answer.encoder_ran else "not run", timings["total_ms"])
    prediction["samiam"] = {"worker": worker, "path": answer.path, "encoder_ran": answer.encoder_ran,
                            "timings_ms": {name: round(ms, 1) for name, ms in timings.items()}}
    return {"ok": True, "prediction": prediction}


def click_task(job: dict, reply_key: str) -> None:
    """RQ job: :func:`run_click`, its outcome pushed to ``reply_key`` for the waiting web tier."""
    runtime = jobs.current()
    runtime.store.push_reply(reply_key, run_click(runtime, job, runtime.worker_name))


# -- routing -----------------------------------------------------------------------------------

def rendezvous(key: str, names: list[str]) -> list[str]:
    """``names`` ranked for ``key`` by rendezvous (highest random weight) hashing: each key has a
    stable first choice, and a worker leaving moves only the keys it was first for."""
    return sorted(names, key=lambda name: hashlib.sha256(f"{name}\0{key}".encode()).digest(), reverse=True)


def pick_worker(key: str, workers: Mapping[str, bool]) -> str | None:
    """The worker to send the clicks on image ``key`` to (``workers``: live worker name -> busy
    with a pre-annotation job): the first in rendezvous order that is not busy with one; None
    (the shared click queue, which the first worker to get free takes) when all are, or none lives."""
    return next((name for name in rendezvous(key, list(workers)) if not workers[name]), None)
