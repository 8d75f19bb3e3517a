"""SIGTERM and Ctrl-C stop a run at an iteration boundary with a committed checkpoint, print the
summary with the resume command and exit with 128 + the signal number, on both launchers."""
from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time

import pytest

from raytrainer import checkpoint as ckpt
from raytrainer.launch import shutdown

from ..conftest import ROOT

CONFIG = os.path.join(ROOT, "configs/digits/mlp.py")
NATIVE_DUMP = ("Fatal Python error", "SIGTERM received at time", "Traceback", "Aborted")


class Command:
    """A ``raytrainer`` process whose output is read as it comes."""

    def __init__(self, words, cwd):
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",
                                                                 "RAY_GCS_SERVER_PORT")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
        self.process = subprocess.Popen(words, cwd=cwd, env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: list[str] = []
        self._new = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            with self._new:
                self.lines.append(line)
                self._new.notify_all()
        with self._new:
            self._new.notify_all()

    def wait_for(self, text: str, timeout: float = 240.0) -> str:
        deadline = time.monotonic() + timeout
        with self._new:
            while True:
                found = next((line for line in self.lines if text in line), None)
                if found is not None:
                    return found
                if not self._reader.is_alive() or time.monotonic() > deadline:
                    self.process.kill()
                    raise AssertionError(f"no {text!r} in the output:\n{self.output[-3000:]}")
                self._new.wait(0.5)

    def finish(self, timeout: float = 120.0) -> int:
        code = self.process.wait(timeout)
        self._reader.join(10)
        return code

    @property
    def output(self) -> str:
        return "".join(self.lines)


def _raytrainer(*args) -> list[str]:
    return [sys.executable, "-m", "raytrainer.cli", *args]


def _stopped_checkpoint(output: str, name: str, code: int) -> tuple[int, str]:
    """The iteration and checkpoint the summary names; the checkpoint is committed at it."""
    found = re.search(rf"stopped by {name} after iteration (\d+): checkpoint (\S+) "
                      rf"\(exit code {code}\)", output)
    assert found, output[-3000:]
    iteration, location = int(found.group(1)), found.group(2)
    assert os.path.basename(location) == f"iter_{iteration}"
    assert ckpt.is_committed(location)
    assert ckpt.read_meta(location)["iter"] == iteration
    assert f"last checkpoint: {location}" in output
    for dump in NATIVE_DUMP:
        assert dump not in output, output[-3000:]
    return iteration, location


def _resume_words(output: str, *extra: str) -> list[str]:
    line = next(line for line in output.splitlines() if line.startswith("resume: "))
    words = shlex.split(line[len("resume: "):])
    assert words[:2] == ["raytrainer", "train"], line
    return _raytrainer(*words[1:], *extra)


def test_the_first_signal_requests_a_stop_the_second_forces_it():
    previous = signal.getsignal(signal.SIGTERM)
    heard: list[int] = []
    with shutdown.handle_signals(), shutdown.listen(heard.append):
        signal.raise_signal(signal.SIGTERM)
        assert shutdown.requested() == signal.SIGTERM and heard == [signal.SIGTERM]
        assert not shutdown.forced()
        with pytest.raises(shutdown.ForcedStop) as stop:
            signal.raise_signal(signal.SIGTERM)
        assert stop.value.signum == signal.SIGTERM and shutdown.forced()
    assert signal.getsignal(signal.SIGTERM) is previous
    assert shutdown.exit_code(signal.SIGTERM) == 143 and shutdown.exit_code(signal.SIGINT) == 130

    aborted: list[int] = []
    with shutdown.handle_signals(graceful=False), shutdown.on_force(aborted.append):
        assert shutdown.requested() is None  # a new block starts afresh
        signal.raise_signal(signal.SIGINT)  # validation/test: the first one stops at once
        assert aborted == [signal.SIGINT] and shutdown.forced()


@pytest.mark.slow
def test_sigterm_in_process_stops_at_an_iteration_with_a_checkpoint_and_resumes(tmp_path):
    run = Command(_raytrainer("train", CONFIG, "--launcher", "none", "--work-dir", "w",
                              "--cfg-options", "train_cfg.max_epochs=200"), tmp_path)
    run.wait_for("Epoch(train)")
    run.process.send_signal(signal.SIGTERM)
    assert run.finish() == 143, run.output[-3000:]
    iteration, location = _stopped_checkpoint(run.output, "SIGTERM", 143)

    # the printed command resumes at that iteration; Ctrl-C stops it the same way
    resumed = Command(_resume_words(run.output), tmp_path)
    line = resumed.wait_for("resumed from")
    assert f"resumed from {location} at epoch" in line and line.rstrip().endswith(
        f"iter {iteration}")
    resumed.wait_for("Epoch(train)")
    resumed.process.send_signal(signal.SIGINT)
    assert resumed.finish() == 130, resumed.output[-3000:]
    later, _ = _stopped_checkpoint(resumed.output, "SIGINT", 130)
    assert later > iteration


@pytest.mark.ray
def test_sigterm_on_ray_stops_every_worker_at_one_iteration_with_a_checkpoint(tmp_path):
    run = Command(_raytrainer("train", CONFIG, "--work-dir", "w",  # 2 workers (the config)
                              "--cfg-options", "train_cfg.max_epochs=200"), tmp_path)
    run.wait_for("Epoch(train)")
    run.process.send_signal(signal.SIGTERM)
    assert run.finish() == 143, run.output[-3000:]
    assert "raytrainer: SIGTERM received: stopping at the next iteration boundary" in run.output
    iteration, location = _stopped_checkpoint(run.output, "SIGTERM", 143)
    assert ckpt.read_meta(location)["world_size"] == 2

    # the printed resume command continues at that iteration (checked in this process, which
    # resumes a 2-rank checkpoint exactly, to keep the test short)
    resumed = Command(_resume_words(run.output, "--launcher", "none"), tmp_path)
    line = resumed.wait_for("resumed from")
    assert f"resumed from {location} at epoch" in line and line.rstrip().endswith(
        f"iter {iteration}")
    resumed.process.send_signal(signal.SIGTERM)
    assert resumed.finish() == 143, resumed.output[-3000:]


@pytest.mark.slow
def test_a_second_signal_before_rays_controller_exists_exits_at_once():
    # fit() has not created Ray Train's controller yet: there is nothing to abort, and the
    # signal must not be dropped
    done = subprocess.run(
        [sys.executable, "-c",
         "import signal\n"
         "from raytrainer.launch.driver.run import StoppableTrainer\n"
         "StoppableTrainer.__new__(StoppableTrainer).abort(signal.SIGINT)\n"
         "print('the signal was dropped')\n"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 130, done.stdout + done.stderr
    assert "raytrainer: exiting at once" in done.stderr
    assert "dropped" not in done.stdout


def test_a_lost_lease_outside_fit_exits_as_a_failure_naming_it():
    # The lease heartbeat's on_lost, while the driver starts Ray or reads results (the
    # on-force action there exits at once): exit 1 with the reason, not 130 as for Ctrl-C.
    done = subprocess.run(
        [sys.executable, "-c",
         "import time\n"
         "from raytrainer.launch import shutdown\n"
         "with shutdown.handle_signals(), shutdown.on_force(shutdown.exit_at_once):\n"
         "    shutdown.interrupt_now('work_dir w: run b took this run\\'s lease over; "
         "stopping now')\n"
         "    time.sleep(30)\n"
         "print('the loss was dropped')\n"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        "raytrainer: work_dir w: run b took this run's lease over; stopping now",
        "raytrainer: exiting at once"]
    assert "dropped" not in done.stdout
