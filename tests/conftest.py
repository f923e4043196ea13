"""Fixtures shared by the service tests."""

import pytest
from fake_label_studio import FakeLabelStudio
from loopback_http import RawServer, answer_with_tiny_png
from redis_server import RedisServer


@pytest.fixture
def label_studio():
    """A fake Label Studio on a free loopback port (see fake_label_studio.py)."""
    server = FakeLabelStudio()
    yield server
    server.close()


@pytest.fixture
def redis_server(tmp_path):
    """A redis-server of its own (no persistence) on a free loopback port."""
    with RedisServer(tmp_path / "redis") as server:
        yield server


@pytest.fixture(scope="module")
def canary():
    """A loopback host that must never be reached: it answers anything with an image, so a
    request that got past a refusal would fetch one; ``connections`` counts who came."""
    server = RawServer(answer_with_tiny_png)
    yield server
    server.close()
