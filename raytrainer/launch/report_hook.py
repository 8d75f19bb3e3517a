"""Publishes metrics and committed checkpoints to Ray Train from inside the training loop.

``ray.train.report`` is a barrier: every rank must call it the same number of times. This hook
reports only at points every rank agrees on: after validation, at the end of training, at the
first iteration after a checkpoint save (so a validation right after the save is part of the
checkpoint's metrics), and at logging intervals once ``interval_s`` seconds have passed (rank 0
decides, the decision is broadcast). Reports use Ray's asynchronous mode with an upload function
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

    def __init__(self, interval_s: float = 10.0, log_interval: int = 10):
        self.interval_s = interval_s
        self.log_interval = max(int(log_interval), 1)
        self._last_report = time.monotonic()
        self._saves_reported = 0
        self._saves_seen = 0
        self._warned_outside = False

    def before_run(self, runner) -> None:
        import ray.train

        self._context = ray.train.get_context()
        self._saves_reported = self._saves_seen = runner.checkpoint_saves

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
        self._last_report = time.monotonic()

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
        elif (runner.iter + 1) % self.log_interval == 0:
            box = [time.monotonic() - self._last_report >= self.interval_s]
            dist.broadcast_object_list(box)  # every rank must make the same choice
            if box[0]:
                self._report(runner)

    def after_train_epoch(self, runner) -> None:
        self._saves_seen = runner.checkpoint_saves  # an epoch checkpoint: report next iteration

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._report(runner)

    def after_train(self, runner) -> None:
        runner.wait_for_checkpoint()  # the last background save is committed before reporting
        self._report(runner)
