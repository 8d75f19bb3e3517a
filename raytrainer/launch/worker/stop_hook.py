"""Ends training at an iteration boundary when a stop was requested (SIGTERM, Ctrl-C ...).

Ranks check, at iteration boundaries, whether a stop was requested
(:func:`raytrainer.launch.shutdown.requested`, set in this process by the signal handlers
or, on Ray, by a thread that polls the driver's :class:`~raytrainer.launch.shutdown.StopFlag`).
One process checks after every iteration; several ranks agree with one all-reduce of two
integers (on a gloo group, so a GPU run does not synchronise its stream for it) at
iterations rank 0 plans about ``check_s`` (0.25 s) apart, so all of them stop after the same
iteration and a fast loop does not pay a collective per iteration (one costs ~0.7 ms with
gloo on a loaded 2-core machine).

The hook then saves that iteration as an ordinary regular checkpoint (``iter_N``, through the
run's CheckpointHook: its folder, its retention, its async setting) unless the CheckpointHook
just saved it, waits until it is committed, and raises :class:`RunStopped`; :func:`train` turns
that into the end of the run (the ``after_train``/``after_run`` hooks run, so Ray is told about
the checkpoint and the console and loggers close as at a normal end). A stop requested before
the first iteration stops before it, keeping the checkpoint the run resumed from.
"""
from __future__ import annotations

import threading
import time
from typing import Any

import torch

from ... import checkpoint as ckpt
from ... import dist
from ...hooks.checkpoint_hook import CheckpointHook, checkpoint_dir_for
from ...hooks.hook import Hook
from .. import shutdown


class RunStopped(Exception):
    """Training ended early at an iteration boundary because a stop was requested.

    Attributes:
        signum: The signal that requested it.
        iteration: Iterations done (the checkpoint's ``iter``).
        epoch: The epoch it stopped in.
        checkpoint: The committed checkpoint of that iteration (None if there is none).
    """

    def __init__(self, signum: int, iteration: int, epoch: int, checkpoint: str | None):
        super().__init__(f"stopped by {shutdown.signal_name(signum)} at iteration {iteration}")
        self.signum, self.iteration, self.epoch = signum, iteration, epoch
        self.checkpoint = checkpoint

    def to_dict(self) -> dict[str, Any]:
        return {"signal": shutdown.signal_name(self.signum), "signum": self.signum,
                "iter": self.iteration, "epoch": self.epoch, "checkpoint": self.checkpoint}


class _FlagPoller:
    """Rank 0 on Ray: copies the driver's stop request into this process's state."""

    def __init__(self, flag, poll_s: float):
        self.flag, self.poll_s = flag, poll_s
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="raytrainer-stop-flag",
                                       daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import ray

        while not self.done.wait(self.poll_s):
            try:
                signum = ray.get(self.flag.get.remote(), timeout=30)
            except Exception:  # the driver is gone: Ray ends this worker anyway
                return
            if signum is not None:
                shutdown.request(signum)
                return


class StopHook(Hook):
    """Stop at an iteration boundary with a committed checkpoint when a stop is requested.

    Args:
        flag: On Ray, the driver's ``StopFlag`` actor handle (rank 0 polls it).
        poll_s: Seconds between two polls of ``flag``.
        check_s: With several ranks, seconds between two checks (rank 0 plans the iteration
            of the next one from the measured rate; between checks no rank communicates).
    """

    priority = "LOWEST"  # after the CheckpointHook saved this iteration, if it does
    _clock = staticmethod(time.monotonic)

    def __init__(self, flag=None, poll_s: float = 0.5, check_s: float = 0.25):
        self.flag, self.poll_s, self.check_s = flag, poll_s, check_s
        self._group = None
        self._poller: _FlagPoller | None = None
        self._saves = 0
        self._next_check = 0
        self._checked = (0, 0.0)  # (iteration, time) of the last check

    def before_train(self, runner) -> None:
        if dist.is_distributed() and torch.distributed.get_backend() != "gloo":
            self._group = torch.distributed.new_group(backend="gloo")  # every rank calls it
        if self.flag is not None and runner.rank == 0:
            self._poller = _FlagPoller(self.flag, self.poll_s)
        self._checked = (runner.iter, self._clock())
        signum = self._agree(runner.iter, runner.rank)
        if signum:
            raise RunStopped(signum, runner.iter, runner.epoch,
                             runner.message_hub.get_info("last_ckpt") or runner.resumed_from)

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self._saves = runner.checkpoints.saves

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        done = runner.iter + 1
        if done < self._next_check:
            return
        signum = self._agree(done, runner.rank)
        if signum:
            raise RunStopped(signum, done, runner.epoch, self._checkpoint(runner, done))

    def after_train(self, runner) -> None:
        if self._poller is not None:
            self._poller.done.set()

    def _agree(self, done: int, rank: int) -> int:
        """The requested signal (0: none) and the iteration of the next check, the same on
        every rank: one all-reduce (max) of two integers, the next check planned by rank 0
        about ``check_s`` ahead at the rate since the last check."""
        local = shutdown.requested() or 0
        if not dist.is_distributed():
            return local
        now = self._clock()
        next_check = 0
        if rank == 0:
            last_iter, last_time = self._checked
            rate = (done - last_iter) / max(now - last_time, 1e-9)
            next_check = done + max(1, int(self.check_s * rate))
        values = torch.tensor([local, next_check], dtype=torch.int64)
        torch.distributed.all_reduce(values, torch.distributed.ReduceOp.MAX, group=self._group)
        self._checked = (done, now)
        self._next_check = int(values[1])
        return int(values[0])

    def _checkpoint(self, runner, done: int) -> str:
        """The committed checkpoint of iteration ``done``: the one the CheckpointHook saved in
        this iteration, else a new ``iter_<done>``."""
        hub = runner.message_hub
        if runner.checkpoints.saves != self._saves and hub.get_info("last_ckpt"):
            location = hub.get_info("last_ckpt")
        else:
            hook = next((h for h in runner.hooks if isinstance(h, CheckpointHook)), None)
            name = f"iter_{done}"
            if hook is not None:  # its folder, retention and async setting
                location = hook._save(runner, name)
            else:
                location = runner.save_checkpoint(checkpoint_dir_for(runner.work_dir), name,
                                                  by_epoch=False)
                hub.update_info("last_ckpt", location)
        runner.wait_for_checkpoint()
        return location


def newest_committed(runner) -> str | None:
    """The newest committed regular checkpoint of the runner's lineage (None if none)."""
    hook = next((h for h in runner.hooks if isinstance(h, CheckpointHook)), None)
    root = hook.checkpoint_dir(runner) if hook is not None else \
        checkpoint_dir_for(runner.work_dir)
    found = ckpt.list_checkpoints(root, warn=False, lineage=runner.checkpoints.lineage)
    return found[-1] if found else None


def train(runner) -> RunStopped | None:
    """``runner.train()`` with a :class:`StopHook` (``runner`` must have one); returns how it
    stopped early, or None when it trained to the end."""
    try:
        runner.train()
    except RunStopped as stop:
        runner.call_hook("after_train")
        runner.call_hook("after_run")
        return stop
    return None


__all__ = ["RunStopped", "StopHook", "newest_committed", "train"]
