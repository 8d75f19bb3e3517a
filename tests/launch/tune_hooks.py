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


class StartTogether(Hook):
    """Rank 0 of each trial's run waits at the start of training until ``count`` trials got
    there, so concurrent trials overlap (PBT compares trials that report side by side) even
    when one trial's workers start much later than the other's on a loaded machine."""

    priority = "VERY_HIGH"

    def __init__(self, folder: str, count: int, timeout_s: float = 120.0):
        self.folder, self.count, self.timeout_s = folder, count, timeout_s

    def before_train(self, runner) -> None:
        if runner.rank != 0:
            return
        os.makedirs(self.folder, exist_ok=True)
        name = os.path.basename(str(runner.work_dir).rstrip("/"))
        open(os.path.join(self.folder, name), "w").close()
        deadline = time.monotonic() + self.timeout_s
        while len(os.listdir(self.folder)) < self.count and time.monotonic() < deadline:
            time.sleep(0.1)
