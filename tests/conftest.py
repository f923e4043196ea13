"""Fixtures shared by the service tests."""

import pytest
from fake_label_studio import FakeLabelStudio


@pytest.fixture
def label_studio():
    """A fake Label Studio on a free loopback port (see fake_label_studio.py)."""
    server = FakeLabelStudio()
    yield server
    server.close()
