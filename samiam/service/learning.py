"""The learning jobs: a project's label prototypes from the annotations Label Studio holds.

The web tier turns a webhook into a *lesson* (:func:`samiam.labelstudio.webhooks.read_webhook`:
which annotation or project changed) and answers at once; the lesson runs here, on a worker that
holds the engine (in embedded mode, on the prediction thread). What is learned is read from Label
Studio itself with the project's access (URL and key from ``/setup``, the key only to that
origin), not taken from the webhook's body, which anyone reaching the backend could forge:

* :func:`learn_annotation` — read the annotation and the project's labeling config through Label
  Studio's API (the task's image URL from the webhook, for the task the annotation belongs to),
  fetch the image through the safe fetcher, decode the brush
  regions, embed crops inside each with the engine's texture embedder, and store the result as
  that annotation's contribution (:mod:`samiam.service.prototype_store`: replayed or late
  deliveries change nothing);
* :func:`rebuild_project` — the same for every annotation of the project, replacing all its
  contributions;
* :func:`forget_annotations` — tombstones for deleted annotations (no engine: the web tier runs it).

Each job counts ``lessons_learned`` or ``lessons_failed``; a failure is recorded with its reason
(status page, ``/metrics``) and never raised, like a prediction's.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from samiam.booster.prototypes import Prototypes, update
from samiam.errors import AnnotationError, SamiamError, shown
from samiam.labelstudio.config import BrushConfig, parse_label_config
from samiam.labelstudio.results import annotation_materials
from samiam.labelstudio.tasks import segmentation_url
from samiam.service import jobs, prototype_store

log = logging.getLogger(__name__)


def timestamp(value: Any) -> str:
    """An annotation's ``updated_at`` (ISO 8601 text or a datetime) as ISO 8601 in UTC, comparable as text."""
    try:
        moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise AnnotationError(f"updated_at must be an ISO 8601 time, not {shown(value)}") from None
    moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _contribution(runtime: jobs.Runtime, project: str, brush: BrushConfig, task: dict, annotation: dict) -> dict:
    """What ``annotation`` (as Label Studio holds it) of ``task`` (``{"id", "data"}``) teaches
    (:func:`prototype_store.contribution`)."""
    from samiam.io import load_micrograph
    from samiam.labelstudio.storage import fetch_task_image

    url, _ = segmentation_url(task, brush.value_key)  # the annotation's own size is checked on decoding
    if not isinstance(url, str) or not url:
        raise AnnotationError(f"task {task['id']} has no image URL in data[{brush.value_key!r}]")
    engine = runtime.engine()
    micrograph = load_micrograph(fetch_task_image(url, task["id"], jobs.access_for(runtime, project)),
                                 engine.settings.image)
    masks, labels = annotation_materials(annotation.get("result") or [], brush, shape=micrograph.grey.shape)
    learned = update(Prototypes.empty(engine.embedder), micrograph.grey, masks, labels, engine.embedder,
                     engine.settings)
    return prototype_store.contribution(timestamp(annotation.get("updated_at") or annotation.get("created_at")),
                                        learned)


def _run(lesson: dict, what: str, work) -> dict:
    """Run ``work()`` (returns the new prototypes) and record the outcome."""
    store, project = jobs.current().store, lesson["project"]
    try:
        learned = work()
    except SamiamError as error:
        reason = f"{what}: {error}"
    except Exception as error:  # a bug or a resource failure: record it, keep the worker
        log.exception("project %s: %s failed", project, what)
        reason = f"{what}: internal error: {type(error).__name__}: {error}"
    else:
        store.incr("lessons_learned")
        version = learned.version if learned is not None else None
        log.info("project %s: %s; prototypes now %s", project, what, version)
        return {"ok": True, "prototypes": version}
    store.incr("lessons_failed")
    store.record_failure({"project": project, "task": lesson.get("task", {}).get("id", "-"), "state": "learning_failed",
                          "reason": reason})
    log.warning("project %s: %s", project, reason)
    return {"ok": False, "reason": reason}


def learn_annotation(lesson: dict) -> dict:
    """Learn from one annotation (a ``learn`` lesson); returns ``{"ok", "prototypes" | "reason"}``."""
    from samiam.labelstudio.client import project_label_config, read_annotation

    runtime = jobs.current()
    project, annotation_id = lesson["project"], lesson["annotation"]

    def work():
        if runtime.prototypes.contributions(project).get(annotation_id) == prototype_store.TOMBSTONE:
            return runtime.prototypes.get(project)  # deleted before its job ran
        access = jobs.access_for(runtime, project)
        annotation = read_annotation(int(annotation_id), access)
        if str(annotation.get("project")) != project or annotation.get("task") != lesson["task"]["id"]:
            raise AnnotationError(f"annotation {annotation_id} belongs to task {annotation.get('task')} of project "
                                  f"{annotation.get('project')} in Label Studio, not to task {lesson['task']['id']} "
                                  f"of project {project}")
        if annotation.get("was_cancelled"):
            return runtime.prototypes.get(project)
        brush = parse_label_config(project_label_config(int(project), access))
        made = _contribution(runtime, project, brush, lesson["task"], annotation)
        return runtime.prototypes.update(project, prototype_store.put(annotation_id, made))
    return _run(lesson, f"learning annotation {annotation_id}", work)


def rebuild_project(lesson: dict) -> dict:
    """Rebuild a project's prototypes from all its annotations in Label Studio (a ``rebuild`` lesson)."""
    from samiam.labelstudio.client import project_annotations, project_label_config

    runtime = jobs.current()
    project = lesson["project"]

    def work():
        access = jobs.access_for(runtime, project)
        brush = parse_label_config(project_label_config(int(project), access))
        read_since = timestamp(dt.datetime.now(dt.UTC))
        contributions = {}
        for task, annotation in project_annotations(int(project), access):
            try:
                contributions[str(annotation["id"])] = _contribution(runtime, project, brush, task, annotation)
            except AnnotationError as error:  # one unreadable annotation must not stop the rebuild
                log.warning("project %s: rebuild skips annotation %s: %s", project, annotation["id"], error)
        return runtime.prototypes.update(project, prototype_store.replace_all(contributions, read_since))
    return _run(lesson, "rebuilding from all annotations", work)


def forget_annotations(prototypes, lesson: dict) -> str | None:
    """Tombstone the deleted annotations of a ``forget`` lesson in ``prototypes`` (a prototype
    store); returns the project's new prototype version."""
    learned = prototypes.update(lesson["project"], prototype_store.delete(lesson["annotations"]))
    return learned.version if learned is not None else None


JOBS = {"learn": learn_annotation, "rebuild": rebuild_project}
"""The lessons a worker runs, by kind."""
