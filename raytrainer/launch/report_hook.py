"""Publishes metrics and committed checkpoints to Ray Train from inside the training loop.

``ray.train.report`` is a barrier: every rank must call it the same number of times. This hook
reports only at points every rank agrees on: after validation, at the end of training, at the
first iteration after a checkpoint save (so a validation right after the save is part of the
checkpoint's metrics), and at logging intervals once ``interval_s`` seconds have passed (rank 0
decides and broadcasts the decision at checks it plans ahead, so ranks rarely communicate).
Reports use Ray's asynchronous mode with an upload function
that returns the checkpoint unchanged, since the runner has already written and committed it in
the run directory: training never waits for Ray's controller.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from .. import dist, storage
from ..hooks.hook import Hook
from ..registry import HOOKS


def _metrics(runner) -> dict[str, Any]:
    metrics: dict[str, Any] = {"epoch": runner.epoch, "iter": runner.iter}
    for key, buffer in runner.message_hub.log_scalars.items():
        if key.startswith(("train/", "val/", "test/")) and len(buffer):
            value = buffer.current()
            if isinstance(value, (int, float)):
                metrics[key] = value
    return metrics


def _keep(checkpoint, _name):
    return checkpoint  # already written and committed by the runner


@HOOKS.register_module()
class RayReportHook(Hook):
    """Reports to Ray Train (added automatically to runs launched on Ray).

    Args:
        interval_s: Minimum seconds between periodic reports at logging intervals.
        log_interval: Iterations between checks for a periodic report.
    """

    priority = "LOWEST"
    _clock = staticmethod(time.monotonic)

    def __init__(self, interval_s: float = 10.0, log_interval: int = 10):
        self.interval_s = interval_s
        self.log_interval = max(int(log_interval), 1)
        self._last_report = self._clock()
        self._next_check = 0
        self._checked_iter, self._checked_at = 0, self._last_report
        self._saves_reported = 0
        self._saves_seen = 0
        self._warned_outside = False

    def before_run(self, runner) -> None:
        import ray.train

        self._context = ray.train.get_context()
        self._saves_reported = self._saves_seen = runner.checkpoint_saves

    def before_train(self, runner) -> None:
        # The rate that plans the checks is measured from here (after a resume, too).
        self._last_report = self._checked_at = self._clock()
        self._checked_iter, self._next_check = runner.iter, 0

    def _ray_checkpoint(self, runner, location: str):
        from ray.train import Checkpoint

        work_dir = str(runner.work_dir).rstrip("/")
        if not location.startswith(work_dir + "/"):
            if not self._warned_outside:
                runner.logger.log(logging.WARNING, f"checkpoints in {storage.describe(location)} "
                                  "are outside the run directory; Ray Train will not track "
                                  "them (resuming still finds them)")
                self._warned_outside = True
            return None
        run_storage = self._context.get_storage()
        path = run_storage.experiment_fs_path.rstrip("/") + location[len(work_dir):]
        return Checkpoint(path=path, filesystem=run_storage.storage_filesystem)

    def _send(self, runner) -> None:
        import ray.train
        from ray.train import CheckpointUploadMode

        checkpoint, name = None, None
        pending = runner.committed_checkpoints
        if runner.rank == 0 and pending:
            location = pending[-1]
            pending.clear()
            checkpoint = self._ray_checkpoint(runner, location)
            name = location.rstrip("/").rsplit("/", 1)[-1] if checkpoint else None
        ray.train.report(_metrics(runner), checkpoint=checkpoint, checkpoint_dir_name=name,
                         checkpoint_upload_mode=CheckpointUploadMode.ASYNC,
                         delete_local_checkpoint_after_upload=False,
                         checkpoint_upload_fn=_keep)
        self._last_report = self._clock()

    def _saved(self, runner) -> bool:
        """Whether a checkpoint was saved since the last report (the same on every rank)."""
        return runner.checkpoint_saves != self._saves_reported

    def _report(self, runner) -> None:
        self._saves_reported = runner.checkpoint_saves
        self._send(runner)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        # A checkpoint is reported at the first iteration after the one that saved it, so a
        # validation that followed the save is part of the checkpoint's metrics.
        saved_here = runner.checkpoint_saves != self._saves_seen
        self._saves_seen = runner.checkpoint_saves
        if self._saved(runner) and not saved_here:
            self._report(runner)
        elif self._periodic_report_due(runner.iter + 1, runner.rank):
            self._report(runner)

    def _periodic_report_due(self, done: int, rank: int) -> bool:
        """Whether a periodic report is due after ``done`` iterations (the same on every rank).

        Rank 0 decides at logging intervals and broadcasts the decision together with the
        iteration of the next check, planned from its measured rate to fall just before the
        next report is due and at most ``interval_s / 4`` ahead. Between checks no rank
        communicates, so a report every ``interval_s`` costs about five broadcasts instead of
        one every ``log_interval`` iterations. A sudden k-fold slowdown can delay a periodic
        report by up to ``k * interval_s / 4``.
        """
        if done % self.log_interval or done < self._next_check:
            return False
        now = self._clock()
        decision = [False, done + self.log_interval]
        if rank == 0:
            since_report = now - self._last_report
            due = since_report >= self.interval_s
            left = self.interval_s if due else self.interval_s - since_report
            rate = (done - self._checked_iter) / max(now - self._checked_at, 1e-9)
            # Plan at most a quarter of the interval ahead: a slowdown then delays a report
            # by at most that stretch (times the slowdown).
            stretch = min(0.9 * left, 0.25 * self.interval_s)
            ahead = int(stretch * rate / self.log_interval) * self.log_interval
            decision = [due, done + max(self.log_interval, ahead)]
        dist.broadcast_object_list(decision)  # every rank must make the same choice
        self._checked_iter, self._checked_at = done, now
        self._next_check = decision[1]
        return bool(decision[0])

    def after_train_epoch(self, runner) -> None:
        self._saves_seen = runner.checkpoint_saves  # an epoch checkpoint: report next iteration

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._report(runner)

    def after_train(self, runner) -> None:
        runner.wait_for_checkpoint()  # the last background save is committed before reporting
        self._report(runner)
