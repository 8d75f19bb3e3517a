"""Fixtures for the optimizer-wrapper tests."""
from __future__ import annotations

import uuid

import pytest

from raytrainer.logging import MessageHub


@pytest.fixture
def message_hub():
    """A MessageHub made current for one test and forgotten afterwards."""
    name = f"test-optim-{uuid.uuid4().hex}"
    hub = MessageHub.get_instance(name)
    yield hub
    MessageHub.drop_instance(name)
