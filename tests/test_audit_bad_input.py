"""Bad input through the real command line: a clear failure that names the config key, and
a committed checkpoint already in the work_dir is left byte-identical.

Every case runs ``python -m raytrainer.cli ... --launcher none`` in a subprocess on the digits
config, in a copy of a work_dir that holds one committed checkpoint (made once per session).
Most cases fail in the config validation, before anything is built.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from raytrainer.config import Config
from raytrainer.runner import Runner

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "configs" / "digits" / "mlp.py")
COMMITTED = os.path.join("checkpoints", "epoch_1")


@pytest.fixture(scope="session")
def committed_work_dir(tmp_path_factory) -> Path:
    """A work_dir holding the committed checkpoint ``epoch_1`` of a one-epoch digits run."""
    work_dir = tmp_path_factory.mktemp("audit") / "trained"
    cfg = Config.fromfile(CONFIG)
    cfg.merge_from_dict({"work_dir": str(work_dir), "train_cfg.max_epochs": 1,
                         "default_hooks.logger.interval": 50})
    runner = Runner.from_cfg(cfg)
    runner.train()
    runner.logger.close()
    assert (work_dir / COMMITTED / "commit.json").exists()
    return work_dir


@pytest.fixture(scope="session")
def unrelated_weights(tmp_path_factory) -> str:
    """A checkpoint none of whose keys belong to the digits MLP."""
    path = tmp_path_factory.mktemp("audit") / "other_model.pth"
    torch.save({"state_dict": {"encoder.weight": torch.zeros(4, 4)}}, path)
    return str(path)


def _digests(directory: Path) -> dict[str, str]:
    return {name: hashlib.sha256((directory / name).read_bytes()).hexdigest()
            for name in sorted(os.listdir(directory))}


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "raytrainer.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


# (case id, command, config lines added to a file that inherits the digits config,
#  --cfg-options tokens, text the message must contain)
CASES = [
    ("topk-above-classes", "train", "", ["val_evaluator.topk=20"], ["val_evaluator.topk",
                                                                    "num_classes=10"]),
    ("checkpoint-interval-0", "train", "", ["default_hooks.checkpoint.interval=0"],
     ["default_hooks.checkpoint.interval"]),
    ("custom-checkpoint-hook-interval-0", "train",
     "default_hooks = dict(checkpoint=None)\n"
     "custom_hooks = [dict(type='CheckpointHook', interval=0)]", [],
     ["custom_hooks.0.interval"]),
    ("val-interval-0", "train", "", ["train_cfg.val_interval=0"], ["train_cfg.val_interval"]),
    ("val-interval-negative", "train", "", ["train_cfg.val_interval=-1"],
     ["train_cfg.val_interval", "positive integer"]),
    ("val-interval-text", "train", "", ["train_cfg.val_interval=two"],
     ["train_cfg.val_interval", "'two'"]),
    ("max-epochs-text", "train", "", ["train_cfg.max_epochs=ten"],
     ["train_cfg.max_epochs", "'ten'"]),
    ("ray-key-typo", "train", "ray = dict(num_wokers=2)", [],
     ["ray.num_wokers", "ray.num_workers"]),
    ("lr-text", "train", "", ["optim_wrapper.optimizer.lr=abc"],
     ["optim_wrapper.optimizer.lr", "'abc'"]),
    ("batch-size-0", "train", "", ["train_dataloader.batch_size=0"],
     ["train_dataloader.batch_size"]),
    ("batch-size-text", "train", "", ["train_dataloader.batch_size='32'"],
     ["train_dataloader.batch_size", "'32'"]),
    ("num-workers-negative", "train", "", ["train_dataloader.num_workers=-3"],
     ["train_dataloader.num_workers"]),
    ("sampler-without-type", "train",
     "train_dataloader = dict(sampler=dict(_delete_=True, shuffle=True))", [],
     ["train_dataloader.sampler", "'type'"]),
    ("hook-type-typo", "train", "custom_hooks = [dict(type='EMAHok')]", [],
     ["custom_hooks.0.type", "EMAHook"]),
    ("dict-option-on-a-tuple", "train", "", ["model.hidden_dims=dict(a=1)"],
     ["model.hidden_dims"]),
    ("ddp-without-launcher", "train", "", ["strategy=dict(type='DDPStrategy')"],
     ["strategy=DDPStrategy", "--launcher ray"]),
    ("model-does-not-fit-data", "train", "", ["model.in_features=32"],
     ["train_dataloader.dataset", "'model' config", "(32, 64)"]),
    ("clip-grad-negative-max-norm", "train", "",
     ["optim_wrapper.clip_grad.max_norm=-1"], ["optim_wrapper.clip_grad.max_norm", "> 0"]),
    ("clip-grad-norm-type-0", "train", "",
     ["optim_wrapper.clip_grad.norm_type=0"], ["optim_wrapper.clip_grad.norm_type", ">= 1"]),
    ("max-keep-ckpts-text", "train", "", ["default_hooks.checkpoint.max_keep_ckpts=abc"],
     ["default_hooks.checkpoint.max_keep_ckpts", "-1", "positive integer", "'abc'"]),
    ("seed-text", "train", "", ["randomness.seed=abc"],
     ["randomness.seed must be an integer >= 0 or None", "'abc'"]),
]


@pytest.mark.slow
@pytest.mark.parametrize("command,lines,options,expected",
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_config_fails_naming_the_key_and_keeps_the_checkpoint(
        committed_work_dir, tmp_path, command, lines, options, expected):
    work_dir = tmp_path / "work_dir"
    shutil.copytree(committed_work_dir, work_dir)
    before = _digests(work_dir / COMMITTED)
    config = CONFIG
    if lines:
        config = str(tmp_path / "bad.py")
        Path(config).write_text(f"_base_ = {CONFIG!r}\n{lines}\n")
    args = [command, config, "--launcher", "none", "--work-dir", str(work_dir)]
    if options:
        args += ["--cfg-options", *options]
    done = _run(*args)
    assert done.returncode == 1, done.stdout + done.stderr
    for text in expected:
        assert text in done.stderr, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert _digests(work_dir / COMMITTED) == before


@pytest.mark.slow
@pytest.mark.parametrize("command", ["train", "test"])
def test_weights_of_another_model_are_refused(committed_work_dir, unrelated_weights, tmp_path,
                                              command):
    work_dir = tmp_path / "work_dir"
    shutil.copytree(committed_work_dir, work_dir)
    before = _digests(work_dir / COMMITTED)
    flag = "--load-from" if command == "train" else "--checkpoint"
    done = _run(command, CONFIG, "--launcher", "none", "--work-dir", str(work_dir),
                flag, unrelated_weights)
    assert done.returncode == 1, done.stderr
    assert "load_from" in done.stderr and "none of its 1 keys" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert _digests(work_dir / COMMITTED) == before


@pytest.mark.slow
def test_a_top_level_key_typo_warns_with_did_you_mean(committed_work_dir, tmp_path):
    config = tmp_path / "typo.py"
    config.write_text(f"_base_ = {CONFIG!r}\ntrian_cfg = dict(max_epochs=1)\n")
    done = _run("val", str(config), "--launcher", "none", "--work-dir", str(tmp_path / "v"),
                "--checkpoint", str(committed_work_dir / COMMITTED))
    assert done.returncode == 0, done.stderr
    assert "raytrainer: warning: config key 'trian_cfg' is not used by the Runner; did you " \
           "mean 'train_cfg'?" in done.stderr
    assert "val accuracy/top1:" in done.stdout


@pytest.mark.parametrize("option,expected", [
    ("train_cfg.val_interval=0", "train_cfg.val_interval must be a positive integer"),
    ("randomness.seed=abc", "randomness.seed must be an integer >= 0 or None"),
])
@pytest.mark.slow
def test_on_ray_the_driver_rejects_bad_values_before_starting_workers(committed_work_dir,
                                                                      tmp_path, option,
                                                                      expected):
    work_dir = tmp_path / "work_dir"
    shutil.copytree(committed_work_dir, work_dir)
    before = _digests(work_dir / COMMITTED)
    done = _run("train", CONFIG, "--work-dir", str(work_dir), "--cfg-options", option)
    assert done.returncode == 1, done.stderr
    assert expected in done.stderr
    assert "Started a local Ray instance" not in done.stdout + done.stderr
    assert _digests(work_dir / COMMITTED) == before
