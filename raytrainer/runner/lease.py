"""The work_dir lease: at most one live training run writes into a work_dir at a time.

Two runs in one work_dir overwrite and prune each other's checkpoints, so a training run holds
a lease on its work_dir: the record ``<work_dir>/.raytrainer-lease.json`` naming the run, its
lineage, its process and a random token. Object stores have no atomic create or rename, so
the lease is taken by writing it and reading it back after a short settling time: of runs
that start together, the one whose record is read back by all of them wins, and the others
are refused. While the run lives a thread re-writes the record every ``heartbeat`` seconds; a
record whose heartbeat is older than ``stale after`` seconds belongs to a run that is gone
(killed, lost node) and is taken over. An explicit resume of the same lineage takes the lease
over at once (a resubmitted driver continues its own run), unless the holder is a process
still alive on this machine. The lease is removed when the run
ends, if it is still ours. A run that finds its lease taken over stops writing: its next
checkpoint save raises :class:`WorkDirInUseError` (``on_lost`` lets a Ray driver stop its run
at once). So does a run whose heartbeat could not be written (storage down, or frozen: each
round runs on a helper thread and is given up on at the deadline) for ``stale - heartbeat``
seconds (default 50): it raises :class:`LeaseExpiredError` before its lease goes stale and
another run may take the work_dir over.

Timing comes from ``RAYTRAINER_LEASE_HEARTBEAT_S`` (default 10) and
``RAYTRAINER_LEASE_STALE_S`` (default 60, more than the heartbeat). Staleness compares wall
clocks of the two machines. This module owns the lease record only; it never touches
checkpoints or logs.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from .. import dist, storage
from ..logging import print_log

LEASE_FILE = ".raytrainer-lease.json"
HEARTBEAT_ENV = "RAYTRAINER_LEASE_HEARTBEAT_S"
STALE_ENV = "RAYTRAINER_LEASE_STALE_S"
_MIN_SETTLE_S, _MAX_SETTLE_S = 0.1, 5.0


class WorkDirInUseError(RuntimeError):
    """Another live run holds the work_dir's lease."""


class LeaseExpiredError(WorkDirInUseError):
    """The run could not renew its lease for so long that another run could take it over."""


@dataclass(frozen=True)
class LeaseRecord:
    token: str
    run: str
    lineage: str
    holder: str
    started: float
    heartbeat: float

    def age(self) -> float:
        return time.time() - self.heartbeat


def _seconds(name: str, default: float) -> float:
    value = os.environ.get(name)
    try:
        seconds = float(value) if value else default
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {value!r}") from None
    if seconds <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return seconds


def _alive_on_this_machine(record: LeaseRecord) -> bool:
    """Whether the record's holder is a live process on this machine (other machines'
    processes cannot be checked: their lease is taken over)."""
    host, _, pid = record.holder.rpartition(" pid ")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lease_location(work_dir: str) -> str:
    return storage.join(str(work_dir), LEASE_FILE)


def read_lease(work_dir: str) -> LeaseRecord | None:
    """The lease record of ``work_dir``, or None if there is none (or it is unreadable)."""
    try:
        return LeaseRecord(**json.loads(storage.read_text(lease_location(work_dir))))
    except storage.StorageNotFoundError:
        return None
    except (ValueError, TypeError) as exc:  # a torn record holds nothing
        print_log(f"ignoring the unreadable lease {lease_location(work_dir)}: {exc}",
                  logger="current", level=logging.WARNING)
        return None


class WorkDirLease:
    """The lease of one run on ``work_dir``; a context manager (acquire ... release).

    Args:
        work_dir: The run's work_dir (path or URL).
        run: The run's name, shown to runs that are refused.
        lineage: The run's checkpoint lineage.
        resuming: The run resumes its lineage: it may take over a lease of the same lineage
            that is not stale yet (its earlier process died).
        logger: Where take-overs and heartbeat problems are logged.
        on_lost: Called (from the heartbeat thread) when another run took the lease over or
            the heartbeat failed past the deadline (``expire_after_s``).

    Attributes:
        expire_after_s: Seconds without a written heartbeat after which the run gives its
            lease up (``stale - heartbeat``).
    """

    def __init__(self, work_dir: str, run: str, lineage: str, resuming: bool = False,
                 logger: logging.Logger | str = "current",
                 on_lost: Callable[[], None] | None = None):
        self.work_dir, self.run, self.lineage, self.resuming = str(work_dir), run, lineage, resuming
        self.logger = logger
        self.heartbeat_s = _seconds(HEARTBEAT_ENV, 10.0)
        self.stale_s = _seconds(STALE_ENV, 60.0)
        if self.stale_s <= self.heartbeat_s:
            raise ValueError(f"{STALE_ENV} ({self.stale_s:g} s) must be more than "
                             f"{HEARTBEAT_ENV} ({self.heartbeat_s:g} s)")
        self.expire_after_s = self.stale_s - self.heartbeat_s
        self.token = uuid.uuid4().hex
        self.lost: LeaseRecord | None = None
        self.expired: str | None = None
        self.on_lost = on_lost
        self._started = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> WorkDirLease:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lease or raise :class:`WorkDirInUseError` naming the holder."""
        current = read_lease(self.work_dir)
        if current is not None and current.token != self.token:
            if current.age() > self.stale_s:
                print_log(f"{lease_location(self.work_dir)}: run {current.run} on "
                          f"{current.holder} sent no heartbeat for {current.age():.0f} s; "
                          "taking its lease over", logger=self.logger, level=logging.WARNING)
            elif self.resuming and current.lineage == self.lineage and \
                    not _alive_on_this_machine(current):
                print_log(f"{lease_location(self.work_dir)}: resuming run {current.run} "
                          f"(lineage {current.lineage}); taking its lease over from "
                          f"{current.holder}", logger=self.logger, level=logging.WARNING)
            else:
                raise WorkDirInUseError(self._refusal(current))
        began = time.monotonic()
        self._write()
        # Another run that read no (or a stale) lease before our write lands writes its own
        # within about one round trip: wait a few of ours, then see whose record stayed.
        time.sleep(min(max(3 * (time.monotonic() - began), _MIN_SETTLE_S), _MAX_SETTLE_S))
        winner = read_lease(self.work_dir)
        if winner is None or winner.token != self.token:
            raise WorkDirInUseError(self._refusal(winner) if winner is not None else
                                    f"{storage.describe(self.work_dir)}: the lease "
                                    f"{LEASE_FILE} vanished while it was being taken")
        self._thread = threading.Thread(target=self._beat, name="raytrainer-lease",
                                        daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop the heartbeat and remove the lease if it is still ours (one try, waited for at
        most ``heartbeat_s``: a run ending in a storage outage must not wait for it; the lease
        then goes stale)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        problem = self._try_until(time.monotonic() + self.heartbeat_s, self._remove_if_ours,
                                  stoppable=False)
        if problem is not None:
            print_log(f"could not remove the lease {lease_location(self.work_dir)}: {problem}; "
                      f"it goes stale {self.stale_s:.0f} s after its last heartbeat",
                      logger=self.logger, level=logging.WARNING)

    def _remove_if_ours(self) -> None:
        current = read_lease(self.work_dir)
        if current is not None and current.token == self.token:
            storage.remove(lease_location(self.work_dir))

    def _write(self) -> None:
        record = LeaseRecord(token=self.token, run=self.run, lineage=self.lineage,
                             holder=f"{socket.gethostname()} pid {os.getpid()}",
                             started=self._started, heartbeat=time.time())
        storage.write_text(lease_location(self.work_dir), json.dumps(asdict(record)))

    def _beat(self) -> None:
        """Re-write the record every ``heartbeat_s``; give the lease up once no heartbeat was
        written for ``expire_after_s`` (a blocked write is waited for until then only)."""
        written = time.monotonic()  # acquire() just wrote it
        error = "no heartbeat round finished"
        while True:
            deadline = written + self.expire_after_s
            if self._stop.wait(max(0.0, min(self.heartbeat_s, deadline - time.monotonic()))):
                return
            if time.monotonic() < deadline:
                outcome = self._try_until(deadline, self._round)
                if self._stop.is_set() or outcome == "lost":
                    return
                if outcome is None:
                    written = time.monotonic()
                    continue
                error = outcome
                print_log(f"lease heartbeat failed: {error}", logger=self.logger,
                          level=logging.WARNING)
            if time.monotonic() >= deadline:
                self._expire(error, time.monotonic() - written)
                return

    def _try_until(self, deadline: float, attempt: Callable[[], str | None],
                   stoppable: bool = True) -> str | None:
        """One try of ``attempt`` (one storage attempt per call) on a helper thread, waited
        for until ``deadline`` (or until the lease is released, when ``stoppable``).

        Returns:
            What ``attempt`` returned, what went wrong, or that it did not return in time.
        """
        outcome: list[str | None] = ["the storage call did not return before the deadline"]
        done = threading.Event()

        def attempt_once() -> None:
            try:
                with storage.one_attempt():  # a missed heartbeat is retried by the next one
                    outcome[0] = attempt()
            except Exception as exc:  # noqa: BLE001 - reported by the waiting thread
                outcome[0] = f"{type(exc).__name__}: {exc}"
            finally:
                done.set()

        threading.Thread(target=attempt_once, name="raytrainer-lease-io", daemon=True).start()
        while not done.wait(min(0.2, max(0.0, deadline - time.monotonic()))):
            if (stoppable and self._stop.is_set()) or time.monotonic() >= deadline:
                break
        return outcome[0]

    def _round(self) -> str | None:
        current = read_lease(self.work_dir)
        if current is not None and current.token != self.token:
            self.lost = current
            print_log(f"{storage.describe(self.work_dir)}: the lease was taken over by run "
                      f"{current.run} on {current.holder}; this run stops writing into the "
                      "work_dir", logger=self.logger, level=logging.ERROR)
            if self.on_lost is not None:
                self.on_lost()
            return "lost"
        self._write()
        return None

    def _expire(self, error: str, silent_s: float) -> None:
        self.expired = (
            f"work_dir {storage.describe(self.work_dir)}: the lease "
            f"{lease_location(self.work_dir)} could not be renewed for {silent_s:.0f} s "
            f"(last error: {error}); this run stopped, since {self.stale_s:.0f} s after its "
            f"last heartbeat ({STALE_ENV}) another run may take the work_dir over")
        print_log(self.expired, logger=self.logger, level=logging.ERROR)
        if self.on_lost is not None:
            self.on_lost()

    def loss(self) -> str | None:
        """Why this run no longer holds its lease (another run took it over, or the heartbeat
        failed past ``expire_after_s``); None while it does."""
        if self.lost is not None:
            return (f"work_dir {storage.describe(self.work_dir)}: run {self.lost.run} on "
                    f"{self.lost.holder} took this run's lease over; this run stopped so that "
                    "the two do not overwrite and prune each other's checkpoints")
        return self.expired

    def check(self) -> None:
        """Raise :class:`WorkDirInUseError` if another run took the lease over, or
        :class:`LeaseExpiredError` if the heartbeat failed past ``expire_after_s``."""
        message = self.loss()
        if message is not None:
            raise (WorkDirInUseError if self.lost is not None else LeaseExpiredError)(message)

    def _refusal(self, holder: LeaseRecord) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.started))
        return (f"work_dir {storage.describe(self.work_dir)} is in use by run {holder.run} "
                f"(lineage {holder.lineage}) on {holder.holder} since {since}, last heartbeat "
                f"{max(holder.age(), 0):.0f} s ago. Two runs in one work_dir would overwrite "
                "and prune each other's checkpoints. Use another --work-dir, wait for that run "
                f"to end, or, if it is gone: resume it with --resume (it takes its lease over), "
                f"wait until its lease is stale ({self.stale_s:.0f} s after its last "
                f"heartbeat, {STALE_ENV}), or delete {lease_location(self.work_dir)}")


class _RankZeroLease:
    """Rank 0 holds the lease; every rank raises if it is refused."""

    def __init__(self, lease: WorkDirLease):
        self.lease = lease

    def __enter__(self) -> WorkDirLease:
        error: list = [None]
        failure: Exception | None = None
        if dist.get_rank() == 0:
            try:
                self.lease.acquire()
            except Exception as exc:  # every rank must hear of it, or the others would hang
                failure, error[0] = exc, f"{type(exc).__name__}: {exc}"
        dist.broadcast_object_list(error)
        if failure is not None:
            raise failure
        if error[0] is not None:
            raise WorkDirInUseError(f"rank 0 could not take the work_dir lease: {error[0]}")
        return self.lease

    def __exit__(self, *exc: Any) -> None:
        if dist.get_rank() == 0:
            self.lease.release()


def runner_lease(runner) -> Any:
    """The lease a Runner holds while it trains: rank 0's, except on Ray (the driver holds
    the lease there, for the whole run and its restarts)."""
    if runner.launcher == "ray":
        return contextlib.nullcontext()
    resuming = bool(runner.resumed_from)
    return _RankZeroLease(WorkDirLease(runner.work_dir, runner.experiment_name,
                                       runner.checkpoints.lineage, resuming=resuming,
                                       logger=runner.logger))
