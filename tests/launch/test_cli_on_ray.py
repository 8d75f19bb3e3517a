"""The ``raytrainer`` command on Ray as a user runs it: its own Ray instance even when another
one runs on the machine, and relative locations that mean the same in every worker."""
from __future__ import annotations

import os
import subprocess
import sys

from ..conftest import ROOT

CONFIG = os.path.join(ROOT, "configs/digits/mlp.py")


def _raytrainer(args, cwd, env, timeout=600):
    return subprocess.run([sys.executable, "-m", "raytrainer.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_train_uses_its_own_instance_and_test_takes_a_relative_checkpoint(ray_cluster,
                                                                         tmp_path):
    env = {k: v for k, v in ray_cluster.env.items() if k != "RAY_ADDRESS"}
    train = _raytrainer(["train", CONFIG, "--work-dir", "runs/digits", "--cfg-options",
                         "train_cfg.max_epochs=1", "train_cfg.val_interval=1"], tmp_path, env)
    output = train.stdout + train.stderr
    assert train.returncode == 0, output[-3000:]
    # another instance (the test cluster) runs on this machine; the run did not join it
    assert "started a private local Ray instance at 127.0.0.1:" in output
    assert ray_cluster.address not in output
    assert "multiple active Ray instances" not in output
    assert os.path.exists(tmp_path / "runs/digits/checkpoints/epoch_1/commit.json")

    test = _raytrainer(["test", CONFIG, "--work-dir", "runs/eval", "--checkpoint",
                        "runs/digits/checkpoints/epoch_1"], tmp_path, env)
    assert test.returncode == 0, (test.stdout + test.stderr)[-3000:]
    assert "test accuracy/top1:" in test.stdout


def test_an_error_that_would_recur_is_printed_once_without_a_traceback(ray_cluster, tmp_path):
    env = {k: v for k, v in ray_cluster.env.items() if k != "RAY_ADDRESS"}
    run = _raytrainer(["train", CONFIG, "--work-dir", "w", "--cfg-options",
                       "model.bogus_arg=1", "ray.max_failures=3"], tmp_path, env)
    output = run.stdout + run.stderr
    assert run.returncode == 1, output[-3000:]
    assert output.count("unexpected keyword argument 'bogus_arg'") == 1, output[-3000:]
    assert "config key 'model'" in run.stderr
    assert "Traceback" not in output
    assert "--debug" in run.stderr


def test_an_impossible_gpu_request_fails_in_seconds(ray_cluster, tmp_path):
    env = {k: v for k, v in ray_cluster.env.items() if k != "RAY_ADDRESS"}
    run = _raytrainer(["train", CONFIG, "--work-dir", "w", "--num-workers", "4", "--gpu"],
                      tmp_path, env, timeout=180)
    assert run.returncode == 1, (run.stdout + run.stderr)[-3000:]
    assert "cannot start 4 worker(s) x (1 GPU, PACK)" in run.stderr
    assert "room for 0 worker(s)" in run.stderr
    assert not (tmp_path / "w" / "checkpoints").exists()
