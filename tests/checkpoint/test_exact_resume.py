"""A run that dies and is resumed in a new process ends bitwise equal to one that never stopped.

Each run is a fresh Python process (``train_script.py``). The interrupted run ends itself with
``os._exit`` right after iteration 33, in the middle of an epoch (45 iterations per epoch) and
13 iterations after its last checkpoint (``iter_20``). The model uses dropout and AdamW with a
warm-up + cosine schedule, so the RNG states, optimizer moments, scheduler position, loop
counters and sampler position must all come back exactly.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch

from raytrainer import storage

pytestmark = pytest.mark.slow  # every test here starts processes

SCRIPT = os.path.join(os.path.dirname(__file__), "train_script.py")


def _train(work_dir: str, loop: str, *extra: str, threads: int | None = None
           ) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads)) if threads else None
    return subprocess.run([sys.executable, SCRIPT, work_dir, loop, *extra],
                          capture_output=True, text=True, timeout=300, env=env)


def _assert_same_training_state(a: dict, b: dict) -> None:
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for index, state in a["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, b["optimizer"]["state"][index][name]), (index, name)
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]


def _straight_and_resumed(tmp_path, root: str, loop: str, *flags: str):
    straight_out, resumed_out = tmp_path / "straight.pt", tmp_path / "resumed.pt"
    done = _train(storage.join(root, "straight"), loop, "--out", str(straight_out), *flags)
    assert done.returncode == 0, done.stderr[-3000:]

    work_dir = storage.join(root, "interrupted")
    crashed = _train(work_dir, loop, "--crash-at", "33", *flags)
    assert crashed.returncode == 17, crashed.stderr[-3000:]
    resumed = _train(work_dir, loop, "--resume", "--out", str(resumed_out), *flags)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return torch.load(straight_out, weights_only=True), \
        torch.load(resumed_out, weights_only=True), resumed.stdout


@pytest.mark.parametrize("loop", ["epoch", "iter"])
def test_killed_and_resumed_run_equals_uninterrupted_run(tmp_path, loop):
    straight, resumed, log = _straight_and_resumed(tmp_path, str(tmp_path), loop)
    assert resumed["resumed_from"].endswith("iter_20")
    assert "resuming from" in log and "iter_20, the newest committed checkpoint" in log
    _assert_same_training_state(straight, resumed)


def test_async_saves_resume_exactly(tmp_path):
    straight, resumed, _ = _straight_and_resumed(tmp_path, str(tmp_path), "epoch",
                                                 "--async-save")
    assert resumed["resumed_from"].endswith("iter_20")
    _assert_same_training_state(straight, resumed)


def test_resume_from_s3_storage(tmp_path, s3_bucket):
    straight, resumed, _ = _straight_and_resumed(tmp_path, storage.join(s3_bucket, "runs"),
                                                 "iter")
    assert resumed["resumed_from"] == storage.join(s3_bucket, "runs", "interrupted",
                                                   "checkpoints", "iter_20")
    _assert_same_training_state(straight, resumed)


def test_resume_with_another_thread_count(tmp_path):
    """A product over 1 thread sums in another order than over 2: resumed with another
    thread count a run leaves the uninterrupted one from its first step. Deterministic mode
    takes the checkpoint's thread count; otherwise the resumed run warns."""
    straight_out, resumed_out = tmp_path / "straight.pt", tmp_path / "resumed.pt"
    done = _train(str(tmp_path / "straight"), "iter", "--deterministic", "--out",
                  str(straight_out), threads=2)
    assert done.returncode == 0, done.stderr[-3000:]
    work_dir = tmp_path / "interrupted"
    crashed = _train(str(work_dir), "iter", "--crash-at", "33", "--deterministic", threads=2)
    assert crashed.returncode == 17, crashed.stderr[-3000:]
    shutil.copytree(work_dir, tmp_path / "copy")

    resumed = _train(str(work_dir), "iter", "--resume", "--deterministic", "--out",
                     str(resumed_out), threads=1)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "iter_20 was saved with 2 intra-op thread(s); this process had 1 and now uses 2" \
        in resumed.stdout
    _assert_same_training_state(torch.load(straight_out, weights_only=True),
                                torch.load(resumed_out, weights_only=True))

    loose = _train(str(tmp_path / "copy"), "iter", "--resume", threads=1)
    assert loose.returncode == 0, loose.stderr[-3000:]
    assert "iter_20 was saved with 2 intra-op thread(s) and this process uses 1: the resumed " \
        "run is close to, not bitwise equal to, an uninterrupted one" in loose.stdout
