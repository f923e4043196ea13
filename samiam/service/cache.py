"""Prediction cache: the same image bytes with the same settings and model give the same answer.

The key is ``sha256(image bytes)`` + ``sha256(settings and brush config as sorted JSON)`` + model
version, so a changed knob, another labeling config (control names, labels) or a new model
version never returns a stale prediction. The model version is the project's *versioned* one
(:func:`samiam.labelstudio.results.versioned`: ``samiam-v1+p<prototype version>``), so that a
prediction made before the project's learned labels changed is not served after. The worker looks the key
up after downloading the image (the web tier never downloads images: it only enqueues), so a
repeated request costs one download and no inference.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from samiam.labelstudio.config import BrushConfig
from samiam.service.store import Store
from samiam.settings import Settings


def cache_key(image: bytes, settings: Settings, model_version: str, brush: BrushConfig) -> str:
    """Store key of the prediction for ``image`` made with ``settings`` by ``model_version`` (with
    the project's prototype version, see the module docstring), as regions of ``brush``."""
    image_hash = hashlib.sha256(image).hexdigest()
    made_with = {"settings": settings.to_dict(), "brush": dataclasses.asdict(brush)}
    settings_hash = hashlib.sha256(json.dumps(made_with, sort_keys=True).encode()).hexdigest()
    return f"cache:{model_version}:{image_hash}:{settings_hash[:16]}"


class PredictionCache:
    """Predictions (``{"result", "score", "model_version"}``) kept in a store for ``ttl_s`` seconds."""

    def __init__(self, store: Store, ttl_s: int):
        self.store = store
        self.ttl_s = ttl_s

    def get(self, key: str) -> dict | None:
        if self.ttl_s <= 0:
            return None
        prediction = self.store.get_json(key)
        self.store.incr("cache_hits" if prediction is not None else "cache_misses")
        return prediction

    def put(self, key: str, prediction: dict) -> None:
        if self.ttl_s > 0:
            self.store.set_json(key, prediction, self.ttl_s)
