"""The raytrainer command: real subprocesses, exit codes and messages."""
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # every test here starts processes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args, cwd=ROOT, env=None):
    return subprocess.run([sys.executable, "-m", "raytrainer.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_train_digits_with_overrides_prints_val_accuracy(tmp_path):
    result = run_cli("train", "configs/digits/mlp.py", "--launcher", "none",
                     "--work-dir", str(tmp_path),
                     "--cfg-options", "train_cfg.max_epochs=5", "train_cfg.val_interval=5",
                     "default_hooks.logger.interval=50")
    assert result.returncode == 0, result.stderr
    line = [x for x in result.stdout.splitlines() if x.startswith("final val")][-1]
    accuracy = float(line.split("accuracy/top1:")[1])
    assert accuracy > 90.0
    assert os.path.isdir(tmp_path / "checkpoints" / "epoch_5")
    assert os.path.exists(tmp_path / "mlp.py")  # the resolved config is dumped


def test_val_and_test_subcommands_use_the_checkpoint(tmp_path):
    trained = run_cli("train", "configs/digits/mlp.py", "--launcher", "none",
                      "--work-dir", str(tmp_path),
                      "--cfg-options", "train_cfg.max_epochs=2", "train_cfg.val_interval=2")
    assert trained.returncode == 0, trained.stderr
    checkpoint = str(tmp_path / "checkpoints" / "epoch_2")
    for command in ("val", "test"):
        result = run_cli(command, "configs/digits/mlp.py", "--launcher", "none",
                         "--work-dir", str(tmp_path / command), "--checkpoint", checkpoint)
        assert result.returncode == 0, result.stderr
        assert f"{command} accuracy/top1:" in result.stdout


@pytest.mark.parametrize("args,message", [
    (("train", "configs/digits/missing.py"), "missing.py"),
    (("train", "configs/digits/mlp.py", "--cfg-options", "optim_wrapper.optimizer.type=SDG"),
     "'SDG' is not registered in the optimizer registry"),
    (("test", "configs/digits/mlp.py", "--checkpoint", "/nonexistent/epoch_9"),
     "checkpoint not found: /nonexistent/epoch_9"),
])
@pytest.mark.parametrize("launcher", ["none", "ray"])
def test_failures_exit_non_zero_with_a_reason(tmp_path, args, message, launcher):
    # On Ray these fail in the driver's checks, before any worker is started.
    result = run_cli(*args, "--work-dir", str(tmp_path), "--launcher", launcher)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert "raytrainer" in result.stderr.splitlines()[0]


@pytest.mark.parametrize("launcher", ["none", "ray"])
def test_an_uncommitted_resume_checkpoint_is_refused_by_name(tmp_path, launcher):
    torn = tmp_path / "checkpoints" / "iter_40"
    torn.mkdir(parents=True)
    (torn / "model.pt").write_bytes(b"half a file")
    result = run_cli("train", "configs/digits/mlp.py", "--work-dir", str(tmp_path),
                     "--resume", str(torn), "--launcher", launcher)
    assert result.returncode == 1
    assert f"{torn} is not a committed checkpoint: commit.json is missing" in result.stderr
    assert "Traceback" not in result.stderr
    assert (torn / "model.pt").read_bytes() == b"half a file"  # nothing is deleted


def test_memory_work_dir_is_refused_on_ray(tmp_path):
    result = run_cli("train", "configs/digits/mlp.py", "--work-dir", "memory://runs/x")
    assert result.returncode == 1
    assert "memory:// is private to each process" in result.stderr
    assert "started a local Ray instance" not in result.stdout


def test_bad_cfg_option_token_is_a_usage_error(tmp_path):
    result = run_cli("train", "configs/digits/mlp.py", "--cfg-options", "no_equals_sign")
    assert result.returncode == 2
    assert "no_equals_sign" in result.stderr


def test_unreachable_storage_fails_before_ray_starts(tmp_path):
    env = dict(os.environ, RAYTRAINER_STORAGE_OPTIONS='{"s3": {"endpoint_url": '
               '"http://127.0.0.1:9", "config_kwargs": {"retries": {"total_max_attempts": 1}}}}')
    result = run_cli("train", "configs/digits/mlp.py", "--work-dir", "s3://nowhere/run",
                     env=env)
    assert result.returncode == 1
    assert "s3://nowhere/run" in result.stderr and "StorageError" in result.stderr
    assert "started a local Ray instance" not in result.stdout


def test_ray_only_flags_need_the_ray_launcher():
    result = run_cli("train", "configs/digits/mlp.py", "--launcher", "none",
                     "--num-workers", "2")
    assert result.returncode == 1
    assert "--num-workers, --gpu and --address need --launcher ray" in result.stderr


def test_help_documents_every_flag():
    result = run_cli("train", "--help")
    for flag in ("--work-dir", "--cfg-options", "--resume", "--load-from", "--seed",
                 "--deterministic", "--auto-scale-lr", "--launcher", "--num-workers", "--gpu",
                 "--address"):
        assert flag in result.stdout


def test_version_comes_from_the_package_metadata():
    from importlib.metadata import version

    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"raytrainer {version('raytrainer')}"
