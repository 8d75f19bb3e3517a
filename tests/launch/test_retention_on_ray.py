"""Retention on Ray holds across worker restarts and resubmissions: at most max_keep_ckpts
regular checkpoints remain, also when a worker dies between a commit and its report; Ray's
record of the checkpoints follows a checkpoint deleted by hand."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from raytrainer import checkpoint as ckpt
from raytrainer import cli, launch
from raytrainer.hooks import Hook

from .conftest import Killer
from .test_ray_train import attempts, digits_cfg

KEEP = 3
EVERY = 4  # 23 iterations per epoch and rank


def _cfg(tmp_path, marker, at_iter, **changes):
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    # Rank 1 is killed right after it finished writing checkpoint iter_<at_iter>: rank 0
    # commits it, and the worker group dies before the report that would register it.
    hook = dict(type="tests.launch.ray_hooks.ExposePidAt", marker=marker, at_iter=at_iter)
    cfg = digits_cfg(tmp_path / "work", out, hook)
    cfg.merge_from_dict({"train_cfg.max_epochs": 2, "train_cfg.val_interval": 3,
                         "default_hooks.checkpoint.interval": EVERY,
                         "default_hooks.checkpoint.max_keep_ckpts": KEEP, **changes})
    return cfg


def _regular(tmp_path) -> list[str]:
    root = os.path.join(tmp_path / "work", "checkpoints")
    return sorted((name for name in os.listdir(root) if ckpt.is_regular(name)),
                  key=lambda name: int(name.split("_")[1]))


def test_retention_holds_after_a_worker_kill_and_a_resubmission(ray_cluster, tmp_path):
    marker = str(tmp_path / "pid")
    with Killer(marker) as killer:
        launch.train(_cfg(tmp_path, marker, at_iter=10 * EVERY), num_workers=2)
    assert killer.killed_pid is not None
    assert _regular(tmp_path) == ["iter_40", "iter_44", "iter_46"]

    marker = str(tmp_path / "pid2")
    cfg = _cfg(tmp_path, marker, at_iter=15 * EVERY, **{"train_cfg.max_epochs": 3,
                                                        "ray.max_failures": 0})
    cfg.resume = True
    with Killer(marker), pytest.raises(Exception, match="(?i)fail"):
        launch.train(cfg, num_workers=2)
    assert "iter_60" in _regular(tmp_path)  # committed, never reported
    cfg.merge_from_dict({"train_cfg.max_epochs": 3})
    launch.train(cfg, num_workers=2)  # the resubmission with resume=True
    assert _regular(tmp_path) == ["iter_64", "iter_68", "iter_69"]


def test_resume_after_an_old_checkpoint_was_deleted_by_hand(ray_cluster, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    cfg = digits_cfg(tmp_path / "work", out)
    cfg.merge_from_dict({"train_cfg.max_epochs": 1, "default_hooks.checkpoint.interval": EVERY,
                         "default_hooks.checkpoint.max_keep_ckpts": KEEP})
    launch.train(cfg, num_workers=1)
    before = _regular(tmp_path)
    assert len(before) == KEEP
    shutil.rmtree(tmp_path / "work" / "checkpoints" / before[0])  # by hand, Ray still lists it

    config = tmp_path / "digits.py"
    cfg.dump(str(config))
    code = cli.main(["train", str(config), "--num-workers", "1", "--resume",
                     "--cfg-options", "train_cfg.max_epochs=2"])
    assert code == 0
    resumed = attempts(out)[-1]
    assert resumed["resumed_from"].endswith("/checkpoints/" + before[-1])
    assert resumed["start_iter"] == int(before[-1].split("_")[1])
    record = json.loads((tmp_path / "work" / "checkpoint_manager_snapshot.json").read_text())
    listed = [r["checkpoint_dir_name"] for r in record["checkpoint_results"]]
    assert listed == [f"checkpoints/{name}" for name in _regular(tmp_path)]


class CountCheckpointsAtTrainEnd(Hook):
    """Writes how many regular checkpoints are on storage when training ends (before the
    last report)."""

    priority = "VERY_LOW"  # after the CheckpointHook, before RayReportHook

    def __init__(self, out_dir: str):
        self.out_dir = out_dir

    def after_train(self, runner) -> None:
        if runner.rank == 0:
            root = runner.checkpoints.directory
            names = [name for name in os.listdir(root) if ckpt.is_regular(name)]
            with open(os.path.join(self.out_dir, "at_train_end.json"), "w") as f:
                json.dump(names, f)


def test_fast_checkpoints_keep_max_keep_ckpts_during_and_at_the_end_of_a_run(ray_cluster,
                                                                             tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    hook = dict(type=f"{__name__}.CountCheckpointsAtTrainEnd", out_dir=str(out))
    cfg = digits_cfg(tmp_path / "work", out, hook)
    # 45 checkpoints, one every 2 iterations of a few ms: far faster than Ray's controller
    # takes reports (one per 2 s poll)
    cfg.merge_from_dict({"train_cfg.max_epochs": 2, "default_hooks.checkpoint.interval": 2,
                         "default_hooks.checkpoint.max_keep_ckpts": 2})
    result = launch.train(cfg, num_workers=1)
    assert result.details["iter"] == 90
    assert _regular(tmp_path) == ["iter_88", "iter_90"]
    # before the last report: those Ray keeps, those on their way to it, those waiting
    at_end = json.loads((out / "at_train_end.json").read_text())
    assert len(at_end) <= 3 * 2, sorted(at_end)
    assert {"iter_88", "iter_90"} <= set(at_end)
