"""A permanent storage outage mid-run ends the process: a clear StorageError, a bounded last
try of the background uploads (logs, async checkpoint writes), a non-zero exit."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

from ..test_cli import ROOT

_SCRIPT = """
import sys
from raytrainer import storage
from raytrainer.cli import main
storage.set_retry_policy(base_delay=3, max_delay=3)
sys.exit(main(sys.argv[1:]))
"""


def test_a_run_whose_storage_dies_exits_non_zero_in_bounded_time(tmp_path, s3_server):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    import s3fs

    s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True).mkdir("outage")
    marker, release = str(tmp_path / "paused"), str(tmp_path / "release")
    config = tmp_path / "cfg.py"
    config.write_text(
        f"_base_ = [{os.path.join(ROOT, 'configs/digits/mlp.py')!r}]\n"
        "train_cfg = dict(max_epochs=3, val_interval=1)\n"
        "default_hooks = dict(logger=dict(interval=5), checkpoint=dict(async_save=True))\n"
        "custom_hooks = [dict(type='tests.checkpoint.process_hooks.PauseAt', "
        f"marker={marker!r}, release={release!r})]\n")
    options = {"s3": {"endpoint_url": endpoint,
                      "config_kwargs": {"retries": {"total_max_attempts": 1}}}}
    env = dict(os.environ, RAYTRAINER_STORAGE_OPTIONS=json.dumps(options))
    run = subprocess.Popen([sys.executable, "-c", _SCRIPT, "train", str(config), "--launcher",
                            "none", "--work-dir", "s3://outage/run"], cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
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
        open(release, "w").close()
        run.wait(timeout=300)
        ended = time.monotonic()
        reader.join(timeout=10)
    finally:
        run.kill()
        server.stop()
    err = "".join(lines)
    assert run.returncode == 1, err[-3000:]
    assert "raytrainer train failed: StorageError: storage: cannot" in err
    assert endpoint in err
    # Every operation is retried for 12 s (4 retries 3 s apart, the policy set above). Once
    # the run has failed, what is still uploading (its open logs) gets one try each, so the
    # process ends within seconds instead of retrying each log for another 12 s.
    assert failed_at and ended - failed_at[0] < 8, \
        f"exited {ended - failed_at[0]:.1f} s after the failure"
