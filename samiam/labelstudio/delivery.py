"""Delivery keys: a prediction carries a key that Label Studio stores with it, so a retried
write-back can tell that an earlier attempt already stored it.

Label Studio 1.23 stores a prediction's ``result`` list as it is given (through ``/predict`` or
``POST /api/predictions``) and returns it unchanged from ``GET /api/predictions?task=ID``,
including each region's ``id``. The key of one delivery (one ``/predict`` batch, one task) is
therefore written into the region ids: ``"<key>-<index>"``.
"""

from __future__ import annotations

import hashlib

KEY_CHARS = 12
"""Hex digits of a delivery key (48 bits: no collision among one task's predictions)."""


def delivery_key(batch_id: str, task_id: int) -> str:
    """The key of delivering task ``task_id``'s prediction made for batch ``batch_id``."""
    return hashlib.sha256(f"{batch_id}:{task_id}".encode()).hexdigest()[:KEY_CHARS]


def stamp(prediction: dict, key: str) -> dict:
    """A copy of ``prediction`` (``{"result": [regions], ...}``) whose regions' ids carry ``key``."""
    regions = [{**region, "id": f"{key}-{index}"} for index, region in enumerate(prediction["result"])]
    return {**prediction, "result": regions}


def key_of(prediction: dict) -> str | None:
    """The delivery key a stamped prediction carries (None when it carries none)."""
    regions = prediction.get("result") or []
    first = str(regions[0].get("id", "")) if regions and isinstance(regions[0], dict) else ""
    key, dash, index = first.rpartition("-")
    return key if dash and len(key) == KEY_CHARS and index == "0" else None


def find_delivered(stored: list[dict], key: str) -> int | None:
    """Id of the prediction in ``stored`` (Label Studio's ``{"id", "result"}`` dicts of one task)
    that carries ``key``; None when none does."""
    return next((p.get("id") for p in stored if key_of(p) == key), None)
