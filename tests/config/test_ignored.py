"""MMEngine/MMCV arguments accepted without effect warn once each, naming the key and why."""
import os
import subprocess
import sys
import warnings

import pytest

from raytrainer.config import Config, ConfigWarning, ignored
from raytrainer.evaluator.metrics import Accuracy
from raytrainer.hooks import CheckpointHook
from raytrainer.runner import Runner
from tests.runner.helpers import runner_kwargs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch):
    monkeypatch.setattr(ignored, "_warned", set())


def _messages(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, ConfigWarning)]


def test_checkpoint_hook_arguments_warn_once_each():
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for _ in range(2):
            CheckpointHook(interval=1, backend_args=dict(backend="local"),
                           file_client_args=dict(backend="disk"), published_keys=["meta"])
    assert _messages(record) == [
        "CheckpointHook.file_client_args={'backend': 'disk'} has no effect: " + ignored._STORAGE,
        "CheckpointHook.backend_args={'backend': 'local'} has no effect: " + ignored._STORAGE,
        "CheckpointHook.published_keys=['meta'] has no effect: raytrainer does not publish a "
        "model file after training; write one with raytrainer convert CHECKPOINT OUT.pth"]


def test_a_metrics_collect_dir_warns():
    with pytest.warns(ConfigWarning, match=r"BaseMetric.collect_dir='/shared/tmp' has no "
                                           r"effect: results are gathered with torch"):
        Accuracy(collect_dir="/shared/tmp")


def test_runner_keys_warn(tmp_path):
    cfg = Config(dict(**runner_kwargs(tmp_path, epochs=1, val=False), gpu_ids=[0],
                      tta_model=dict(type="SegTTAModel"), workflow=[("train", 1)],
                      default_scope="mmdet", env_cfg=dict(cudnn_benchmark=False,
                                                          mp_cfg=dict(mp_start_method="fork"))))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        Runner.from_cfg(cfg)
    messages = _messages(record)
    assert messages[:3] == [
        "tta_model has no effect: raytrainer has no test-time augmentation; the model is "
        "tested as built",
        "workflow has no effect: an MMCV 1.x key; use train_cfg (val_interval) and "
        "val_cfg/test_cfg",
        "gpu_ids has no effect: devices come from the launcher: --num-workers and "
        "ray.use_gpu on Ray, the visible device otherwise"]
    assert "default_scope='mmdet' has no effect: raytrainer has one registry: every type " \
        "resolves in it, whatever the scope" in messages
    assert "env_cfg.mp_cfg={'mp_start_method': 'fork'} has no effect: raytrainer reads " \
        "env_cfg.cudnn_benchmark and env_cfg.dist_cfg only" in messages
    assert len(messages) == 5


def test_save_checkpoint_and_resume_arguments_warn(tmp_path):
    runner = Runner(**runner_kwargs(tmp_path, epochs=1, val=False))
    runner.train()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        saved = runner.save_checkpoint(str(tmp_path / "out"), "extra", backend_args={})
        runner.resume(saved, map_location="cuda:0")
    assert _messages(record) == [
        "save_checkpoint.backend_args={} has no effect: " + ignored._STORAGE,
        "resume.map_location='cuda:0' has no effect: a resumed checkpoint is read to CPU and "
        "each tensor placed by the strategy on this rank's device"]


@pytest.mark.slow
def test_the_cli_prints_each_warning_as_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "raytrainer.cli", "train", "configs/digits/mlp.py", "--launcher",
         "none", "--work-dir", str(tmp_path), "--cfg-options", "train_cfg.max_epochs=1",
         "auto_resume=True", "log_config.interval=5"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stderr.splitlines()
    assert sum(line.startswith("raytrainer: warning: auto_resume has no effect: an MMDetection "
                               "tools flag; use resume='auto' (or raytrainer train --resume)")
               for line in lines) == 1
    assert sum(line.startswith("raytrainer: warning: log_config has no effect: an MMCV 1.x "
                               "key; use default_hooks.logger") for line in lines) == 1
