"""Session-wide test fixtures."""
from __future__ import annotations

import pytest

from raytrainer.logging import MessageHub, MMLogger
from raytrainer.visualization import Visualizer


@pytest.fixture(autouse=True)
def _forget_global_instances():
    """Drop loggers, message hubs and visualizers a test created, so none leaks into the next
    test (a leaked 'current' logger would swallow another test's printed warnings)."""
    before = {cls: (dict(cls._instances), cls._current)
              for cls in (MMLogger, MessageHub, Visualizer)}
    yield
    for cls, (instances, current) in before.items():
        for name in list(cls._instances):
            if name not in instances:
                created = cls._instances[name]
                if hasattr(created, "close"):
                    created.close()
                cls.drop_instance(name)
        cls._current = current if current in cls._instances else None
