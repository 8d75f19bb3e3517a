"""Retention on Ray holds across worker restarts and resubmissions: at most max_keep_ckpts
regular checkpoints remain, also when a worker dies between a commit and its report."""
from __future__ import annotations

import os

import pytest

from raytrainer import checkpoint as ckpt
from raytrainer import launch

from .conftest import Killer
from .test_ray_train import digits_cfg

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
