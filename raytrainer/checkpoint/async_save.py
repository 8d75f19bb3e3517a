"""Background checkpoint writing: training waits only while the state is copied to CPU memory.

``AsyncCheckpointer.submit`` runs a write job on one background thread. At most one write is in
flight: submitting another first waits for the previous one. A failure is never silent: it is
raised by the next ``submit`` or by ``wait`` (which the runner calls at the end of training).
"""
from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

import torch

# Exact types (not subclasses, which may carry mutable attributes): values that cannot change,
# so a snapshot may share them.
_IMMUTABLE_SCALARS = frozenset({int, float, str, bool, bytes, type(None)})


def _all_immutable(items: list | tuple) -> bool:
    return all(type(item) in _IMMUTABLE_SCALARS for item in items)


def copy_to_cpu(obj: Any) -> Any:
    """A snapshot of ``obj`` whose tensors are CPU copies that training can no longer change.

    Lists and tuples of plain scalars (the message hub's histories) are copied shallowly,
    which is all they need, instead of item by item.
    """
    if isinstance(obj, torch.Tensor):
        detached = obj.detach()
        if detached.device.type == "cpu":
            return detached.clone()
        return detached.to("cpu", copy=True)
    if isinstance(obj, dict):
        return type(obj)((k, copy_to_cpu(v)) for k, v in obj.items())
    if isinstance(obj, list):
        return list(obj) if _all_immutable(obj) else [copy_to_cpu(v) for v in obj]
    if isinstance(obj, tuple):
        if _all_immutable(obj):
            # immutable all the way down: a namedtuple is shared, any other tuple made plain
            return obj if type(obj) is tuple or hasattr(obj, "_fields") else tuple(obj)
        items = [copy_to_cpu(v) for v in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else tuple(items)
    return copy.deepcopy(obj)


class AsyncCheckpointError(RuntimeError):
    """An asynchronous checkpoint write failed."""


class AsyncCheckpointer:
    """Runs one checkpoint write at a time on a background thread."""

    def __init__(self):
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._description = ""

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def submit(self, job: Callable[[], None], description: str) -> None:
        """Wait for (and re-raise the failure of) the previous write, then start ``job``."""
        self.wait()
        self._description = description

        def run():
            try:
                job()
            except BaseException as exc:  # surfaced by the next submit()/wait()
                self._error = exc

        self._thread = threading.Thread(target=run, name="raytrainer-checkpoint", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        """Block until the write in flight is done; raise if it (or an earlier one) failed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise AsyncCheckpointError(
                f"the background save of {self._description} failed: "
                f"{type(error).__name__}: {error}") from error
