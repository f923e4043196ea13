"""Fixtures shared by the service tests."""

import pytest
from fake_label_studio import FakeLabelStudio
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
