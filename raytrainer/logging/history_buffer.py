"""A bounded history of one logged scalar with windowed statistics."""
from __future__ import annotations

from collections import deque
from itertools import islice

import numpy as np


class HistoryBuffer:
    """Values of one scalar (loss, lr, time ...) with the counts they were averaged over.

    Args:
        log_history: Initial values.
        count_history: Initial counts (one per value).
        max_length: Oldest entries are dropped beyond this many.
    """

    def __init__(self, log_history=(), count_history=(), max_length: int = 1_000_000):
        if len(log_history) != len(count_history):
            raise ValueError("log_history and count_history must have the same length, got "
                             f"{len(log_history)} and {len(count_history)}")
        self.max_length = max_length
        self._log_history: deque[float] = deque(log_history, maxlen=max_length)
        self._count_history: deque[int] = deque(count_history, maxlen=max_length)

    def update(self, log_val: int | float, count: int = 1) -> None:
        """Append a value that stands for ``count`` samples (a mean over a batch, say)."""
        if not isinstance(log_val, (int, float)) or not isinstance(count, (int, float)):
            raise TypeError(f"log_val and count must be int or float, got {type(log_val)} "
                            f"and {type(count)}")
        self._log_history.append(log_val)
        self._count_history.append(count)

    @property
    def data(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array(self._log_history), np.array(self._count_history)

    def __len__(self) -> int:
        return len(self._log_history)

    def _tail(self, window_size: int | None):
        if window_size is None or window_size >= len(self._log_history):
            return list(self._log_history), list(self._count_history)
        if window_size <= 0:
            raise ValueError(f"window_size must be positive, got {window_size}")
        logs = list(islice(reversed(self._log_history), window_size))
        counts = list(islice(reversed(self._count_history), window_size))
        logs.reverse()
        counts.reverse()
        return logs, counts

    def mean(self, window_size: int | None = None) -> float:
        """Sum of the last ``window_size`` values divided by the sum of their counts."""
        logs, counts = self._tail(window_size)
        if not logs:
            return float("nan")
        # np.add.reduce is what np.sum runs (same pairwise summation, same result) without
        # np.sum's Python-level dispatch, which costs more than the sum of a short window.
        return float(np.add.reduce(logs, axis=None) / np.add.reduce(counts, axis=None))

    def max(self, window_size: int | None = None) -> float:
        logs, _ = self._tail(window_size)
        return max(logs) if logs else float("nan")

    def min(self, window_size: int | None = None) -> float:
        logs, _ = self._tail(window_size)
        return min(logs) if logs else float("nan")

    def current(self) -> float:
        if not self._log_history:
            raise ValueError("HistoryBuffer is empty")
        return self._log_history[-1]

    def statistics(self, method_name: str, *args, **kwargs):
        """Call ``mean``/``max``/``min``/``current`` by name (as log processor configs do)."""
        if method_name not in ("mean", "max", "min", "current"):
            raise KeyError(f"unknown statistics method {method_name!r}; expected one of "
                           "'mean', 'max', 'min', 'current'")
        return getattr(self, method_name)(*args, **kwargs)

    def state_dict(self) -> dict:
        return {"log_history": list(self._log_history),
                "count_history": list(self._count_history), "max_length": self.max_length}

    @classmethod
    def from_state_dict(cls, state: dict) -> HistoryBuffer:
        return cls(state["log_history"], state["count_history"], state["max_length"])
