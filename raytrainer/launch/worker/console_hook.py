"""Rank 0's side of the driver's console: sends progress and log lines to the console feed.

The driver (:mod:`raytrainer.launch.driver.console`) owns a small Ray actor, the feed; this hook, on
rank 0 only, pushes events to it without waiting (``feed.push.remote(...)``, never ``ray.get``),
so training never blocks on the driver. Events are plain dicts:

- ``{"kind": "start", "iter", "max_iters", "epoch", "max_epochs"}`` before training;
- ``{"kind": "iter", "iter", "epoch", "loss", "lr"}`` (iterations done, the 0-based epoch
  under way) at most every ``interval_s`` seconds
  and after an epoch's last iteration;
- ``{"kind": "val", "metrics"}`` after each validation;
- ``{"kind": "log", "text"}`` for every line rank 0's console would print, when
  ``forward_logs`` (the driver then prints them, since worker output is not forwarded by Ray);
- ``{"kind": "end"}`` after training;
- ``{"kind": "done"}`` after the run, waited for, so every earlier event has arrived before
  the worker returns.

This hook only sends; what the driver shows is the console's business.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from ...hooks.hook import Hook


class _FeedHandler(logging.Handler):
    """Sends each record the console shows to the feed as a ``log`` event: the message alone
    (the log file keeps time and level), prefixed by the level from WARNING up."""

    def __init__(self, send, level: int):
        super().__init__(level)
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "file_only", False):
            return
        try:
            text = record.getMessage()
            if record.levelno >= logging.WARNING:
                text = f"{record.levelname}: {text}"
            self._send({"kind": "log", "text": text})
        except Exception:  # the console is best effort; training goes on
            self.handleError(record)


def _scalar(runner, key: str) -> float | None:
    buffer = runner.message_hub.log_scalars.get(key)
    if buffer is None or not len(buffer):
        return None
    value = buffer.current()
    return float(value) if isinstance(value, (int, float)) else None


class ConsoleFeedHook(Hook):
    """Feeds the driver's console from rank 0 (added by the Ray worker entry; not for configs).

    Args:
        feed: The console feed actor's handle (its ``push`` method takes one event).
        forward_logs: Also send rank 0's console log lines.
        interval_s: Minimum seconds between iteration events.
    """

    priority = "VERY_LOW"

    def __init__(self, feed: Any, forward_logs: bool = True, interval_s: float = 0.2):
        self.feed = feed
        self.forward_logs = forward_logs
        self.interval_s = interval_s
        self._last_sent = 0.0
        self._handler: logging.Handler | None = None

    def _send(self, event: dict) -> None:
        self.feed.push.remote(event)

    def before_run(self, runner) -> None:
        if runner.rank == 0 and self.forward_logs:
            self._handler = _FeedHandler(self._send, runner.logger.level)
            runner.logger.addHandler(self._handler)

    def before_train(self, runner) -> None:
        if runner.rank != 0:
            return
        loop = runner.train_loop
        self._send({"kind": "start", "iter": runner.iter, "max_iters": loop.max_iters,
                    "epoch": runner.epoch, "max_epochs": getattr(loop, "max_epochs", None)})

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if runner.rank != 0:
            return
        now = time.monotonic()
        last_of_epoch = getattr(runner.train_loop, "max_epochs", None) is not None and \
            batch_idx + 1 == len(runner.train_dataloader)
        if now - self._last_sent < self.interval_s and not last_of_epoch:
            return
        self._last_sent = now
        self._send({"kind": "iter", "iter": runner.iter + 1, "epoch": runner.epoch,
                    "loss": _scalar(runner, "train/loss"), "lr": _scalar(runner, "train/lr")})

    def after_val_epoch(self, runner, metrics=None) -> None:
        if runner.rank == 0 and metrics:
            numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
            self._send({"kind": "val", "metrics": numbers})

    def after_train(self, runner) -> None:
        if runner.rank == 0:
            self._send({"kind": "end", "iter": runner.iter})

    def after_run(self, runner) -> None:
        import ray

        if self._handler is not None:
            runner.logger.removeHandler(self._handler)
            self._handler = None
        if runner.rank == 0:
            try:
                ray.get(self.feed.push.remote({"kind": "done"}), timeout=10)
            except Exception:  # the driver went away; the run's result does not depend on it
                pass
