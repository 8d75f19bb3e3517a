"""Publishes metrics and committed checkpoints to Ray Train from inside the training loop.

``ray.train.report`` is a barrier: every rank must call it the same number of times. This hook
reports only at points every rank agrees on: after validation, at the end of training, at the
first iteration after a checkpoint save (so a validation right after the save is part of the
checkpoint's metrics), and at logging intervals once ``interval_s`` seconds have passed (rank 0
decides and broadcasts the decision at checks it plans ahead, so ranks rarely communicate).
Reports use Ray's asynchronous mode with an upload function
that returns the checkpoint unchanged, since the runner has already written and committed it in
the run directory: training never waits for Ray's controller.

Checkpoints and retention: every regular checkpoint (``epoch_N``/``iter_N``) committed in the
run directory is registered with Ray exactly once, in commit order, however many commits
arrived since the last report (a ``report`` call carries one checkpoint, so a report point
makes one call per pending checkpoint; rank 0 broadcasts how many, since every rank must call
``report`` equally often). Ray's ``CheckpointConfig(num_to_keep=max_keep_ckpts)`` then deletes
the oldest registered ones, after writing its run snapshot, so ``Result.checkpoint`` and
``Result.best_checkpoints`` always name existing committed directories.

Each checkpoint has exactly one owner that deletes it. Ray owns what it registered: nothing
else may delete those, because Ray's checkpoint manager fails the run when a directory it
deletes is already gone (``delete_fs_path`` raises ``FileNotFoundError``), and a new controller
(a resubmitted run) refuses a run snapshot that lists a missing checkpoint. The CheckpointHook
skips them (``runner.checkpoints.deleted_elsewhere``) and deletes the rest by its own rules:
``best_*`` checkpoints (never registered, so they do not count toward Ray's limit) and
checkpoints under an ``out_dir`` outside the run directory (Ray cannot track them).

Retention across restarts: a worker group killed between a commit and the report that would
register it leaves a committed checkpoint Ray never got. When a worker group starts (after a
restart, or in a resubmitted run), rank 0 asks Ray which checkpoints it tracks
(``get_all_reported_checkpoints``) and registers this lineage's untracked ones in the run
directory, oldest first, at its next report, before its own new ones. Ray then counts every
checkpoint of the lineage and keeps ``num_to_keep`` of them. (Leaving those leftovers to the
CheckpointHook made two owners count different sets, and the leftovers outlived retention.)
"""
from __future__ import annotations

import logging
import time
from typing import Any

from .. import checkpoint as ckpt
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
        self._leftovers: list[str] = []

    def before_run(self, runner) -> None:
        import ray.train

        self._context = ray.train.get_context()
        self._saves_reported = self._saves_seen = runner.checkpoints.saves
        self._run_dir = str(runner.work_dir).rstrip("/")
        if runner.rank == 0:
            runner.checkpoints.deleted_elsewhere = self._deleted_by_ray

    def _unregistered_checkpoints(self, runner) -> list[str]:
        """This lineage's committed regular checkpoints in the run directory that Ray does not
        track (an earlier attempt committed them and was killed before reporting them, or they
        predate this Ray run), oldest first."""
        import ray.train
        from ray.train import CheckpointConsistencyMode

        root = str(runner.checkpoints.directory).rstrip("/")
        if not root.startswith(self._run_dir + "/"):
            return []
        experiment = self._context.get_storage().experiment_fs_path.rstrip("/")
        tracked = set()
        reported = ray.train.get_all_reported_checkpoints(
            consistency_mode=CheckpointConsistencyMode.COMMITTED, timeout_s=60)
        for item in reported:
            path = str(item.checkpoint.path).rstrip("/")
            if path.startswith(experiment + "/"):
                tracked.add(self._run_dir + path[len(experiment):])
        return [location for location in ckpt.list_checkpoints(root, warn=False,
                                                               lineage=runner.checkpoints.lineage)
                if location.rstrip("/") not in tracked]

    def _deleted_by_ray(self, location: str) -> bool:
        """Whether Ray, not the CheckpointHook, deletes the checkpoint at ``location``: every
        regular checkpoint of this lineage in the run directory (those Ray does not track yet
        are registered at the next report)."""
        return location.startswith(self._run_dir + "/") and ckpt.is_regular(location)

    def before_train(self, runner) -> None:
        # The rate that plans the checks is measured from here (after a resume, too).
        self._last_report = self._checked_at = self._clock()
        self._checked_iter, self._next_check = runner.iter, 0
        if runner.rank == 0:  # the lineage is known once the runner has resumed
            self._leftovers = self._unregistered_checkpoints(runner)

    def _ray_checkpoint(self, runner, location: str):
        """The Ray checkpoint to register for a committed location, or None (``best_*``
        checkpoints and checkpoints outside the run directory are not registered)."""
        from ray.train import Checkpoint

        if not ckpt.is_regular(location):
            return None
        if not location.startswith(self._run_dir + "/"):
            if not self._warned_outside:
                runner.logger.log(logging.WARNING, f"checkpoints in {storage.describe(location)} "
                                  "are outside the run directory; Ray Train will not track "
                                  "them (resuming still finds them)")
                self._warned_outside = True
            return None
        run_storage = self._context.get_storage()
        path = run_storage.experiment_fs_path.rstrip("/") + location[len(self._run_dir):]
        return Checkpoint(path=path, filesystem=run_storage.storage_filesystem)

    def _send(self, runner) -> None:
        """Report the metrics, registering every checkpoint committed since the last report
        (oldest first, one ``report`` call each; at least one call)."""
        import ray.train
        from ray.train import CheckpointUploadMode

        metrics = _metrics(runner)
        checkpoints: list = []
        if runner.rank == 0:
            # Leftovers of an earlier attempt first (older), with their own epoch/iter.
            for location in self._leftovers:
                checkpoint = self._ray_checkpoint(runner, location)
                if checkpoint is not None and ckpt.is_committed(location):
                    meta = ckpt.read_meta(location)
                    checkpoints.append((checkpoint, location.rstrip("/").rsplit("/", 1)[-1],
                                        {**metrics, "epoch": meta.get("epoch", 0),
                                         "iter": meta.get("iter", 0)}))
            self._leftovers = []
            pending = runner.checkpoints.committed
            while pending:  # the background writer may append meanwhile; the rest waits
                location = pending.popleft()
                checkpoint = self._ray_checkpoint(runner, location)
                if checkpoint is not None:
                    name = location.rstrip("/").rsplit("/", 1)[-1]
                    checkpoints.append((checkpoint, name, metrics))
        count = [len(checkpoints)]
        dist.broadcast_object_list(count)  # report() is a barrier: the same calls on every rank
        for index in range(max(count[0], 1)):
            checkpoint, name, values = checkpoints[index] if index < len(checkpoints) else \
                (None, None, metrics)
            ray.train.report(values, checkpoint=checkpoint, checkpoint_dir_name=name,
                             checkpoint_upload_mode=CheckpointUploadMode.ASYNC,
                             delete_local_checkpoint_after_upload=False,
                             checkpoint_upload_fn=_keep)
        self._last_report = self._clock()

    def _saved(self, runner) -> bool:
        """Whether a checkpoint was saved since the last report (the same on every rank)."""
        return runner.checkpoints.saves != self._saves_reported

    def _report(self, runner) -> None:
        self._saves_reported = runner.checkpoints.saves
        self._send(runner)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        # A checkpoint is reported at the first iteration after the one that saved it, so a
        # validation that followed the save is part of the checkpoint's metrics.
        saved_here = runner.checkpoints.saves != self._saves_seen
        self._saves_seen = runner.checkpoints.saves
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
        self._saves_seen = runner.checkpoints.saves  # an epoch checkpoint: report next iteration

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._report(runner)

    def after_train(self, runner) -> None:
        runner.wait_for_checkpoint()  # the last background save is committed before reporting
        self._report(runner)
