"""Stops the private local Ray instance of a driver that died, even by SIGKILL.

``ray.init(address='local')`` starts the instance's processes as the driver's children. The
direct children (GCS, raylet, dashboard, monitors) die with the driver (Ray sets a parent-death
signal on them), but what the raylet started (``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``,
actors and workers, their own children) outlived a SIGKILLed driver, reparented to init.

:func:`watch` starts this module as a detached process (its own session, so a Ctrl-C or a
signal to the driver's process group does not reach it) that reads a pipe from the driver.
While the driver lives it records, every :data:`POLL_S` seconds, the processes of the instance:
the driver's children whose command line names the instance's session directory
(``session_<date>_<driver pid>``, which Ray names after the process that starts it) and every
process below them, each with its create time (a pid reused later is not the same process).
When the pipe closes, because the driver ended the block (after ``ray.shutdown()``), exited or
was killed, it stops what is left of the instance: the recorded processes that still run, and
any orphan that started after the last record and whose command line or open files are in
that session directory, with everything below them; SIGTERM first, SIGKILL after
:data:`GRACE_S` seconds. It never touches a process of another Ray instance (another session
directory) or one the instance did not start, and it never runs ``ray stop``.
"""
from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator

import psutil

POLL_S = 0.5
GRACE_S = 3.0
_ROUNDS = 3
# psutil's create times count from the boot time in whole seconds (Linux /proc/stat btime), so
# they may read up to a second early against time.time()
_CLOCK_SLACK_S = 1.0


def _session_pattern(driver_pid: int) -> re.Pattern:
    """The session directory Ray names for an instance started by ``driver_pid``."""
    date = r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_\d+"
    return re.compile(rf"/\S*?/session_{date}_{driver_pid}(?=[/\s]|$)")


def _cmdline(process: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        return " ".join(process.cmdline())
    return ""


class Instance:
    """The processes of one private Ray instance, as seen from outside its driver."""

    def __init__(self, driver_pid: int):
        self.driver = psutil.Process(driver_pid)
        self.pattern = _session_pattern(driver_pid)
        self.session_dir: str | None = None
        self.seen: dict[int, float] = {}  # pid -> create time
        self.recorded_at: float | None = None  # when the last record began

    def _roots(self) -> Iterator[psutil.Process]:
        """The driver's children that belong to the instance (naming its session dir)."""
        for child in self.driver.children():
            line = _cmdline(child)
            if self.session_dir is None:
                found = self.pattern.search(line)
                if found:
                    self.session_dir = found.group(0)
            if self.session_dir and self.session_dir in line:
                yield child

    def record(self) -> None:
        """Note every process of the instance that runs now (the driver must be alive)."""
        started = time.time()
        for root in self._roots():
            with contextlib.suppress(psutil.Error):
                for process in (root, *root.children(recursive=True)):
                    with contextlib.suppress(psutil.Error):
                        self.seen.setdefault(process.pid, process.create_time())
        self.recorded_at = started

    def _started_unseen(self, process: psutil.Process) -> bool:
        """Whether ``process`` started after the last record began (so no record could have
        seen it below the instance's processes before it was orphaned)."""
        if self.recorded_at is None:
            return False
        return process.create_time() >= self.recorded_at - _CLOCK_SLACK_S

    def _in_session(self, process: psutil.Process) -> bool:
        if self.session_dir is None:
            return False
        if self.session_dir in _cmdline(process):
            return True
        with contextlib.suppress(psutil.Error):
            return any(f.path.startswith(self.session_dir + "/") for f in process.open_files())
        return False

    def left(self) -> list[psutil.Process]:
        """The processes of the instance still running, and everything below them.

        Those recorded (same pid and create time); orphans (reparented to init) whose command
        line or open files are in the session directory, started after the last record
        (a user's ``tail -f`` of a log there has a live parent and is left alone).
        """
        found: dict[int, psutil.Process] = {}
        for pid, created in self.seen.items():
            with contextlib.suppress(psutil.Error):
                process = psutil.Process(pid)
                if process.create_time() == created:
                    found[pid] = process
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if process.pid not in found and process.ppid() == 1 and \
                        self._started_unseen(process) and self._in_session(process):
                    found[process.pid] = process
        for process in list(found.values()):
            with contextlib.suppress(psutil.Error):
                for child in process.children(recursive=True):
                    found.setdefault(child.pid, child)
        for pid in (os.getpid(), self.driver.pid):
            found.pop(pid, None)
        return list(found.values())


def _signal_all(processes: Iterable[psutil.Process], kill: bool) -> None:
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill() if kill else process.terminate()


def stop(instance: Instance) -> int:
    """Stop what is left of ``instance``; returns how many processes were signalled."""
    count = 0
    for _ in range(_ROUNDS):  # a dying parent may have started a last child meanwhile
        processes = instance.left()
        if not processes:
            break
        count += len(processes)
        _signal_all(processes, kill=False)
        _, alive = psutil.wait_procs(processes, timeout=GRACE_S)
        _signal_all(alive, kill=True)
        psutil.wait_procs(alive, timeout=GRACE_S)
    return count


def _pipe_closed(fd: int, timeout: float) -> bool:
    import select

    ready, _, _ = select.select([fd], [], [], timeout)
    return bool(ready) and not os.read(fd, 4096)


def main(argv: list[str] | None = None) -> int:
    """``python -m raytrainer.launch.driver.reaper DRIVER_PID``, reading the driver's pipe on
    stdin."""
    driver_pid = int((argv if argv is not None else sys.argv[1:])[0])
    try:
        instance = Instance(driver_pid)
    except psutil.NoSuchProcess:
        return 0  # nothing the instance started is known: touch nothing
    stdin = sys.stdin.fileno()
    while True:
        with contextlib.suppress(psutil.Error):
            instance.record()
        if _pipe_closed(stdin, POLL_S):
            break
    stop(instance)
    return 0


class Watch:
    """The driver's side of a reaper: closing it (or the driver dying) ends the watch."""

    def __init__(self, process: subprocess.Popen):
        self.process = process

    def close(self, timeout: float = 0.0) -> None:
        """Close the pipe: the reaper stops what is left of the instance on its own; wait up
        to ``timeout`` seconds for it to finish."""
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout)


def watch(driver_pid: int | None = None) -> Watch:
    """Start a reaper for the private instance that ``driver_pid`` (this process) starts next.

    Start it before ``ray.init``: it learns the instance's session directory from the
    driver's children, so a driver killed while Ray starts leaves nothing behind either.
    """
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [root, os.environ.get("PYTHONPATH")])))
    process = subprocess.Popen(
        [sys.executable, "-m", "raytrainer.launch.driver.reaper", str(driver_pid or os.getpid())],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, close_fds=True, cwd="/", env=env)
    return Watch(process)


if __name__ == "__main__":
    sys.exit(main())
