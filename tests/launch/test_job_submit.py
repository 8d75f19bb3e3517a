"""`ray job submit ... -- raytrainer train ...` against a `ray start` cluster, end to end."""
from __future__ import annotations

import json
import re
import subprocess
import time

from raytrainer import checkpoint as ckpt
from raytrainer import storage

from ..conftest import RAY, ROOT

EXCLUDES = [".venv", ".git", "work_dirs", "**/__pycache__", ".pytest_cache", ".ruff_cache",
            "benchmarks"]


def submit(ray_cluster, work_dir: str, env_vars: dict | None = None, *flags: str):
    runtime_env = {"excludes": EXCLUDES, "env_vars": env_vars or {}}
    command = [RAY, "job", "submit", "--address", ray_cluster.dashboard, "--working-dir", ".",
               "--runtime-env-json", json.dumps(runtime_env), "--",
               "raytrainer", "train", "configs/digits/mlp.py", "--work-dir", work_dir,
               "--num-workers", "2", *flags, "--cfg-options", "train_cfg.max_epochs=2",
               "train_cfg.val_interval=2"]
    # A cluster that has just started may not have its job agent yet; Ray answers "No
    # available agent to submit job, please try again later" and accepts no job then.
    deadline = time.monotonic() + 120
    while True:
        done = subprocess.run(command, cwd=ROOT, env=ray_cluster.env, capture_output=True,
                              text=True, timeout=600)
        if "No available agent to submit job" not in done.stderr or \
                time.monotonic() > deadline:
            return done
        time.sleep(2)


def _assert_succeeded(result, work_dir: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "succeeded" in output
    assert "final val accuracy/top1:" in output
    latest = ckpt.latest_checkpoint(storage.join(work_dir, "checkpoints"))
    assert latest == storage.join(work_dir, "checkpoints", "epoch_2")
    meta = ckpt.load_checkpoint(latest)["meta"]
    assert meta["world_size"] == 2 and meta["epoch"] == 2


def test_job_submit_trains_and_checkpoints_locally(ray_cluster, tmp_path):
    work_dir = str(tmp_path / "job")
    _assert_succeeded(submit(ray_cluster, work_dir), work_dir)


def test_job_submit_trains_and_checkpoints_on_s3(ray_cluster, s3_bucket, s3_server):
    work_dir = storage.join(s3_bucket, "jobs", "digits")
    options = json.dumps({"s3": {"endpoint_url": s3_server}})
    result = submit(ray_cluster, work_dir, {"RAYTRAINER_STORAGE_OPTIONS": options},
                    "--address", "auto")
    _assert_succeeded(result, work_dir)
    output = result.stdout + result.stderr
    # --address auto inside the job joins the job's cluster (named by its GCS address)
    assert re.search(r"joined the Ray cluster at \S+:\d+", output), output[-3000:]
    assert "private local Ray instance" not in output
    names = {e["name"] for e in storage.listdir(work_dir)}
    assert "checkpoints" in names and "mlp.py" in names  # checkpoints and the config dump


def test_a_failing_job_reports_the_reason(ray_cluster, tmp_path):
    command = [RAY, "job", "submit", "--address", ray_cluster.dashboard, "--working-dir", ".",
               "--runtime-env-json", json.dumps({"excludes": EXCLUDES}), "--",
               "raytrainer", "train", "configs/digits/mlp.py", "--work-dir",
               str(tmp_path / "bad"), "--cfg-options", "model.type=MLPClasifier"]
    result = subprocess.run(command, cwd=ROOT, env=ray_cluster.env, capture_output=True,
                            text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "'MLPClasifier' is not registered in the model registry" in output
    assert "did you mean 'MLPClassifier'?" in output
