"""A private local Ray instance does not outlive its driver, even one killed with SIGKILL, and
its reaper touches no other Ray instance on the machine."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from ..conftest import ROOT

DRIVER = os.path.join(ROOT, "tests/launch/private_ray_driver.py")


def _start_driver(tmp_path, name: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_GCS_SERVER_PORT")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    workdir = tmp_path / name
    workdir.mkdir()
    return subprocess.Popen([sys.executable, DRIVER], cwd=workdir, env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)


def _wait_ready(driver: subprocess.Popen) -> int:
    """The pid of the actor's child, once the driver's instance runs it."""
    for line in driver.stdout:
        if line.startswith("ready"):
            return int(line.split()[1])
    raise AssertionError(f"the driver exited with {driver.wait()} before it was ready")


def _alive(processes) -> list[psutil.Process]:
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            pass
    return alive


def _describe(processes) -> list[str]:
    out = []
    for process in processes:
        try:
            out.append(f"{process.pid} {process.name()}")
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.mark.ray
def test_a_sigkilled_driver_leaves_no_ray_process_and_another_instance_runs_on(tmp_path):
    victim, other = _start_driver(tmp_path, "victim"), _start_driver(tmp_path, "other")
    try:
        grandchild = _wait_ready(victim)
        _wait_ready(other)
        started = psutil.Process(victim.pid).children(recursive=True)
        others = psutil.Process(other.pid).children(recursive=True)
        names = {p.name() for p in _alive(started)}
        # what outlived a killed driver before: the raylet's agents, and the actors' children
        assert {"ray::DashboardAgent", "ray::RuntimeEnvAgent", "ray::Holder"} <= names, names
        assert grandchild in {p.pid for p in started}

        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        deadline = time.monotonic() + 15
        while _alive(started) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(started), f"left running: {_describe(_alive(started))}"
        # the other private instance on this machine was not touched
        assert _alive(others) == others, \
            f"the other instance lost {set(_describe(others)) - set(_describe(_alive(others)))}"

        other.stdin.close()  # the other driver ends its instance as a run does
        assert other.wait(timeout=60) == 0
        deadline = time.monotonic() + 15
        while _alive(others) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(others), f"left running: {_describe(_alive(others))}"
    finally:
        for driver in (victim, other):
            if driver.poll() is None:
                driver.kill()
