"""The Label Studio-facing model: one Label Studio task -> one prediction.

:class:`SamiamModel` holds Label Studio's three calls as the web tier needs them, without ever
loading a model: ``setup`` (check a project's labeling config and ``extra_params``),
``requests`` (turn a ``/predict`` body into :class:`TaskRequest` s) and ``fit`` (a webhook
into a lesson for the learning jobs of :mod:`samiam.service.learning`).
:func:`predict_task` is the worker's side: one task's image through the loaded engine into
brush regions. A new path through this code (an interactive click, label names learned from
annotations) adds a field to :class:`TaskRequest` and a branch here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from samiam.errors import SamiamError, shown
from samiam.io import load_micrograph
from samiam.labelstudio.config import parse_label_config
from samiam.labelstudio.request import TaskRequest, read_predict, resolve_overrides, setting_overrides
from samiam.labelstudio.results import predictions_from_segmentation, versioned
from samiam.labelstudio.webhooks import read_webhook
from samiam.settings import Settings

if TYPE_CHECKING:
    from samiam.booster.prototypes import Prototypes
    from samiam.pipeline import Engine

log = logging.getLogger(__name__)

class SamiamModel:
    """Zero-shot material segmentation as a Label Studio ML backend model."""

    def __init__(self, settings: Settings, model_version: str, max_tasks: int = 10_000):
        self.settings = settings
        self.model_version = model_version
        self.max_tasks = max_tasks

    def setup(self, label_config: Any, extra_params: Any = None) -> dict[str, Any]:
        """Check a project's labeling config and ``extra_params``; returns the project's setting
        overrides to keep. Raises ``LabelConfigError`` or ``SettingsError``; loads no model."""
        overrides = setting_overrides(extra_params, "the ML backend's extra_params")
        resolve_overrides(self.settings, parse_label_config(label_config), overrides)
        return overrides

    def requests(self, body: Mapping[str, Any],
                 project_overrides: Callable[[str], Mapping[str, Any]]) -> list[TaskRequest]:
        """The tasks of a ``/predict`` body as checked requests (see :func:`read_predict`)."""
        return read_predict(body, base=self.settings, model_version=self.model_version,
                            max_tasks=self.max_tasks, project_overrides=project_overrides)

    def settings_for(self, label_config: str, overrides: Mapping[str, Any] | None = None) -> Settings:
        """Settings for one labeling config: ``overrides`` (dotted names) applied, and the number
        of materials bounded by the number of labels in the config."""
        overrides = setting_overrides(overrides, "overrides")
        return self.settings.replace(resolve_overrides(self.settings, parse_label_config(label_config), overrides))

    def fit(self, body: Mapping[str, Any]) -> dict | None:
        """The lesson of a webhook ``body`` (:func:`samiam.labelstudio.webhooks.read_webhook`):
        what to learn from an annotation, to forget, or to rebuild; None when the event teaches
        nothing. Raises ``RequestError`` or ``LabelConfigError`` (400) for a malformed body."""
        lesson = read_webhook(dict(body))
        if lesson is None:
            log.info("webhook %s ignored: nothing to learn from it", shown(body.get("action")))
        return lesson

    def model_version_for(self, label_config: Any, prototypes: Prototypes | None) -> str:
        """The model version of this project's predictions (what ``/setup`` answers, so that
        Label Studio asks again for tasks predicted before its prototypes changed)."""
        learned = prototypes.restrict(parse_label_config(label_config).labels) if prototypes is not None else None
        return versioned(self.model_version, learned)


def predict_task(engine: Engine, image: bytes, request: TaskRequest, settings: Settings | None = None,
                 prototypes: Prototypes | None = None) -> dict:
    """Segment one task's ``image``: ``{"result": [brush regions], "score", "model_version"}``.

    ``settings``: ``request.resolve(engine.settings)`` when not given (a caller that already
    resolved them, for its cache key, passes them). ``prototypes``: the project's labels learned
    from its annotations (regions then carry their names, and the model version their hash);
    None before any annotation. Raises :class:`SamiamError` when the engine finds no material
    region (Label Studio would store the empty prediction), :class:`ImageSizeMismatchError` when
    ``image`` decodes to another size than ``request.image_size``.
    """
    settings = request.resolve(engine.settings) if settings is None else settings
    learned = prototypes.restrict(request.brush.labels) if prototypes is not None else None
    micrograph = load_micrograph(image, settings.image)
    request.check_size(micrograph.shape)  # an imported task's original must match the PNG shown
    segmentation = engine.segment(micrograph, settings, prototypes=learned)
    prediction = predictions_from_segmentation(segmentation.materials, segmentation.scores, request.brush,
                                               versioned(request.model_version, learned), segmentation.names,
                                               settings.naming.unnamed_score)
    if not prediction["result"]:
        raise SamiamError("the engine found no material region in this image; nothing to store")
    return prediction
