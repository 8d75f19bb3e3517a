"""Publishes metrics and committed checkpoints to Ray Train from inside the training loop.

``ray.train.report`` is a barrier: every rank must call it the same number of times. This hook
reports only at points every rank agrees on: after validation, at the end of training, at the
first iteration after a checkpoint save, and at logging intervals once ``interval_s`` seconds
have passed (rank 0 decides and broadcasts the decision at checks it plans ahead, so ranks
rarely communicate).

A checkpoint's metrics: the CheckpointHook saves ``epoch_N`` after the epoch's training and
before its validation, and a background save may commit after the next validation. Rank 0
therefore notes, at each save, the metrics at the checkpoint's position (its epoch/iter as its
meta records them), replaces them by those of a validation at that same position, and
registers the checkpoint with exactly these, whenever it commits: ``epoch_N`` carries epoch
N's validation, never epoch N+1's; a checkpoint saved between validations carries the latest
validation before it. When these are older than the current metrics, the report point reports
the current ones right after, so the run's last report is always its newest. A checkpoint an
earlier attempt committed carries only its epoch/iter.

A run resumed from the checkpoint at the end of training (a restarted worker group, a resumed
sweep trial) trains nothing; the checkpoint's message hub holds the validation before its own.
Such a run validates the checkpoint again before reporting (every rank; the loop would have
validated there), so it reports, and writes to ``result.json``, the metrics the finished run
had.
Reports use Ray's asynchronous mode with an upload function
that returns the checkpoint unchanged, since the runner has already written and committed it in
the run directory: training never waits for Ray's controller.

Checkpoints and retention: Ray's controller takes one report from the workers per poll
(``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``, 2 s by default), so one report per checkpoint left
Ray ever further behind the commits when checkpoints come faster than that: the unregistered
ones outlived ``max_keep_ckpts``, a failed run lost them to nobody, and a finished run waited
for the backlog. Rank 0 therefore registers a regular checkpoint (``epoch_N``/``iter_N``)
committed in the run directory with Ray only at report points Ray can keep up with: a report
right after a save waits until Ray has had time to take the previous reports (one poll per
``report`` call); reports after validation, periodic ones and the last one always go. A report
point registers the ``max_keep_ckpts`` newest checkpoints committed since the last one, oldest
first, one ``report`` call each (rank 0 broadcasts how many, since every rank must call
``report`` equally often); ``CheckpointConfig(num_to_keep=max_keep_ckpts)`` then deletes the
oldest registered ones, after writing its run snapshot, so ``Result.checkpoint`` and
``Result.best_checkpoints`` always name existing committed directories.

Each checkpoint has exactly one owner that deletes it, decided once under a lock: Ray owns
what it was told; nothing else may delete those, because Ray's checkpoint manager fails the
run when a directory it deletes is already gone (``delete_fs_path`` raises
``FileNotFoundError``), and a new controller (a resubmitted run) refuses a run snapshot that
lists a missing checkpoint (:mod:`raytrainer.launch.driver.ray_record` reconciles it before a
continuing run starts). A regular checkpoint Ray was not told about belongs to the
CheckpointHook once it asks (``runner.checkpoints.deleted_elsewhere``): its retention counts
every checkpoint of the lineage and deletes the untold ones beyond ``max_keep_ckpts``, so at
any moment at most about three times ``max_keep_ckpts`` regular checkpoints exist (those Ray
keeps, those on their way to Ray, those waiting for a report), and when a run ends exactly
the ``max_keep_ckpts`` newest. The CheckpointHook also deletes ``best_*`` checkpoints (never
registered, so they do not count toward Ray's limit) and checkpoints under an ``out_dir``
outside the run directory (Ray cannot track them).

Retention across restarts: a worker group killed between a commit and the report that would
register it leaves committed checkpoints Ray never got. When a worker group starts (after a
restart, or in a resubmitted run), rank 0 asks Ray which checkpoints it tracks
(``get_all_reported_checkpoints``) and treats this lineage's untracked ones in the run
directory as waiting for a report: the newest are registered at its next report, before its
own new ones, and the older ones beyond ``max_keep_ckpts`` are deleted.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from ... import checkpoint as ckpt
from ... import dist, storage
from ...hooks.checkpoint_hook import CheckpointHook
from ...hooks.hook import Hook
from ...registry import HOOKS
from ...runner.loops import IterBasedTrainLoop


def _metrics(runner) -> dict[str, Any]:
    metrics: dict[str, Any] = {"epoch": runner.epoch, "iter": runner.iter}
    for key, buffer in runner.message_hub.log_scalars.items():
        if key.startswith(("train/", "val/", "test/")) and len(buffer):
            value = buffer.current()
            if isinstance(value, (int, float)):
                metrics[key] = value
    return metrics


def _position(runner) -> dict[str, int]:
    """The epoch and iteration a checkpoint saved now records in its meta (completed epochs
    and iterations; a step finished inside ``after_train_iter`` counts)."""
    loop = runner.train_loop_or_none
    if loop is None:
        return {"epoch": runner.epoch, "iter": runner.iter}
    progress = loop.state_dict()
    ended = progress["inner_iter"] >= progress["epoch_length"]
    return {"epoch": progress["epoch"] + int(ended), "iter": progress["iter"]}


def _keep(checkpoint, _name):
    return checkpoint  # already written and committed by the runner


def _ray_poll_s() -> float:
    """Seconds between two polls of Ray Train's controller (it takes one report per poll)."""
    from ray.train.v2._internal.constants import (
        DEFAULT_HEALTH_CHECK_INTERVAL_S,
        HEALTH_CHECK_INTERVAL_S_ENV_VAR,
    )

    return float(os.environ.get(HEALTH_CHECK_INTERVAL_S_ENV_VAR, DEFAULT_HEALTH_CHECK_INTERVAL_S))


def _max_keep(runner) -> int | None:
    """The run's ``max_keep_ckpts`` (None: every checkpoint is kept)."""
    keeps = [hook.max_keep_ckpts for hook in runner.hooks if isinstance(hook, CheckpointHook)]
    return keeps[0] if keeps and keeps[0] > 0 else None


def _resumed_at_end(runner) -> bool:
    """Whether the run resumed from a checkpoint at the end of training and the training loop
    validates there (the same on every rank): it will train nothing."""
    if not runner.resumed_from:
        return False
    loop = runner.train_loop_or_none
    if loop is None or runner.val_loop is None:
        return False
    progress, end = (loop.iter, loop.max_iters) if isinstance(loop, IterBasedTrainLoop) \
        else (loop.epoch, loop.max_epochs)
    return progress >= end and progress >= loop.val_begin


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
        # Rank 0: regular checkpoints in the run directory Ray was not told about, oldest
        # first; who owns each one (told: Ray; released: the CheckpointHook), under a lock
        # (the CheckpointHook asks from the background writer after an asynchronous save).
        self._untold: list[str] = []
        self._leftovers: set[str] = set()
        self._told: set[str] = set()
        self._released: set[str] = set()
        self._owners = threading.Lock()
        self._ray_free_at = 0.0
        self._max_keep: int | None = None
        self._poll_s = 0.0
        # Rank 0: the metrics of each checkpoint of this run, as they stood at its position
        # (updated by a validation at that position), and the newest checkpoint's location.
        self._own: dict[str, dict] = {}
        self._newest: str | None = None

    def before_run(self, runner) -> None:
        import ray.train

        self._context = ray.train.get_context()
        self._saves_reported = self._saves_seen = runner.checkpoints.saves
        self._run_dir = str(runner.work_dir).rstrip("/")
        self._max_keep, self._poll_s = _max_keep(runner), _ray_poll_s()
        if runner.rank == 0:
            runner.checkpoints.deleted_elsewhere = self._deleted_by_ray

    def _tracked_by_ray(self) -> set[str]:
        """The locations of the checkpoints Ray tracks (an earlier attempt or run of this
        work_dir registered them; Ray's record is kept for a continuing run)."""
        import ray.train
        from ray.train import CheckpointConsistencyMode

        experiment = self._context.get_storage().experiment_fs_path.rstrip("/")
        tracked = set()
        reported = ray.train.get_all_reported_checkpoints(
            consistency_mode=CheckpointConsistencyMode.COMMITTED, timeout_s=60)
        for item in reported:
            path = str(item.checkpoint.path).rstrip("/")
            if path.startswith(experiment + "/"):
                tracked.add(self._run_dir + path[len(experiment):])
        return tracked

    def _unregistered_checkpoints(self, runner, tracked: set[str]) -> list[str]:
        """This lineage's committed regular checkpoints in the run directory that Ray does not
        track (an earlier attempt committed them and was killed before reporting them, or they
        predate this Ray run), oldest first."""
        root = str(runner.checkpoints.directory).rstrip("/")
        if not root.startswith(self._run_dir + "/"):
            return []
        listed = ckpt.list_checkpoints(root, warn=False, lineage=runner.checkpoints.lineage)
        return [location.rstrip("/") for location in listed
                if location.rstrip("/") not in tracked]

    def _in_run_dir(self, location: str) -> bool:
        return location.startswith(self._run_dir + "/") and ckpt.is_regular(location)

    def _deleted_by_ray(self, location: str) -> bool:
        """Whether Ray, not the CheckpointHook, deletes the checkpoint at ``location``: those
        it was told about. Any other checkpoint the CheckpointHook asks about is its own from
        then on (it is never told to Ray)."""
        location = location.rstrip("/")
        with self._owners:
            if location in self._told:
                return True
            self._released.add(location)
            return False

    def before_train(self, runner) -> None:
        # The rate that plans the checks is measured from here (after a resume, too).
        self._last_report = self._checked_at = self._clock()
        self._checked_iter, self._next_check = runner.iter, 0
        if runner.rank == 0:  # the lineage is known once the runner has resumed
            tracked = self._tracked_by_ray()
            with self._owners:
                self._told |= tracked
            self._untold = self._unregistered_checkpoints(runner, tracked)
            self._leftovers = set(self._untold)
            if runner.resumed_from:  # the run stands at that checkpoint's position
                self._newest = str(runner.resumed_from).rstrip("/")
                self._own[self._newest] = _position(runner)
        if _resumed_at_end(runner):
            runner.logger.info(f"resumed at the end of training from "
                               f"{storage.describe(runner.resumed_from)}: validating it again, "
                               "so the run reports the metrics of its last checkpoint")
            runner.val_loop.run()  # every rank: the same decision, from the same checkpoint

    def _collect_commits(self, runner) -> None:
        """Rank 0: move the runner's new commits to the untold list (regular checkpoints in
        the run directory; Ray cannot track the others)."""
        pending = runner.checkpoints.committed
        while pending:  # the background writer may append meanwhile; the rest waits
            location = pending.popleft()
            if self._in_run_dir(location):
                self._untold.append(location.rstrip("/"))
                continue
            self._own.pop(location.rstrip("/"), None)  # never registered
            if ckpt.is_regular(location) and not self._warned_outside:
                runner.logger.log(logging.WARNING, f"checkpoints in {storage.describe(location)} "
                                  "are outside the run directory; Ray Train will not track "
                                  "them (resuming still finds them)")
                self._warned_outside = True

    def _to_tell(self, runner) -> list[str]:
        """Rank 0: the untold checkpoints to register now, oldest first: the ``max_keep_ckpts``
        newest that still exist (the newest one when every checkpoint is kept). The older ones
        are never told to Ray: deleted here unless the CheckpointHook already owns them (with
        every checkpoint kept, they stay)."""
        limit = self._max_keep or 1
        untold, self._untold = self._untold, []
        chosen, older = untold[-limit:], untold[:-limit]
        with self._owners:
            chosen = [location for location in chosen if location not in self._released
                      and ckpt.is_committed(location)]
            self._told.update(chosen)
            mine = [location for location in older if location not in self._released]
            self._released.update(mine)
        for location in set(untold) - set(chosen):  # never registered
            self._own.pop(location, None)
        if self._max_keep:
            for location in mine:
                runner.checkpoints.delete(location)
        return chosen

    def _ray_checkpoint(self, location: str):
        """The Ray checkpoint of a committed location in the run directory."""
        from ray.train import Checkpoint

        run_storage = self._context.get_storage()
        path = run_storage.experiment_fs_path.rstrip("/") + location[len(self._run_dir):]
        return Checkpoint(path=path, filesystem=run_storage.storage_filesystem)

    def _send(self, runner, deferrable: bool = False) -> bool:
        """Report the metrics, registering the newest checkpoints committed since the last
        report (oldest first, one ``report`` call each; at least one call). A ``deferrable``
        report is skipped (on every rank) while Ray has not had time to take the previous
        reports. Returns whether it was sent."""
        import ray.train
        from ray.train import CheckpointUploadMode

        metrics = _metrics(runner)
        checkpoints: list = []
        count = [1]
        if runner.rank == 0:
            self._collect_commits(runner)
            if deferrable and self._clock() < self._ray_free_at:
                count = [0]
            else:
                for location in self._to_tell(runner):
                    checkpoints.append((self._ray_checkpoint(location),
                                        location.rstrip("/").rsplit("/", 1)[-1],
                                        self._metrics_of(location, metrics)))
                # A checkpoint's own metrics may be older than the current ones (a background
                # save committed after the next validation): the current ones go last, so
                # the run's last report is always its newest.
                trailing = bool(checkpoints) and not deferrable and \
                    checkpoints[-1][2] != {**metrics, **_position(runner)}
                count = [max(len(checkpoints) + trailing, 1)]
        dist.broadcast_object_list(count)  # report() is a barrier: the same calls on every rank
        for index in range(count[0]):
            checkpoint, name, values = checkpoints[index] if index < len(checkpoints) else \
                (None, None, metrics)
            ray.train.report(values, checkpoint=checkpoint, checkpoint_dir_name=name,
                             checkpoint_upload_mode=CheckpointUploadMode.ASYNC,
                             delete_local_checkpoint_after_upload=False,
                             checkpoint_upload_fn=_keep)
        if count[0]:
            now = self._last_report = self._clock()
            self._ray_free_at = max(self._ray_free_at, now) + count[0] * self._poll_s
        return bool(count[0])

    def _metrics_of(self, location: str, current: dict) -> dict:
        """Rank 0: the metrics a checkpoint is registered with: those of its own position
        (after the validation at that position, if one ran there). A checkpoint an earlier
        attempt committed carries only its epoch/iter: its validation is not known here."""
        own = self._own.pop(location, None)
        if own is not None:
            return own
        if location in self._leftovers:
            meta = ckpt.read_meta(location)
            return {"epoch": meta.get("epoch", 0), "iter": meta.get("iter", 0)}
        return current  # saved without the CheckpointHook (no position was noted)

    def _note_save(self, runner) -> None:
        """Rank 0, right after the CheckpointHook saved a regular checkpoint: note the
        metrics at its position (a validation at the same position replaces them)."""
        location = runner.message_hub.get_info("last_ckpt")
        if runner.rank != 0 or not isinstance(location, str) or \
                location.rstrip("/") == self._newest:
            return
        self._newest = location.rstrip("/")
        self._own[self._newest] = {**_metrics(runner), **_position(runner)}

    def _saved(self, runner) -> bool:
        """Whether a checkpoint was saved since the last report (the same on every rank)."""
        return runner.checkpoints.saves != self._saves_reported

    def _report(self, runner, deferrable: bool = False) -> None:
        self._saves_reported = runner.checkpoints.saves
        self._send(runner, deferrable)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        # A checkpoint is reported at the first iteration after the one that saved it, so a
        # validation that followed the save is part of the checkpoint's metrics.
        saved_here = runner.checkpoints.saves != self._saves_seen
        if saved_here:
            self._note_save(runner)
        self._saves_seen = runner.checkpoints.saves
        if self._saved(runner) and not saved_here:
            self._report(runner, deferrable=True)  # else registered at a later report
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
        if runner.checkpoints.saves != self._saves_seen:
            self._note_save(runner)
        self._saves_seen = runner.checkpoints.saves  # an epoch checkpoint: report next iteration

    def after_val_epoch(self, runner, metrics=None) -> None:
        if runner.rank == 0 and self._newest in self._own:
            position = _position(runner)
            if all(self._own[self._newest].get(k) == v for k, v in position.items()):
                # The validation at the newest checkpoint's position: its metrics are its own.
                self._own[self._newest] = {**_metrics(runner), **position}
        self._report(runner)

    def after_train(self, runner) -> None:
        runner.wait_for_checkpoint()  # the last background save is committed before reporting
        self._report(runner)
