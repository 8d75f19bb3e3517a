"""Named global instances (one MessageHub / logger per run), like MMEngine's ManagerMixin.

A class that mixes this in keeps a table of instances by name; ``get_instance(name, **kwargs)``
creates one on first use, ``get_current_instance()`` returns the one created or fetched last.
"""
from __future__ import annotations

import threading
from typing import Any


class ManagerMixin:
    """Give a class named, process-global instances.

    Args:
        name: The instance's name; ``get_instance(name)`` returns it later.
    """

    _instance_lock = threading.RLock()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._instances: dict[str, Any] = {}
        cls._current: str | None = None

    def __init__(self, name: str = "", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(name, str) or not name:
            raise ValueError(f"{type(self).__name__} needs a non-empty str name, got {name!r}")
        self._instance_name = name

    @property
    def instance_name(self) -> str:
        return self._instance_name

    @classmethod
    def get_instance(cls, name: str, **kwargs):
        """Return the instance called ``name``, creating it with ``kwargs`` if it is new."""
        with cls._instance_lock:
            if name not in cls._instances:
                cls._instances[name] = cls(name=name, **kwargs)
            cls._current = name
            return cls._instances[name]

    @classmethod
    def get_current_instance(cls):
        """Return the instance fetched last; create a default one if there is none yet."""
        with cls._instance_lock:
            if cls._current is None:
                return cls.get_instance(cls._default_instance_name())
            return cls._instances[cls._current]

    @classmethod
    def _default_instance_name(cls) -> str:
        return "raytrainer"

    @classmethod
    def check_instance_created(cls, name: str) -> bool:
        return name in cls._instances

    @classmethod
    def drop_instance(cls, name: str) -> None:
        """Forget an instance (tests and long-lived processes that run several runs)."""
        with cls._instance_lock:
            cls._instances.pop(name, None)
            if cls._current == name:
                cls._current = next(reversed(cls._instances), None) if cls._instances else None
