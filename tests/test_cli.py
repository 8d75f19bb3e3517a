"""The raytrainer command: real subprocesses, exit codes and messages."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "raytrainer.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_train_digits_with_overrides_prints_val_accuracy(tmp_path):
    result = run_cli("train", "configs/digits/mlp.py", "--work-dir", str(tmp_path),
                     "--cfg-options", "train_cfg.max_epochs=5", "train_cfg.val_interval=5",
                     "default_hooks.logger.interval=50")
    assert result.returncode == 0, result.stderr
    line = [x for x in result.stdout.splitlines() if x.startswith("final val")][-1]
    accuracy = float(line.split("accuracy/top1:")[1])
    assert accuracy > 90.0
    assert os.path.isdir(tmp_path / "checkpoints" / "epoch_5")
    assert os.path.exists(tmp_path / "mlp.py")  # the resolved config is dumped


def test_val_and_test_subcommands_use_the_checkpoint(tmp_path):
    trained = run_cli("train", "configs/digits/mlp.py", "--work-dir", str(tmp_path),
                      "--cfg-options", "train_cfg.max_epochs=2", "train_cfg.val_interval=2")
    assert trained.returncode == 0, trained.stderr
    checkpoint = str(tmp_path / "checkpoints" / "epoch_2")
    for command in ("val", "test"):
        result = run_cli(command, "configs/digits/mlp.py", "--work-dir", str(tmp_path / command),
                         "--checkpoint", checkpoint)
        assert result.returncode == 0, result.stderr
        assert f"{command} accuracy/top1:" in result.stdout


@pytest.mark.parametrize("args,message", [
    (("train", "configs/digits/missing.py"), "missing.py"),
    (("train", "configs/digits/mlp.py", "--cfg-options", "optim_wrapper.optimizer.type=SDG"),
     "'SDG' is not registered in the optimizer registry"),
    (("test", "configs/digits/mlp.py", "--checkpoint", "/nonexistent/epoch_9"),
     "checkpoint not found: /nonexistent/epoch_9"),
])
def test_failures_exit_non_zero_with_a_reason(tmp_path, args, message):
    result = run_cli(*args, "--work-dir", str(tmp_path))
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert "raytrainer" in result.stderr.splitlines()[0]


def test_bad_cfg_option_token_is_a_usage_error(tmp_path):
    result = run_cli("train", "configs/digits/mlp.py", "--cfg-options", "no_equals_sign")
    assert result.returncode == 2
    assert "no_equals_sign" in result.stderr


def test_help_documents_every_flag():
    result = run_cli("train", "--help")
    for flag in ("--work-dir", "--cfg-options", "--resume", "--load-from", "--seed",
                 "--deterministic", "--auto-scale-lr"):
        assert flag in result.stdout
