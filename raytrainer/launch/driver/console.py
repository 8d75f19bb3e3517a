"""The driver's console for a Ray run: rank 0's log lines and a progress bar.

The driver starts a :class:`ConsoleFeed` actor (no CPU) and hands it to the workers; rank 0's
:class:`~raytrainer.launch.worker.console_hook.ConsoleFeedHook` pushes events to it and a thread in
the driver drains it about five times a second. When stdout is a terminal the driver shows a
``rich`` progress bar (the epoch's own iterations, it/s and ETA, with the run's iterations
beside them; loss, lr, the latest validation metric)
under rank 0's log lines; otherwise it prints only the log lines (plain periodic lines, as
``ray job logs`` and CI want them).

Without ``verbose`` the workers' own output is not forwarded by Ray (``log_to_driver=False``)
and Ray Train's internal ``ray.train`` INFO lines are not printed: the console shows what rank
0's logger prints, once. ``verbose`` restores Ray's forwarding of every worker's output.
This module does not decide what rank 0 logs (the LoggerHook does) nor what a run's summary
says (:mod:`raytrainer.launch.driver.summary`).
"""
from __future__ import annotations

import sys
import threading
from typing import IO, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

POLL_S = 0.2


class ConsoleFeed:
    """A mailbox actor: rank 0 pushes events, the driver drains them in order."""

    def __init__(self):
        self._events: list[dict] = []

    def push(self, event: dict) -> None:
        self._events.append(event)

    def drain(self) -> list[dict]:
        events, self._events = self._events, []
        return events


class _RateColumn(ProgressColumn):
    """Iterations per second, as rich measures them."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        text = "-- it/s" if speed is None else f"{speed:.1f} it/s"
        return Text(text, style="progress.data.speed")


def format_stats(loss: float | None, lr: float | None, metric: tuple[str, float] | None) -> str:
    """``loss: 0.1234  lr: 1.0e-02  accuracy/top1: 96.66`` (parts that are known)."""
    parts = []
    if loss is not None:
        parts.append(f"loss: {loss:.4f}")
    if lr is not None:
        parts.append(f"lr: {lr:.2e}")
    if metric is not None:
        parts.append(f"{metric[0]}: {metric[1]:.4g}")
    return "  ".join(parts)


class RunConsole:
    """Shows a Ray run's progress on the driver; use as a context manager around ``fit()``.

    Args:
        verbose: Show Ray's own output (every worker's, Ray Train's INFO lines) as well.
        stream: Where to print (stdout); a progress bar only when it is a terminal.
    """

    def __init__(self, verbose: bool = False, stream: IO[str] | None = None):
        self.verbose = verbose
        self.stream = stream or sys.stdout
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self._feed = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._progress: Progress | None = None
        self._task = None
        self._stats: dict[str, Any] = {"loss": None, "lr": None, "metric": None}
        self._max_epochs: int | None = None
        self._max_iters = 0
        self._epoch: int | None = None  # the epoch the bar shows (by-epoch training)

    def open(self) -> dict:
        """Start the feed actor (Ray must be connected); returns what the workers need to feed
        this console (it goes into ``train_loop_config['console']``)."""
        import ray

        self._feed = ray.remote(num_cpus=0)(ConsoleFeed).remote()
        return {"feed": self._feed, "forward_logs": not self.verbose}

    def __enter__(self) -> RunConsole:
        if self._feed is None:
            self.open()
        self._thread = threading.Thread(target=self._drain_loop, name="raytrainer-console",
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._drain()  # whatever arrived after the last poll
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def _drain_loop(self) -> None:
        while not self._stop.wait(POLL_S):
            self._drain()

    def _drain(self) -> None:
        import ray

        try:
            events = ray.get(self._feed.drain.remote(), timeout=30)
        except Exception:  # the run ended or Ray is shutting down: nothing more to show
            return
        for event in events:
            self.handle(event)

    def handle(self, event: dict) -> None:
        """Show one event from rank 0."""
        kind = event.get("kind")
        if kind == "log":
            self._print(event["text"])
        elif kind == "start" and self.interactive:
            self._start_bar(event)
        elif kind == "iter":
            self._stats.update(loss=event.get("loss"), lr=event.get("lr"))
            self._update_bar(event["iter"], event.get("epoch"))
        elif kind == "val" and event.get("metrics"):
            self._stats["metric"] = next(iter(event["metrics"].items()))
            self._update_bar(None, None)
        elif kind == "end" and self._progress is not None:
            self._update_bar(event.get("iter"), None)
            self._progress.stop()
            self._progress = None

    def _print(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            print(text, file=self.stream, flush=True)

    def _per_epoch(self) -> int | None:
        """Iterations of one epoch (by-epoch training), else None: the bar is the run's."""
        if not self._max_epochs:
            return None
        return max(1, self._max_iters // self._max_epochs)

    def _bar_position(self, done: int, epoch: int | None) -> dict[str, Any]:
        """The bar's fields after ``done`` iterations in (0-based) ``epoch``: that epoch's own
        progress, with the run's beside it; the whole run for iteration-based training."""
        per_epoch = self._per_epoch()
        run = f"run {done}/{self._max_iters}"
        if per_epoch is None or epoch is None:
            return {"completed": done, "total": self._max_iters, "run": "", "epoch": None}
        epoch = min(epoch, self._max_epochs - 1)
        return {"completed": min(max(done - epoch * per_epoch, 0), per_epoch),
                "total": per_epoch, "run": run, "epoch": epoch}

    def _start_bar(self, event: dict) -> None:
        self._max_epochs = event.get("max_epochs")
        self._max_iters = event["max_iters"]
        position = self._bar_position(event.get("iter", 0), event.get("epoch"))
        if self._progress is not None:  # a restarted worker group: continue the same bar
            self._move_bar(position)
            return
        console = Console(file=self.stream, force_terminal=True)
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            _RateColumn(), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            TextColumn("{task.fields[run]}"), TextColumn("{task.fields[stats]}"),
            console=console, transient=False)
        self._epoch = position.pop("epoch")
        self._task = self._progress.add_task(self._description(self._epoch), stats="",
                                             **position)
        self._progress.start()

    def _description(self, epoch: int | None) -> str:
        if self._max_epochs and epoch is not None:
            return f"epoch {min(epoch + 1, self._max_epochs)}/{self._max_epochs}"
        return "train"

    def _move_bar(self, position: dict[str, Any]) -> None:
        """Show ``position``; a new epoch starts the bar (and its rate and ETA) afresh."""
        epoch = position.pop("epoch")
        if epoch != self._epoch:
            self._epoch = epoch
            self._progress.reset(self._task, total=position["total"],
                                 completed=position["completed"],
                                 description=self._description(epoch))
        self._progress.update(self._task, **position)

    def _update_bar(self, done: int | None, epoch: int | None) -> None:
        if self._progress is None:
            return
        self._progress.update(self._task, stats=format_stats(**self._stats))
        if done is not None:
            per_epoch = self._per_epoch()
            if epoch is None and per_epoch and done:  # the end: the epoch of the last iteration
                epoch = (done - 1) // per_epoch
            self._move_bar(self._bar_position(done, self._epoch if epoch is None else epoch))
