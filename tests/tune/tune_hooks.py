"""Hooks the sweep tests put into trials; Ray workers import them (PYTHONPATH has the repo)."""
from __future__ import annotations

import glob
import json
import os
import time

from raytrainer.hooks import Hook


class PauseAtLastValidation(Hook):
    """Rank 0 of the first trial to reach its last validation after another trial finished
    writes that validation's metrics to ``marker`` and waits to be killed, before the run
    reports them: its final checkpoint is committed, and Tune never got that result.

    Args:
        marker: Where the metrics go (once: a run that finds it goes on).
        finished: A glob of the ``result.json`` files of finished trials' runs.
    """

    priority = "LOWEST"  # registered before RayReportHook, so it runs before it reports

    def __init__(self, marker: str, finished: str):
        self.marker, self.finished = marker, finished

    def after_val_epoch(self, runner, metrics=None) -> None:
        if runner.rank != 0 or runner.epoch < runner.max_epochs or \
                os.path.exists(self.marker) or not glob.glob(self.finished):
            return
        with open(self.marker + ".tmp", "w") as f:
            json.dump({"work_dir": runner.work_dir, "metrics": metrics}, f)
        os.replace(self.marker + ".tmp", self.marker)
        time.sleep(120)  # the sweep driver is killed well before this ends


class Lockstep(Hook):
    """Rank 0 of each trial's run waits at the start of training and of each epoch until
    ``count`` trials got that far, so concurrent trials report side by side (PBT exploits only
    when every trial has reported) even when one trial's workers run much slower than the
    other's on a loaded machine. A trial restored from another's checkpoint marks the epochs it
    starts from; a trial that has finished has marked every epoch, so nobody waits for it.

    Args:
        folder: Where the marks go (one empty file per trial and epoch).
        count: How many trials run side by side.
        timeout_s: The longest wait at one point (the test then fails on its own assertions).
    """

    priority = "VERY_HIGH"

    def __init__(self, folder: str, count: int, timeout_s: float = 120.0):
        self.folder, self.count, self.timeout_s = folder, count, timeout_s

    def before_train(self, runner) -> None:
        self._wait(runner)

    def before_train_epoch(self, runner) -> None:
        self._wait(runner)

    def _wait(self, runner) -> None:
        if runner.rank != 0:
            return
        os.makedirs(self.folder, exist_ok=True)
        name = os.path.basename(str(runner.work_dir).rstrip("/"))
        open(os.path.join(self.folder, f"{name}@{runner.epoch}"), "w").close()
        if runner.epoch >= runner.max_epochs:  # resumed at its end: nothing left to pace
            return
        deadline = time.monotonic() + self.timeout_s
        while self._there(runner.epoch) < self.count and time.monotonic() < deadline:
            time.sleep(0.1)

    def _there(self, epoch: int) -> int:
        """How many trials have started epoch ``epoch`` or a later one."""
        trials = set()
        for mark in os.listdir(self.folder):
            trial, _, reached = mark.rpartition("@")
            if int(reached) >= epoch:
                trials.add(trial)
        return len(trials)
