"""On Ray's workers too, a sharded checkpoint whose ``.metadata`` would run code is refused:
``test`` fails naming the file, ``resume=True`` falls back to the checkpoint before it."""
from __future__ import annotations

import os

import pytest

from raytrainer import launch
from raytrainer.config import Config
from tests.checkpoint.sharded_files import CONFIG, craft_metadata, train_sharded


def test_a_crafted_metadata_file_runs_no_code_on_ray_workers(ray_cluster, tmp_path):
    work_dir = str(tmp_path / "work")
    root = train_sharded(work_dir)
    location = os.path.join(root, "epoch_2")
    marker = tmp_path / "payload-ran"
    crafted = craft_metadata(location, str(marker))
    refusal = f"{crafted} is refused (it names builtins.exec"

    cfg = Config.fromfile(CONFIG)
    cfg.merge_from_dict({"strategy": dict(type="FSDPStrategy"), "train_cfg.max_epochs": 1})
    cfg.work_dir = str(tmp_path / "eval")
    with pytest.raises(Exception) as failed:
        launch.test(cfg, location, num_workers=2)
    assert not marker.exists()
    assert refusal in str(failed.value)

    cfg.work_dir, cfg.resume = work_dir, True
    result = launch.train(cfg, num_workers=2)  # epoch_1 is the last epoch: nothing to train
    assert not marker.exists()
    assert result.details["resumed_from"] == os.path.join(root, "epoch_1")
    log = open(os.path.join(work_dir, result.spec.timestamp,
                            f"{result.spec.timestamp}_rank1.log")).read()
    assert f"skipping {location}: {refusal}" in log
