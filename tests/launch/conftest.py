"""A Ray cluster for the whole test session, started like a user would: `ray start --head`."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest

from raytrainer.utils.net import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RAY = os.path.join(os.path.dirname(sys.executable), "ray")


def _wait_until_started(output, process: subprocess.Popen, timeout: float = 300.0) -> None:
    """Wait for `ray start --block` to say the cluster is up (it then blocks)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "Ray runtime started" in output.read_text():
            return
        if process.poll() is not None:
            raise RuntimeError(f"`ray start` exited with {process.returncode}: "
                               f"{output.read_text()[-2000:]}")
        time.sleep(0.2)
    stop_process_tree(process.pid)
    raise TimeoutError(f"the test Ray cluster did not start in {timeout:g} s")


def stop_process_tree(pid: int, timeout: float = 20.0) -> None:
    """SIGTERM ``pid`` and every process below it, then SIGKILL what is left."""
    import psutil

    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    processes = [root, *root.children(recursive=True)]
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(alive, timeout=timeout)


@pytest.fixture(scope="session")
def ray_cluster(s3_server, tmp_path_factory):
    """``ray start --head`` with 2 CPUs on loopback; the driver in this process joins it.

    Workers inherit this environment: the repository on PYTHONPATH (for test hooks), the fake
    AWS credentials of the S3 fixture, and a short worker-group start timeout.
    """
    import ray

    port, dashboard = free_port(), free_port()
    # Token authentication is off for this loopback-only test cluster: the driver process may
    # have cached another session's token before `ray start` wrote a new one.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get(
        "PYTHONPATH")])), RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S="60", RAY_AUTH_MODE="disabled",
        PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    # --block keeps `ray start` as the parent of every process of this cluster, so teardown
    # stops exactly those (never `ray stop`, which kills every Ray instance on the machine).
    output = tmp_path_factory.mktemp("ray-head") / "ray-start.log"
    with open(output, "w") as sink:
        head = subprocess.Popen(
            [RAY, "start", "--head", "--block", "--num-cpus=2", f"--port={port}",
             "--node-ip-address=127.0.0.1", "--include-dashboard=true",
             "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
             "--disable-usage-stats"], env=env, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True)
    address = f"127.0.0.1:{port}"
    _wait_until_started(output, head)
    saved = {name: os.environ.get(name) for name in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    os.environ.update(RAY_ADDRESS=address, RAY_AUTH_MODE="disabled")
    ray.init(address=address, logging_level="WARNING", log_to_driver=False)
    try:
        yield SimpleNamespace(address=address, dashboard=f"http://127.0.0.1:{dashboard}",
                              env=env)
    finally:
        ray.shutdown()
        stop_process_tree(head.pid)
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
