"""The Ray driver holds the work_dir lease: a second run in a work_dir in use is refused."""
from __future__ import annotations

import json
import os
import time

import pytest

from raytrainer import launch, storage
from raytrainer.runner.lease import LEASE_FILE, WorkDirInUseError

from .test_ray_train import digits_cfg


def test_the_driver_refuses_a_work_dir_held_by_a_live_run(ray_cluster, tmp_path):
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    record = dict(token="other", run="live_run", lineage="20200101_000000",
                  holder="elsewhere pid 1", started=time.time() - 5, heartbeat=time.time())
    lease = os.path.join(work_dir, LEASE_FILE)
    storage.write_text(lease, json.dumps(record))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(WorkDirInUseError, match=f"work_dir {work_dir} is in use by run "
                       "live_run .* on elsewhere pid 1"):
        launch.train(digits_cfg(work_dir, out), num_workers=1)
    assert json.loads(storage.read_text(lease)) == record  # the holder's lease is untouched
    assert not os.path.exists(out / "attempts.jsonl")  # no worker ever started
