"""The driver's console on Ray: what a person sees in a pipe and in a terminal, and the summary.

The Ray tests run the real command in a subprocess on its own local Ray instance
(``--address local``), which the subprocess stops when it exits.
"""
import glob
import io
import os
import pty
import select
import shlex
import subprocess
import sys

import pytest

from raytrainer.launch.driver.console import RunConsole, format_stats
from raytrainer.launch.driver.summary import format_duration, quote, run_summary

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RAY_INTERNALS = ("TrainingReport", "Reporting training result", "PreemptionWatcher",
                 "core_worker.cc", "(RayTrainWorker", "(TrainController", "Hooks will run")


def _command(work_dir, *options):
    # the README's command (no RAY_ADDRESS in _env(): a private local instance)
    return [sys.executable, "-m", "raytrainer.cli", "train", "configs/digits/mlp.py",
            "--work-dir", str(work_dir), *options]


def _env():
    env = dict(os.environ, COLUMNS="160", RAY_DISABLE_USAGE_STATS="1")
    env.pop("RAY_ADDRESS", None)
    return env


@pytest.mark.ray
def test_twenty_epoch_ray_run_prints_rank0_lines_once_and_a_summary(tmp_path):
    result = subprocess.run(_command(tmp_path), cwd=ROOT, env=_env(), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = (result.stdout + result.stderr).splitlines()
    # 20 epochs of 2 train lines, one saved line an epoch (and a removal for retention), 4
    # validations, a header, the model summary and the run summary: a rank's duplicate would
    # double it; "Exp name" goes to the log file only
    assert len(lines) < 110, "\n".join(lines)
    assert not [line for line in lines if "Exp name" in line]
    train_lines = [line for line in lines if line.startswith("Epoch(train)")]
    assert len(train_lines) == 40 and len({line.split("lr:")[0] for line in train_lines}) == 40
    for marker in RAY_INTERNALS:
        assert not [line for line in lines if marker in line], marker
    assert sum("Epoch(train) [20][20/23]" in line for line in lines) == 1
    assert sum(line.startswith("Epoch(val) [20][3/3]") for line in lines) == 1
    last = str(tmp_path / "checkpoints" / "epoch_20")
    assert f"last checkpoint: {last}" in lines
    assert f"work_dir: {tmp_path}" in lines
    assert (f"resume: raytrainer train configs/digits/mlp.py --work-dir {tmp_path} --resume "
            f"{last}") in lines
    assert (f"test:   raytrainer test configs/digits/mlp.py --work-dir {tmp_path} "
            f"--checkpoint {last}") in lines
    assert [line for line in lines if line.startswith("final val accuracy/top1: ")]
    log_files = glob.glob(str(tmp_path / "*" / "*.log"))
    assert any("Hooks will run in this order" in open(f).read() for f in log_files)


def _run_in_pty(command):
    master, slave = pty.openpty()
    process = subprocess.Popen(command, cwd=ROOT, env=_env(), stdout=slave,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                data = b""
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    os.close(master)
    return process.wait(timeout=60), b"".join(chunks).decode(errors="replace")


@pytest.mark.ray
def test_progress_bar_in_a_terminal_shows_epoch_rate_eta_loss_lr_and_metric(tmp_path):
    code, output = _run_in_pty(_command(tmp_path, "--num-workers", "1", "--cfg-options",
                                        "train_cfg.max_epochs=3", "train_cfg.val_interval=1"))
    assert code == 0, output[-3000:]
    assert "\x1b[?25l" in output  # rich hides the cursor while the bar is live
    assert "epoch 3/3" in output and "135/135" in output  # 3 epochs of 45 iterations (1 rank)
    assert "it/s" in output and "eta" in output
    assert "loss: " in output and "lr: " in output and "accuracy/top1: " in output
    assert "Epoch(val) [3][6/6]" in output  # rank 0's lines print above the bar
    for marker in RAY_INTERNALS:
        assert marker not in output


def test_console_without_a_terminal_prints_only_log_lines():
    stream = io.StringIO()
    console = RunConsole(stream=stream)
    assert not console.interactive
    for event in ({"kind": "start", "iter": 0, "max_iters": 10, "epoch": 0, "max_epochs": 2},
                  {"kind": "log", "text": "Epoch(train) [1][5/5]  loss: 0.5"},
                  {"kind": "iter", "iter": 5, "epoch": 0, "loss": 0.5, "lr": 0.1},
                  {"kind": "val", "metrics": {"accuracy/top1": 90.0}},
                  {"kind": "end", "iter": 10}):
        console.handle(event)
    assert stream.getvalue() == "Epoch(train) [1][5/5]  loss: 0.5\n"


def test_format_stats_shows_what_is_known():
    assert format_stats(0.12345, 0.01, ("accuracy/top1", 96.6574)) == \
        "loss: 0.1235  lr: 1.00e-02  accuracy/top1: 96.66"
    assert format_stats(None, 0.5, None) == "lr: 5.00e-01"


def test_summary_names_checkpoints_and_commands_that_reproduce_the_options():
    lines = run_summary("train", {"accuracy/top1": 97.0}, "s3://bucket/run", 3725.0,
                        "cfg.py", ["train_cfg.max_epochs=5", "model.hidden_dims=[64, 64]"],
                        last_checkpoint="s3://bucket/run/checkpoints/epoch_5",
                        best_checkpoint="s3://bucket/run/checkpoints/best_acc_epoch_4")
    assert lines == [
        "final val accuracy/top1: 97.0000",
        "best checkpoint: s3://bucket/run/checkpoints/best_acc_epoch_4",
        "last checkpoint: s3://bucket/run/checkpoints/epoch_5",
        "work_dir: s3://bucket/run",
        "wall time: 1h02m05s",
        "resume: raytrainer train cfg.py --work-dir s3://bucket/run --cfg-options "
        "train_cfg.max_epochs=5 'model.hidden_dims=[64, 64]' --resume "
        "s3://bucket/run/checkpoints/epoch_5",
        "test:   raytrainer test cfg.py --work-dir s3://bucket/run --cfg-options "
        "train_cfg.max_epochs=5 'model.hidden_dims=[64, 64]' --checkpoint "
        "s3://bucket/run/checkpoints/best_acc_epoch_4",
    ]
    assert run_summary("test", None, "/w", 4.21, "cfg.py") == \
        ["test: no metrics", "work_dir: /w", "wall time: 4.2s"]
    assert format_duration(125) == "2m05s"


@pytest.mark.ray
def test_ray_train_info_lines_are_kept_only_with_verbose(tmp_path):
    from raytrainer.config import Config
    from raytrainer.config.ray_settings import RaySettings
    from raytrainer.launch.driver.run import _run_config
    from raytrainer.launch.run_spec import RunSpec

    spec = RunSpec(work_dir=str(tmp_path / "run"), timestamp="t", seed=0, experiment_name="e",
                   checkpoint_dir=str(tmp_path / "run" / "checkpoints"), resume=False)
    levels = [_run_config(Config({}), spec, RaySettings(), verbose).logging_config.log_level
              for verbose in (False, True)]
    assert levels == ["WARNING", "INFO"]


@pytest.mark.slow
def test_in_process_run_ends_with_the_summary_naming_the_best_checkpoint(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "raytrainer.cli", "train", "configs/digits/mlp.py", "--launcher",
         "none", "--work-dir", str(tmp_path), "--cfg-options", "train_cfg.max_epochs=2",
         "train_cfg.val_interval=1", "default_hooks.checkpoint.save_best=auto"],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    best = [line for line in lines if line.startswith("best checkpoint: ")]
    assert best and best[0].startswith(f"best checkpoint: {tmp_path}/checkpoints/best_accuracy")
    best_path = best[0].split(": ", 1)[1]
    assert os.path.isdir(best_path)
    assert f"last checkpoint: {tmp_path}/checkpoints/epoch_2" in lines
    assert [line for line in lines if line.startswith("test:   raytrainer test ") and
            line.endswith(f"--checkpoint {best_path}")]
    assert not [line for line in lines if "Hooks will run" in line]
    # one line per epoch on the console: the checkpoint; "Exp name" goes to the log file only
    console = lines + result.stderr.splitlines()
    assert not [line for line in console if "Exp name" in line]
    assert len([line for line in console if "saved checkpoint" in line]) == 2
    log = glob.glob(os.path.join(str(tmp_path), "*", "*.log"))
    assert "Exp name: mlp_" in open(log[0]).read()


class Terminal(io.StringIO):
    """A stream that says it is a terminal, so the console draws its progress bar."""

    def isatty(self) -> bool:
        return True


def test_a_restarted_worker_group_continues_the_same_progress_bar():
    console = RunConsole(stream=Terminal())
    console.handle({"kind": "start", "iter": 0, "max_iters": 10, "epoch": 0, "max_epochs": 2})
    first = console._progress
    console.handle({"kind": "iter", "iter": 4, "epoch": 0, "loss": 0.5, "lr": 0.1})
    console.handle({"kind": "start", "iter": 3, "max_iters": 10, "epoch": 0, "max_epochs": 2})
    assert console._progress is first  # one live display, not a second one beside it
    assert first.tasks[0].completed == 3
    console.handle({"kind": "end", "iter": 10})
    assert console._progress is None and not first.live.is_started


def test_the_bar_shows_the_epochs_own_progress_with_the_runs_beside_it():
    console = RunConsole(stream=Terminal())
    console.handle({"kind": "start", "iter": 0, "max_iters": 135, "epoch": 0, "max_epochs": 3})
    task = console._progress.tasks[0]

    def shown():
        return (task.description, task.completed, task.total, task.fields["run"])

    assert shown() == ("epoch 1/3", 0, 45, "run 0/135")
    console.handle({"kind": "iter", "iter": 45, "epoch": 0, "loss": 0.5, "lr": 0.1})
    assert shown() == ("epoch 1/3", 45, 45, "run 45/135")  # the epoch's last iteration
    console.handle({"kind": "iter", "iter": 60, "epoch": 1, "loss": 0.4, "lr": 0.1})
    assert shown() == ("epoch 2/3", 15, 45, "run 60/135")  # a new epoch starts the bar
    console.handle({"kind": "end", "iter": 135})
    assert shown() == ("epoch 3/3", 45, 45, "run 135/135")
    console = RunConsole(stream=Terminal())  # iteration-based: the bar is the run's
    console.handle({"kind": "start", "iter": 0, "max_iters": 100, "epoch": 0,
                    "max_epochs": None})
    console.handle({"kind": "iter", "iter": 30, "epoch": 0, "loss": 0.5, "lr": 0.1})
    task = console._progress.tasks[0]
    assert shown() == ("train", 30, 100, "")
    console.handle({"kind": "end", "iter": 100})


def test_summary_commands_are_quoted_minimally_and_test_only_a_testable_config():
    lines = run_summary("train", None, "/w", 1.0, "cfg.py", ["strategy.shard_modules=['Block']",
                                                           "work_dir=my runs", "x=$HOME"],
                        last_checkpoint="/w/c/epoch_1", can_test=False)
    assert lines[-1] == ("resume: raytrainer train cfg.py --work-dir /w --cfg-options "
                         "\"strategy.shard_modules=['Block']\" 'work_dir=my runs' 'x=$HOME' "
                         "--resume /w/c/epoch_1")
    assert not [line for line in lines if line.startswith("test:")]
    for word in ("a=['b', 'c']", "it's $HOME", 'say "hi"', "plain", "x y"):
        assert shlex.split(quote(word)) == [word]


def test_summary_commands_keep_where_the_run_ran():
    lines = run_summary("train", None, "/w", 1.0, "cfg.py", last_checkpoint="/w/c/epoch_1",
                        launch_args=["--launcher", "none"])
    assert lines[-2] == "resume: raytrainer train cfg.py --work-dir /w --launcher none " \
        "--resume /w/c/epoch_1"
    assert lines[-1] == "test:   raytrainer test cfg.py --work-dir /w --launcher none " \
        "--checkpoint /w/c/epoch_1"
