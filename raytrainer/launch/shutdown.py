"""One way to stop a run early, for SIGTERM, SIGINT (Ctrl-C) and whatever else asks for a stop.

The first SIGTERM or SIGINT to the process that runs the command (the driver) *requests* a
stop: training ends at the next iteration boundary, after a checkpoint of that iteration is
committed (unless the newest one already is), on every rank at the same iteration
(:mod:`raytrainer.launch.worker.stop_hook`). The command then prints its summary with the resume
command and exits with ``128 + the signal number``: 143 for SIGTERM, 130 for SIGINT
(:func:`exit_code`). A second signal stops at once: on Ray the controller aborts the workers
(as Ray Train's own Ctrl-C does; outside ``fit`` the driver exits at once), in one process
the training is interrupted; the newest committed checkpoint is what the summary names. A
third exits the process immediately (``os._exit``); a private Ray instance is then stopped by
its reaper (:mod:`raytrainer.launch.driver.reaper`).

The request is process-wide state (:func:`request`, :func:`requested`): the signal handlers
set it, and so may anything else that wants the run to stop at an iteration boundary (a
preemption notice). Listeners registered with :func:`listen` carry it on, e.g. to the Ray
workers through a :class:`StopFlag` actor that their StopHook polls.
"""
from __future__ import annotations

import _thread
import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator

SIGNALS = (signal.SIGTERM, signal.SIGINT)
EXIT_FAILED = 1  # the exit code of a run that failed (the CLI's too)


class ForcedStop(BaseException):
    """A second signal during a requested stop: the run was ended at once, without a new
    checkpoint (a ``BaseException``, so that no ``except Exception`` in between swallows it)."""

    def __init__(self, signum: int):
        super().__init__(f"stopped at once by a second {signal_name(signum)}")
        self.signum = signum


def signal_name(signum: int) -> str:
    with contextlib.suppress(ValueError):
        return signal.Signals(signum).name
    return f"signal {signum}"


def exit_code(signum: int) -> int:
    """The exit code of a command stopped by ``signum``: 128 + ``signum``, as a shell
    reports a process killed by it (143 for SIGTERM, 130 for SIGINT)."""
    return 128 + int(signum)


class _State:
    def __init__(self):
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        self.signum: int | None = None
        self.forced = False
        self.received = 0
        self.reason: str | None = None
        self.listeners: list[Callable[[int], None]] = []
        self.on_force: list[Callable[[int], None]] = []


_STATE = _State()
_depth = 0
_graceful = True
_previous: dict[int, object] = {}


def requested() -> int | None:
    """The signal number of the stop requested in this process, None when there is none."""
    return _STATE.signum


def forced() -> bool:
    """Whether a second signal ended the run at once."""
    return _STATE.forced


def request(signum: int) -> None:
    """Request a stop at the next iteration boundary (the first request counts) and pass it
    to every listener."""
    with _STATE.lock:
        if _STATE.signum is not None:
            return
        _STATE.signum = int(signum)
        listeners = list(_STATE.listeners)
    for listener in listeners:
        with contextlib.suppress(Exception):
            listener(int(signum))


@contextlib.contextmanager
def listen(listener: Callable[[int], None]) -> Iterator[None]:
    """Call ``listener(signum)`` on a stop request while the block runs (at once if one was
    already made)."""
    with _STATE.lock:
        _STATE.listeners.append(listener)
        signum = _STATE.signum
    if signum is not None:
        listener(signum)
    try:
        yield
    finally:
        with _STATE.lock:
            _STATE.listeners.remove(listener)


@contextlib.contextmanager
def on_force(action: Callable[[int], None]) -> Iterator[None]:
    """While the block runs, a second signal calls ``action(signum)`` (e.g. abort Ray Train's
    controller) instead of raising :class:`ForcedStop` in the main thread: raising it inside
    Ray's C code (``ray.get``) turns it into a ``SystemError``. The innermost block's action
    is the one called."""
    with _STATE.lock:
        _STATE.on_force.append(action)
    try:
        yield
    finally:
        with _STATE.lock:
            _STATE.on_force.remove(action)


def interrupt_now(reason: str) -> None:
    """From any thread: end the run at once, as a second signal does (the on-force actions
    run, then :class:`ForcedStop` is raised in the main thread); ``reason`` is printed. It is
    a failure, not an interrupt: where the process must exit at once (:func:`exit_at_once`)
    it exits with :data:`EXIT_FAILED`, not 130."""
    with _STATE.lock:
        _STATE.received = max(_STATE.received, 1)
        _STATE.reason = reason
    _thread.interrupt_main(signal.SIGINT)


def exit_at_once(signum: int) -> None:
    """An :func:`on_force` action: end the process now with :func:`exit_code` (``os._exit``:
    no cleanup; a private Ray instance is stopped by its reaper, and ``--resume`` takes the
    dead run's work_dir lease over at once); :data:`EXIT_FAILED` after
    :func:`interrupt_now`."""
    _say("exiting at once")
    os._exit(EXIT_FAILED if _STATE.reason is not None else exit_code(signum))


def _say(text: str) -> None:
    with contextlib.suppress(OSError):  # os.write: a handler may interrupt a print()
        os.write(2, f"raytrainer: {text}\n".encode())


def _handle(signum: int, frame) -> None:
    name = signal_name(signum)
    with _STATE.lock:
        _STATE.received += 1
        received = _STATE.received
    if received == 1 and _graceful:
        _say(f"{name} received: stopping at the next iteration boundary after committing a "
             f"checkpoint (send it again to stop at once)")
        request(signum)
        return
    if received <= 2:
        _say(_STATE.reason or f"{name} received{' again' if _graceful else ''}: stopping now")
        with _STATE.lock:
            _STATE.forced = True
            action = _STATE.on_force[-1] if _STATE.on_force else None
            if _STATE.signum is None:
                _STATE.signum = signum
        if action is None:
            raise ForcedStop(signum)
        with contextlib.suppress(Exception):
            action(signum)
        return
    _say(f"{name} received a third time: exiting at once")
    os._exit(exit_code(signum))


def install() -> None:
    """(Re)install the handlers inside :func:`handle_signals` (``ray.init`` replaces the
    SIGTERM handler with one that exits the interpreter)."""
    if _depth and threading.current_thread() is threading.main_thread():
        for signum in SIGNALS:
            signal.signal(signum, _handle)


@contextlib.contextmanager
def handle_signals(graceful: bool = True) -> Iterator[None]:
    """Handle SIGTERM and SIGINT as described above while the block runs (main thread only;
    elsewhere the block runs without them). Nested blocks share the outermost one's state.

    Args:
        graceful: The first signal requests a stop at an iteration boundary (training); when
            False (validation, test) it stops at once.
    """
    global _depth, _graceful
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _depth == 0:
        with _STATE.lock:
            _STATE.reset()
        _graceful = graceful
        _previous.update({signum: signal.getsignal(signum) for signum in SIGNALS})
    _depth += 1
    install()
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            for signum, handler in _previous.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
            _previous.clear()


def active() -> bool:
    """Whether this process handles the signals (inside :func:`handle_signals`)."""
    return _depth > 0


class StopFlag:
    """A Ray actor (no CPU) that carries a stop request from the driver to the workers."""

    def __init__(self, signum: int | None = None):
        self.signum = signum

    def request(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum

    def get(self) -> int | None:
        return self.signum


@contextlib.contextmanager
def ray_stop_flag() -> Iterator[object]:
    """A :class:`StopFlag` actor that receives this process's stop request while the block
    runs (Ray must be connected); yields its handle, for the workers' StopHook."""
    import ray

    flag = ray.remote(num_cpus=0)(StopFlag).remote(requested())
    with listen(lambda signum: flag.request.remote(signum)):
        try:
            yield flag
        finally:
            with contextlib.suppress(Exception):
                ray.kill(flag)


__all__ = ["ForcedStop", "StopFlag", "active", "exit_at_once", "exit_code", "forced",
           "handle_signals",
           "install", "interrupt_now", "listen", "on_force", "ray_stop_flag", "request",
           "requested", "signal_name"]
