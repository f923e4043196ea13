"""The learning jobs: a project's label prototypes from the annotations Label Studio sends.

The web tier turns a webhook into a *lesson* (:func:`samiam.labelstudio.webhooks.read_webhook`)
and answers at once; the lesson runs here, on a worker that holds the engine (in embedded mode,
on the prediction thread):

* :func:`learn_annotation` — fetch the task's image through the safe fetcher with the project's
  Label Studio access, decode the annotation's brush regions, embed crops inside each with the
  engine's texture embedder, and store the result as that annotation's contribution
  (:mod:`samiam.service.prototype_store`: replayed or late deliveries change nothing);
* :func:`rebuild_project` — read every annotation of the project through Label Studio's API and
  replace all its contributions;
* :func:`forget_annotations` — tombstones for deleted annotations (no engine: the web tier runs it).

Each job counts ``lessons_learned`` or ``lessons_failed``; a failure is recorded with its reason
(status page, ``/metrics``) and never raised, like a prediction's.
"""

from __future__ import annotations

import datetime as dt
import logging

from samiam.booster.prototypes import Prototypes, update
from samiam.errors import SamiamError
from samiam.labelstudio.config import BrushConfig, parse_label_config
from samiam.labelstudio.results import annotation_materials
from samiam.labelstudio.webhooks import timestamp
from samiam.service import jobs, prototype_store

log = logging.getLogger(__name__)


def _contribution(runtime: jobs.Runtime, project: str, image_url: str, brush: BrushConfig, result: list,
                  updated_at: str) -> dict:
    """What one annotation teaches (:func:`prototype_store.contribution`)."""
    from samiam.io import load_micrograph
    from samiam.labelstudio.fetch import fetch_image

    engine = runtime.engine()
    micrograph = load_micrograph(fetch_image(image_url, jobs.access_for(runtime, project)), engine.settings.image)
    masks, labels = annotation_materials(result, brush, shape=micrograph.grey.shape)
    learned = update(Prototypes.empty(engine.embedder), micrograph.grey, masks, labels, engine.embedder,
                     engine.settings)
    return prototype_store.contribution(updated_at, learned)


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
    store.record_failure({"project": project, "task": lesson.get("task_id"), "state": "learning_failed",
                          "reason": reason})
    log.warning("project %s: %s", project, reason)
    return {"ok": False, "reason": reason}


def learn_annotation(lesson: dict) -> dict:
    """Learn from one annotation (a ``learn`` lesson); returns ``{"ok", "prototypes" | "reason"}``."""
    runtime = jobs.current()

    def work():
        made = _contribution(runtime, lesson["project"], lesson["image_url"], parse_label_config(lesson["label_config"]),
                             lesson["result"], lesson["updated_at"])
        return runtime.prototypes.update(lesson["project"], prototype_store.put(lesson["annotation"], made))
    return _run(lesson, f"learning annotation {lesson['annotation']} of task {lesson['task_id']}", work)


def rebuild_project(lesson: dict) -> dict:
    """Rebuild a project's prototypes from all its annotations in Label Studio (a ``rebuild`` lesson)."""
    from samiam.labelstudio.client import project_annotations
    from samiam.labelstudio.tasks import segmentation_url

    runtime = jobs.current()
    project = lesson["project"]

    def work():
        brush = parse_label_config(lesson["label_config"])
        read_since = timestamp(dt.datetime.now(dt.UTC), "now")
        contributions = {}
        for task, annotation in project_annotations(int(project), jobs.access_for(runtime, project)):
            url = segmentation_url(task, brush.value_key)
            if not isinstance(url, str) or not url:
                log.warning("project %s: task %s has no image URL; its annotation is skipped", project, task["id"])
                continue
            contributions[str(annotation["id"])] = _contribution(
                runtime, project, url, brush, annotation.get("result") or [],
                timestamp(annotation.get("updated_at") or annotation.get("created_at"), "annotation.updated_at"))
        return runtime.prototypes.update(project, prototype_store.replace_all(contributions, read_since))
    return _run(lesson, "rebuilding from all annotations", work)


def forget_annotations(prototypes, lesson: dict) -> str | None:
    """Tombstone the deleted annotations of a ``forget`` lesson in ``prototypes`` (a prototype
    store); returns the project's new prototype version."""
    learned = prototypes.update(lesson["project"], prototype_store.delete(lesson["annotations"]))
    return learned.version if learned is not None else None


JOBS = {"learn": learn_annotation, "rebuild": rebuild_project}
"""The lessons a worker runs, by kind."""
