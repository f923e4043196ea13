"""The Label Studio-facing model: label config -> settings, engine result -> Label Studio results.

Holds only ``setup``, ``predict_one`` and ``fit``; the engine (``samiam.pipeline.Engine``) is
passed in by the worker that keeps it loaded, and the web tier calls :meth:`SamiamModel.setup`
without ever loading a model.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from samiam.errors import SettingsError
from samiam.labelstudio.config import parse_label_config
from samiam.labelstudio.results import predictions_from_segmentation, versioned
from samiam.settings import Settings

if TYPE_CHECKING:
    from samiam.booster.prototypes import Prototypes
    from samiam.pipeline import Engine

log = logging.getLogger(__name__)

TRAINING_EVENTS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "START_TRAINING")


class SamiamModel:
    """Zero-shot material segmentation as a Label Studio ML backend model."""

    def __init__(self, settings: Settings, model_version: str):
        self.settings = settings
        self.model_version = model_version

    def setup(self, label_config: str) -> dict:
        """Check the project's labeling config (raises ``LabelConfigError``); loads no model."""
        parse_label_config(label_config)
        return {"model_version": self.model_version}

    def settings_for(self, label_config: str, overrides: Mapping[str, Any] | None = None) -> Settings:
        """Settings for one project: ``overrides`` (dotted names, per project or request) applied,
        and the number of materials bounded by the number of labels in the config."""
        n_labels = len(parse_label_config(label_config).labels)
        settings = self.settings.replace(overrides or {})
        merging = settings.merging
        if merging.materials is not None and merging.materials > n_labels:
            raise SettingsError(f"merging.materials = {merging.materials} but the labeling config has "
                                f"only {n_labels} brush labels; add labels or ask for fewer materials")
        return settings.replace({"merging.max_materials": min(merging.max_materials, n_labels)})

    def predict_one(self, engine: Engine, image_bytes: bytes, label_config: str,
                    overrides: Mapping[str, Any] | None = None, prototypes: Prototypes | None = None) -> dict:
        """Segment one task's image: ``{"result": [brush regions], "score", "model_version"}``.

        ``prototypes``: the project's labels learned from its annotations (regions then carry
        their names, and the model version their hash); None before any annotation.
        """
        settings = self.settings_for(label_config, overrides)
        config = parse_label_config(label_config)
        learned = prototypes.restrict(config.labels) if prototypes is not None else None
        segmentation = engine.segment(image_bytes, settings, prototypes=learned)
        return predictions_from_segmentation(segmentation.materials, segmentation.scores, config,
                                             versioned(self.model_version, learned), segmentation.names,
                                             settings.naming.unnamed_score)

    def fit(self, event: str, data: dict) -> dict:
        """Acknowledge a webhook event. samiam is zero-shot: annotations do not train anything."""
        if event in TRAINING_EVENTS:
            reason = "samiam is zero-shot; annotations are not used for training"
        else:
            reason = f"event {event!r} is not handled"
        project = data.get("project")
        log.info("webhook %s for project %s ignored: %s", event,
                 project.get("id") if isinstance(project, dict) else project, reason)
        return {"status": "ignored", "reason": reason}
