"""Hooks the lease tests put into runs in other processes (imported as ``tests.checkpoint...``)."""
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
