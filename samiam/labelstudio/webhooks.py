"""Label Studio webhook bodies -> *lessons*: what the service learns from, as plain JSON-able dicts.

Label Studio 1.23 posts every project event to the ML backend's ``/webhook`` (see
``shared/notes/label-studio-1.23-protocol.md``). The body is untrusted: :func:`read_webhook`
checks the fields a lesson needs and raises :class:`RequestError` (400) naming the first one
that is wrong. Lessons (``"kind"``):

* ``learn`` (``ANNOTATION_CREATED``, ``ANNOTATION_UPDATED``): ``project``, ``annotation`` (id as
  text), ``updated_at`` (ISO 8601, UTC), ``task_id``, ``image_url``, ``label_config`` and the
  annotation's ``result`` (brush RLE is decoded later, by the worker);
* ``forget`` (``ANNOTATIONS_DELETED``, ``ANNOTATION_DELETED``): ``project``, ``annotations``;
* ``rebuild`` (``START_TRAINING``, Label Studio's "Start training" button): ``project``,
  ``label_config``.

Other events, and cancelled (skipped) annotations, give None: nothing to learn.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from samiam.errors import RequestError, shown
from samiam.labelstudio.config import parse_label_config
from samiam.labelstudio.request import MAX_TASK_ID
from samiam.labelstudio.tasks import segmentation_url

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


def timestamp(value: Any, where: str) -> str:
    """``value`` (an ISO 8601 text or a datetime) as ISO 8601 in UTC, comparable as text."""
    try:
        moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise RequestError(f"{where} must be an ISO 8601 time, not {shown(value)}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")


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
    brush = parse_label_config(project.get("label_config"))  # LabelConfigError: 400 with an example
    if action in REBUILD_EVENTS:
        return {"kind": "rebuild", "project": project_id, "label_config": project["label_config"]}
    annotation, task = _object(body, "annotation"), _object(body, "task")
    if annotation.get("was_cancelled") is True:
        return None
    result = annotation.get("result")
    if not isinstance(result, list) or not all(isinstance(r, dict) for r in result):
        raise RequestError(f"webhook {action}: annotation.result must be a list of objects")
    if not isinstance(task.get("data"), dict):
        raise RequestError(f"webhook {action}: task.data must be an object")
    url = segmentation_url(task, brush.value_key)
    if not isinstance(url, str) or not url:
        raise RequestError(f"webhook {action}: task.data[{brush.value_key!r}] holds no image URL")
    return {"kind": "learn", "project": project_id, "annotation": str(_id(annotation.get("id"), "annotation.id")),
            "updated_at": timestamp(annotation.get("updated_at") or annotation.get("created_at"),
                                    "annotation.updated_at"),
            "task_id": _id(task.get("id"), "task.id"), "image_url": url,
            "label_config": project["label_config"], "result": result}
