"""A Ray cluster for the whole test session, started like a user would: `ray start --head`."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RAY = os.path.join(os.path.dirname(sys.executable), "ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_cluster(s3_server):
    """``ray start --head`` with 2 CPUs on loopback; the driver in this process joins it.

    Workers inherit this environment: the repository on PYTHONPATH (for test hooks), the fake
    AWS credentials of the S3 fixture, and a short worker-group start timeout.
    """
    import ray

    port, dashboard = _free_port(), _free_port()
    # Token authentication is off for this loopback-only test cluster: the driver process may
    # have cached another session's token before `ray start` wrote a new one.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get(
        "PYTHONPATH")])), RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S="60", RAY_AUTH_MODE="disabled",
        PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    subprocess.run([RAY, "start", "--head", "--num-cpus=2", f"--port={port}",
                    "--node-ip-address=127.0.0.1", "--include-dashboard=true",
                    "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
                    "--disable-usage-stats"], env=env, check=True, capture_output=True,
                   timeout=180)
    address = f"127.0.0.1:{port}"
    saved = {name: os.environ.get(name) for name in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    os.environ.update(RAY_ADDRESS=address, RAY_AUTH_MODE="disabled")
    ray.init(address=address, logging_level="WARNING", log_to_driver=False)
    try:
        yield SimpleNamespace(address=address, dashboard=f"http://127.0.0.1:{dashboard}",
                              env=env)
    finally:
        ray.shutdown()
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


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
