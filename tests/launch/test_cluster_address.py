"""Joining a cluster that is not there fails in seconds, naming the address."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

import pytest

from raytrainer.launch.driver.cluster import ClusterUnreachableError, check_reachable
from raytrainer.utils.net import free_port

from ..conftest import ROOT

CONFIG = os.path.join(ROOT, "configs/digits/mlp.py")


def test_a_dead_address_is_refused_naming_it():
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(ClusterUnreachableError, match=f"cannot reach the Ray cluster at {address}"):
        check_reachable(address)


def test_an_address_that_is_not_host_port_is_refused():
    with pytest.raises(ClusterUnreachableError, match="'nohost' is not HOST:PORT"):
        check_reachable("nohost")


@pytest.mark.slow
def test_train_with_a_dead_address_exits_1_in_seconds(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "raytrainer.cli", "train", CONFIG, "--work-dir",
                          "w", "--launcher", "ray", "--address", address], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, (run.stdout + run.stderr)[-3000:]
    assert f"cannot reach the Ray cluster at {address}" in run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    assert time.monotonic() - started < 60


LEAK_CHECK = """
import os, sys
from raytrainer.launch.driver.cluster import connect
from raytrainer.config.ray_settings import RaySettings
sys.executable = "/nonexistent/python"  # the reaper cannot start
try:
    with connect(RaySettings()):
        pass
except FileNotFoundError as exc:
    print("refused:", exc.filename)
print("left:", sorted(k for k in os.environ if k in ("RAY_ADDRESS", "RAY_GCS_SERVER_PORT")))
"""


def test_a_private_instance_that_cannot_start_its_reaper_leaves_the_environment_as_it_was():
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_GCS_SERVER_PORT")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    out = subprocess.run([sys.executable, "-c", LEAK_CHECK], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.stdout.splitlines() == ["refused: /nonexistent/python", "left: []"], out.stderr


def test_rays_token_auth_notice_is_kept_off_a_quiet_console():
    from ray._private.authentication import authentication_token_setup as auth

    from raytrainer.launch.driver.cluster import _quiet_token_auth_notice

    seen: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: seen.append(record.getMessage())
    auth.logger.addHandler(handler)  # Ray's loggers do not propagate to the root
    try:
        with _quiet_token_auth_notice(True):
            auth._warn_token_auth_enabled()  # what ray.init logs for a new local instance
        assert seen == []
        with _quiet_token_auth_notice(False):  # --verbose
            auth._warn_token_auth_enabled()
        assert len(seen) == 1 and seen[0].startswith("Token authentication is enabled")
    finally:
        auth.logger.removeHandler(handler)
