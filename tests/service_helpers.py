"""Helpers shared by the service tests: the Redis-mode test configuration, ``/predict`` and
``/metrics`` through a Flask test client."""

from __future__ import annotations

import threading

from fake_label_studio import LABEL_CONFIG, PROJECT, TOKEN, FakeLabelStudio

from samiam.service import ServiceConfig
from samiam.settings import Settings

CLASSICAL = Settings().replace({"proposals.proposer": "classical"})
"""Engine settings of the tests: the weight-free proposer (no SAM checkpoint needed)."""


def service_config(redis_url: str | None, label_studio: FakeLabelStudio, **changes) -> ServiceConfig:
    """Model version ``test-v1``, the classical proposer, ``label_studio`` with its token."""
    return ServiceConfig(**{
        "redis_url": redis_url, "model_version": "test-v1", "settings": CLASSICAL,
        "label_studio_url": label_studio.url, "label_studio_api_key": TOKEN, **changes})


def post_predict(client, tasks: list[dict], **extra):
    """POST /predict with Flask test ``client`` as Label Studio does (project 1)."""
    return client.post("/predict", json={"tasks": tasks, "label_config": LABEL_CONFIG, "project": PROJECT,
                                         "params": {}, **extra})


def predict_in_thread(client, tasks: list[dict]) -> dict:
    """:func:`post_predict` from a thread; ``answer["response"]`` appears when it returns,
    ``answer["thread"]`` can be joined."""
    answer = {}

    def post():
        answer["response"] = post_predict(client, tasks)
    answer["thread"] = threading.Thread(target=post)
    answer["thread"].start()
    return answer


def counters(client) -> dict[str, float]:
    """``/metrics`` samples by name."""
    text = client.get("/metrics").get_data(as_text=True)
    return {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if not line.startswith("#")}
