"""A permanent storage outage mid-run ends the process: a clear StorageError naming the
location, in bounded time, a bounded last try of the background uploads (logs, async
checkpoint writes), a non-zero exit."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass

import pytest

from ..test_cli import ROOT

_SCRIPT = """
import sys
from raytrainer import storage
from raytrainer.cli import main
{setup}
sys.exit(main(sys.argv[1:]))
"""


@dataclass
class _Outcome:
    returncode: int
    stderr: str
    endpoint: str
    work_dir: str
    outage_to_exit_s: float  # from the endpoint's death to the process's exit
    failure_to_exit_s: float  # from 'raytrainer train failed' to the exit


def _train_through_an_outage(tmp_path, s3_options: dict, setup: str = "") -> _Outcome:
    """Train on s3://outage-<id>/run (``--launcher none``), stop the S3 server for good at
    iteration 5 and wait for the run to end."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    import s3fs

    bucket = f"outage-{uuid.uuid4().hex[:12]}"  # moto's servers in one process share buckets
    s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True).mkdir(bucket)
    marker, release = str(tmp_path / "paused"), str(tmp_path / "release")
    config = tmp_path / "cfg.py"
    config.write_text(
        f"_base_ = [{os.path.join(ROOT, 'configs/digits/mlp.py')!r}]\n"
        "train_cfg = dict(max_epochs=3, val_interval=1)\n"
        "default_hooks = dict(logger=dict(interval=5), checkpoint=dict(async_save=True))\n"
        "custom_hooks = [dict(type='tests.checkpoint.process_hooks.PauseAt', "
        f"marker={marker!r}, release={release!r})]\n")
    options = {"s3": {"endpoint_url": endpoint, **s3_options}}
    env = dict(os.environ, RAYTRAINER_STORAGE_OPTIONS=json.dumps(options))
    run = subprocess.Popen([sys.executable, "-c", _SCRIPT.format(setup=setup), "train",
                            str(config), "--launcher", "none", "--work-dir", f"s3://{bucket}/run"],
                           cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True)
    failed_at: list[float] = []
    lines: list[str] = []

    def read_stderr() -> None:
        for line in run.stderr:
            lines.append(line)
            if line.startswith("raytrainer train failed:") and not failed_at:
                failed_at.append(time.monotonic())

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 240
        while not os.path.exists(marker):
            assert run.poll() is None, "".join(lines)
            assert time.monotonic() < deadline
            time.sleep(0.1)
        server.stop()  # the endpoint is gone for good: connections are refused
        outage = time.monotonic()
        open(release, "w").close()
        run.wait(timeout=300)
        ended = time.monotonic()
        reader.join(timeout=10)
    finally:
        run.kill()
        server.stop()
    err = "".join(lines)
    assert failed_at, err[-3000:]
    return _Outcome(run.returncode, err, endpoint, f"s3://{bucket}/run",
                    ended - outage, ended - failed_at[0])


@pytest.mark.slow
def test_a_run_whose_storage_dies_exits_non_zero_in_bounded_time(tmp_path, s3_server):
    outcome = _train_through_an_outage(
        tmp_path, {"config_kwargs": {"retries": {"total_max_attempts": 1}}},
        setup="storage.set_retry_policy(attempts=5, base_delay=3, max_delay=3)")
    err = outcome.stderr
    assert outcome.returncode == 1, err[-3000:]
    assert "raytrainer train failed: StorageError: storage: cannot" in err
    assert outcome.endpoint in err
    # Every operation is retried for 12 s (4 retries 3 s apart, the policy set above). Once
    # the run has failed, what is still uploading (its open logs) gets one try each, so the
    # process ends within seconds instead of retrying each log for another 12 s.
    assert outcome.failure_to_exit_s < 8, f"exited {outcome.failure_to_exit_s:.1f} s after " \
                                          "the failure"


@pytest.mark.slow
def test_with_default_settings_a_dead_endpoint_fails_the_run_within_a_minute(tmp_path,
                                                                            s3_server):
    # Nothing tuned: raytrainer's S3 defaults (botocore's own retries off) and its retry
    # policy (retries for 13.75 to 20 s per operation). Before them botocore retried
    # each request up to 5 times under raytrainer's 5 tries, and the run took 221 s to fail.
    outcome = _train_through_an_outage(tmp_path, {})
    err = outcome.stderr
    assert outcome.returncode == 1, err[-3000:]
    assert "raytrainer train failed: StorageError: storage: cannot " in err
    failure = next(line for line in err.splitlines()
                   if line.startswith("raytrainer train failed:"))
    assert f"{outcome.work_dir}/" in failure, failure
    assert "expected a reachable storage endpoint" in failure
    assert outcome.outage_to_exit_s < 60, f"exited {outcome.outage_to_exit_s:.1f} s after " \
                                          "the endpoint died"
