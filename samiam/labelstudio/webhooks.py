"""Label Studio webhook bodies -> *lessons*: what the service learns from, as plain JSON-able dicts.

Label Studio 1.23 posts every project event to the ML backend's ``/webhook`` (see
``shared/notes/label-studio-1.23-protocol.md``). Anyone who reaches the backend can post there,
so a webhook is only a notice: it says *which* annotation or project changed, and the learning
job reads the annotation, its task (the image URL) and the project's labeling config from Label
Studio itself, through its API, with the project's key (:mod:`samiam.service.learning`); only the
task's data (the image URL) comes from the body, for the task Label Studio says the annotation
belongs to. A forged body can at most make the worker read what Label Studio already holds, and
pair a real annotation with another image that the fetch rules allow.

:func:`read_webhook` checks the fields a lesson needs and raises :class:`RequestError` (400)
naming the first one that is wrong. Lessons (``"kind"``):

* ``learn`` (``ANNOTATION_CREATED``, ``ANNOTATION_UPDATED``): ``project``, ``annotation`` (ids as
  text) and ``task`` (``{"id", "data"}``);
* ``forget`` (``ANNOTATIONS_DELETED``, ``ANNOTATION_DELETED``): ``project``, ``annotations``;
* ``rebuild`` (``START_TRAINING``, Label Studio's "Start training" button): ``project``.

Other events, and cancelled (skipped) annotations, give None: nothing to learn.
"""

from __future__ import annotations

from typing import Any

from samiam.errors import RequestError, shown
from samiam.labelstudio.request import MAX_TASK_ID

LEARN_EVENTS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED")
FORGET_EVENTS = ("ANNOTATIONS_DELETED", "ANNOTATION_DELETED")
REBUILD_EVENTS = ("START_TRAINING",)


def _object(body: dict, field: str) -> dict:
    value = body.get(field)
    if not isinstance(value, dict):
        raise RequestError(f"webhook {shown(body.get('action'))}: {field!r} must be an object")
    return value


def _id(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TASK_ID:
        raise RequestError(f"{where} must be an integer id (0 to 2**63-1), not {shown(value)}")
    return value


def read_webhook(body: dict) -> dict | None:
    """The lesson of a webhook ``body`` (module docstring), or None when it teaches nothing."""
    action = body.get("action")
    if not isinstance(action, str):
        raise RequestError("a webhook body needs an 'action' (e.g. ANNOTATION_CREATED)")
    if action not in LEARN_EVENTS + FORGET_EVENTS + REBUILD_EVENTS:
        return None
    project = _object(body, "project")
    project_id = str(_id(project.get("id"), "project.id"))
    if action in FORGET_EVENTS:
        annotations = body.get("annotations", [body.get("annotation")])
        if not isinstance(annotations, list) or not all(isinstance(a, dict) for a in annotations):
            raise RequestError(f"webhook {action}: 'annotations' must be a list of objects")
        return {"kind": "forget", "project": project_id,
                "annotations": [str(_id(a.get("id"), "annotations[].id")) for a in annotations]}
    if action in REBUILD_EVENTS:
        return {"kind": "rebuild", "project": project_id}
    annotation, task = _object(body, "annotation"), _object(body, "task")
    if annotation.get("was_cancelled") is True:
        return None
    if not isinstance(task.get("data"), dict):
        raise RequestError(f"webhook {action}: task.data must be an object")
    return {"kind": "learn", "project": project_id, "annotation": str(_id(annotation.get("id"), "annotation.id")),
            "task": {"id": _id(task.get("id"), "task.id"), "data": task["data"]}}
