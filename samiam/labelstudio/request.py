"""One Label Studio task to predict, as the web tier hands it to a worker (:class:`TaskRequest`).

Everything in a ``/predict`` or ``/setup`` body is untrusted. :func:`read_predict` checks a
``/predict`` body once, on arrival: the tasks (ids, data), the labeling config (parsed once),
and the setting overrides (the project's ``extra_params`` under the request's ``params.samiam``,
checked and resolved once). Each task becomes a :class:`TaskRequest` of plain JSON-able values
(RQ pickles job arguments), so that the worker only fetches the image, looks the prediction up
in the cache or runs the engine, and turns the result into Label Studio regions.

Requests may tune only the booster (``removal.*``, ``merging.*``); what changes which models
and files a worker loads, or how large an image it accepts (``image.*``, ``proposals.*``,
``merging.embedder``, ``merging.embedder_checkpoint``), is the operator's, set by environment.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from samiam.errors import ImageSizeMismatchError, RequestError, RequestTooLargeError, SettingsError, shown
from samiam.labelstudio.config import BrushConfig, parse_label_config
from samiam.labelstudio.tasks import segmentation_url
from samiam.settings import Settings

REQUEST_SECTIONS = ("removal", "merging")
"""Settings sections a request or a project's ``extra_params`` may override."""

OPERATOR_ONLY = ("merging.embedder", "merging.embedder_checkpoint")
"""Settings in :data:`REQUEST_SECTIONS` that only the environment may set (they load files)."""

MAX_TASK_ID = 2**63 - 1
"""Largest task id (Label Studio's ids are 64-bit integers)."""


@dataclass(frozen=True)
class TaskRequest:
    """One task to predict, with what the worker needs and nothing it has to parse again."""

    project: str
    """Label Studio's ``project`` as sent (``"<id>.<created_at>"``), or ``""`` when unknown."""
    task_id: int
    image_url: str | None
    """What the worker segments: ``task["data"]["original"]`` (the full-range original of a task
    made by ``samiam import``, which declares the shown image's size) or ``task["data"][brush.value_key]``, when a non-empty string, else
    None (the task fails)."""
    brush: BrushConfig
    settings: Mapping[str, Any]
    """Checked setting overrides (dotted names, JSON values), the number of materials already
    bounded by the labels; apply them with :meth:`resolve`."""
    model_version: str
    image_size: tuple[int, int] | None = None
    """(height, width) that ``image_url`` must decode to: the shown PNG's size when the worker
    segments an imported task's original (masks must match the PNG pixel for pixel); None when it
    segments the shown image itself."""

    def check_size(self, decoded: tuple[int, int]) -> None:
        """Raise :class:`ImageSizeMismatchError` when ``image_size`` is declared and the image
        decoded to another (height, width) ``decoded``."""
        if self.image_size is not None and tuple(decoded) != tuple(self.image_size):
            (height, width), (shown_height, shown_width) = decoded, self.image_size
            raise ImageSizeMismatchError(
                f"task {self.task_id}: its original {self.image_url!r:.120} is {width}x{height} pixels but the "
                f"image annotators see is {shown_width}x{shown_height} (data 'width' and 'height'); masks made "
                f"on it would not match that image. Re-run `samiam import`, or remove 'original' from the task")

    def resolve(self, base: Settings) -> Settings:
        """``base`` (the worker's settings) with this request's overrides."""
        return base.replace(self.settings)

    def to_json(self) -> dict:
        return {"project": self.project, "task_id": self.task_id, "image_url": self.image_url,
                "brush": {"from_name": self.brush.from_name, "to_name": self.brush.to_name,
                          "value_key": self.brush.value_key, "labels": list(self.brush.labels)},
                "settings": dict(self.settings), "model_version": self.model_version,
                "image_size": list(self.image_size) if self.image_size else None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TaskRequest:
        brush = data["brush"]
        return cls(project=data["project"], task_id=data["task_id"], image_url=data["image_url"],
                   brush=BrushConfig(brush["from_name"], brush["to_name"], brush["value_key"],
                                     tuple(brush["labels"])),
                   settings=dict(data["settings"]), model_version=data["model_version"],
                   image_size=tuple(data["image_size"]) if data.get("image_size") else None)


def setting_overrides(value: Any, where: str) -> dict[str, Any]:
    """``value`` checked as a map of overridable setting names to values ({} for None)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SettingsError(f"{where} must map setting names to values, e.g. {{\"merging.materials\": 3}}")
    operator_sections = {f.name for f in dataclasses.fields(Settings)} - set(REQUEST_SECTIONS)
    for name in value:  # unknown names are left to Settings.replace, which names the known ones
        if name in OPERATOR_ONLY or name.partition(".")[0] in operator_sections:
            raise SettingsError(f"{where}: setting {shown(name)} cannot be set per project or request; "
                                f"only {', '.join(f'{s}.*' for s in REQUEST_SECTIONS)} (except "
                                f"{', '.join(OPERATOR_ONLY)}) can, the rest by environment variable")
    return dict(value)


def resolve_overrides(base: Settings, brush: BrushConfig, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Checked ``overrides`` as JSON values, with ``merging.max_materials`` bounded by the labels.

    Raises :class:`SettingsError` for an unknown name, a value of the wrong type, fewer than one
    material, or more materials than ``brush`` has labels.
    """
    settings = base.replace(overrides)
    merging, n_labels = settings.merging, len(brush.labels)
    for name in ("materials", "max_materials"):
        value = getattr(merging, name)
        if value is not None and value < 1:
            raise SettingsError(f"merging.{name} = {value}: an image holds at least one material")
    if merging.materials is not None and merging.materials > n_labels:
        raise SettingsError(f"merging.materials = {merging.materials} but the labeling config has "
                            f"only {n_labels} brush labels; add labels or ask for fewer materials")
    resolved = {name: _json_value(getattr(getattr(settings, name.partition(".")[0]), name.partition(".")[2]))
                for name in overrides}
    resolved["merging.max_materials"] = min(merging.max_materials, n_labels)
    return resolved


def _json_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def project_of(value: Any, where: str) -> str:
    """Label Studio's ``project`` (a string or an integer) as text; ``""`` for None."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int)) or len(str(value)) > 100:
        raise RequestError(f"{where} must be Label Studio's project id (a string or an integer, "
                           f"up to 100 characters)")
    return str(value)


def _task_ids(tasks: Any, max_tasks: int) -> list[int]:
    if not isinstance(tasks, list) or not tasks:
        raise RequestError("'tasks' must be a non-empty list of Label Studio tasks")
    if len(tasks) > max_tasks:
        raise RequestTooLargeError(f"{len(tasks)} tasks in one request, more than "
                                   f"SAMIAM_MAX_TASKS_PER_REQUEST = {max_tasks}; send fewer at a time")
    ids = []
    for task in tasks:
        task_id = task.get("id") if isinstance(task, dict) else None
        if isinstance(task_id, bool) or not isinstance(task_id, int) or not 0 <= task_id <= MAX_TASK_ID \
                or not isinstance(task.get("data"), dict):
            raise RequestError("every task needs an integer 'id' (0 to 2**63-1) and a 'data' object")
        ids.append(task_id)
    if len(set(ids)) != len(ids):
        repeated = sorted(i for i, count in Counter(ids).items() if count > 1)
        raise RequestError(f"task ids repeat in one request: {repeated[:20]}")
    return ids


def read_predict(body: Mapping[str, Any], *, base: Settings, model_version: str, max_tasks: int,
                 project_overrides: Callable[[str], Mapping[str, Any]]) -> list[TaskRequest]:
    """The tasks of a ``/predict`` body, in order, each as a :class:`TaskRequest`.

    ``project_overrides(project)`` gives the project's stored ``extra_params``; the request's
    ``params.samiam`` override them. Raises :class:`RequestError` (400, or 413 for too many
    tasks), :class:`LabelConfigError` or :class:`SettingsError` naming what is wrong.
    """
    tasks = body.get("tasks")
    ids = _task_ids(tasks, max_tasks)
    brush = parse_label_config(body.get("label_config"))
    project = project_of(body.get("project"), "'project'") or project_of(tasks[0].get("project"), "a task's 'project'")
    params = body.get("params")
    if params is not None and not isinstance(params, dict):
        raise RequestError("'params' must be an object")
    overrides = {**project_overrides(project),
                 **setting_overrides((params or {}).get("samiam"), "params.samiam")}
    settings = resolve_overrides(base, brush, overrides)
    requests = []
    for task_id, task in zip(ids, tasks):
        url, size = segmentation_url(task, brush.value_key)  # data["original"] (full range) of imported tasks
        requests.append(TaskRequest(project=project, task_id=task_id,
                                    image_url=url if isinstance(url, str) and url else None,
                                    brush=brush, settings=settings, model_version=model_version, image_size=size))
    return requests
