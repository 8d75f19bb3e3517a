"""Hooks that tests put into runs in other processes (imported as ``tests.checkpoint...``)."""
from __future__ import annotations

import os
import time

from raytrainer.hooks import Hook


class WaitForFile(Hook):
    """Before the first iteration, waits (at most ``timeout`` s) until ``path`` exists, so a
    test can start a second run while this one holds its work_dir."""

    def __init__(self, path: str, timeout: float = 120.0):
        self.path, self.timeout = path, timeout

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        deadline = time.monotonic() + self.timeout
        while not os.path.exists(self.path) and time.monotonic() < deadline:
            time.sleep(0.05)


class PauseAt(Hook):
    """After iteration ``at_iter`` writes ``marker`` and waits (at most ``timeout`` s) for
    ``release`` to exist, so a test can change the world (stop a storage server) mid-run."""

    def __init__(self, marker: str, release: str, at_iter: int = 5, timeout: float = 120.0):
        self.marker, self.release, self.at_iter, self.timeout = marker, release, at_iter, timeout

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if runner.iter + 1 != self.at_iter:
            return
        open(self.marker, "w").close()
        deadline = time.monotonic() + self.timeout
        while not os.path.exists(self.release) and time.monotonic() < deadline:
            time.sleep(0.05)
