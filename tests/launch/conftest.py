"""Helpers of the launch tests: a killer of the process that wrote a marker file.

The session's Ray test cluster (``ray_cluster``) is in ``tests/conftest.py``, shared with the
tune tests."""
from __future__ import annotations

import os
import threading
import time


class Killer:
    """Waits for a marker file holding a pid, then kills that process with SIGKILL."""

    def __init__(self, marker: str, timeout: float = 300.0):
        self.marker, self.timeout = marker, timeout
        self.killed_pid: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import signal

        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if os.path.exists(self.marker):
                pid = int(open(self.marker).read())
                os.kill(pid, signal.SIGKILL)
                self.killed_pid = pid
                return
            time.sleep(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.thread.join(timeout=1)
        return False
