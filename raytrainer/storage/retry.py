"""Retrying storage calls: exponential backoff with jitter for transient failures.

This module owns the retry policy (attempts, delays and a deadline, tunable with
:func:`set_retry_policy`) and :func:`call_with_retries`, which every storage operation goes
through (Ray's own file operations too: ``arrow.py``). Once a process is ending after a fatal
error, :func:`last_attempts_only` gives every further call a single try, so background uploads
(remote logs, a checkpoint write in flight) cannot keep it alive. Which failures are transient
is decided in ``errors.py``. s3fs retries some failures itself first (throttling, timed-out
requests: 5 tries); botocore's own retries are off by default (``s3.py``); this layer catches
what s3fs gives up on (and everything other filesystems raise).

Time bound: by default up to 10 tries with delays of 0.5, 1, 2, then 4 s (each jittered to
between half and all of it), and no retry starts once ``deadline`` (20 s) has passed since the
first try. So a transient failure is retried for at least 13.75 s (a 10 s outage is absorbed)
and at most 20 s plus the try in flight. Each try is bounded by the storage timeouts (S3:
connect 5 s, read 10 s per request, s3fs's 5 tries of a timed-out request), so an operation
against a dead endpoint (connection refused) fails within about 20 s and one against a frozen
endpoint within about 70 s.
"""
from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from .errors import StorageError, error_detail, is_transient, storage_error
from .redaction import redact_text

T = TypeVar("T")

_policy: dict[str, float] = {"attempts": 10, "base_delay": 0.5, "max_delay": 4.0,
                             "deadline": 20.0}
_ending = False
_this_thread = threading.local()


@contextlib.contextmanager
def one_attempt() -> Iterator[None]:
    """Storage calls made by this thread inside the block get one attempt, no retries (for
    best-effort work such as heartbeats, whose next round is the retry)."""
    before = getattr(_this_thread, "one_attempt", False)
    _this_thread.one_attempt = True
    try:
        yield
    finally:
        _this_thread.one_attempt = before


def last_attempts_only() -> None:
    """From now on every storage call in this process gets one attempt, without retries.

    For a process that is ending after a fatal error: what is still uploading (logs at exit,
    a background checkpoint write) gets a bounded last try, and the process exits.
    """
    global _ending
    _ending = True


def set_retry_policy(attempts: int | None = None, base_delay: float | None = None,
                     max_delay: float | None = None,
                     deadline: float | None = None) -> dict[str, float]:
    """Change the module defaults of :func:`call_with_retries`; ``None`` keeps a value.

    Args:
        attempts: Tries in all (1 = no retry).
        base_delay: Seconds before the first retry; doubled for each further one.
        max_delay: Upper bound of one delay, in seconds.
        deadline: Seconds after the first try past which no retry starts (the try in
            flight is bounded by the storage timeouts).

    Returns:
        The policy before the change (pass it back as keyword arguments to restore it).

    Raises:
        ValueError: ``attempts`` < 1 or a negative delay.
    """
    if attempts is not None and int(attempts) < 1:
        raise ValueError(f"set_retry_policy: attempts must be >= 1, got {attempts}")
    if any(value is not None and value < 0 for value in (base_delay, max_delay, deadline)):
        raise ValueError("set_retry_policy: delays and the deadline must be >= 0")
    before = dict(_policy)
    for name, value in (("attempts", attempts), ("base_delay", base_delay),
                        ("max_delay", max_delay), ("deadline", deadline)):
        if value is not None:
            _policy[name] = int(value) if name == "attempts" else float(value)
    return before


def retry_delay(attempt: int, base_delay: float, max_delay: float) -> float:
    """Seconds to wait after failed try number ``attempt`` (1-based): capped exponential
    backoff, with jitter between half and all of it so that ranks do not retry in lockstep."""
    delay = min(max_delay, base_delay * 2 ** (attempt - 1))
    return delay / 2 + random.uniform(0, delay / 2)


def _print(message: str) -> None:
    print(message)


# Storage is the ground floor: it reports retries through this sink instead of importing the
# logger (which writes its files through storage). ``raytrainer.logging`` plugs the current
# run logger in; until then a retry is printed, as ``print_log`` does without a logger.
_warning_sink: Callable[[str], None] = _print


def set_warning_sink(sink: Callable[[str], None]) -> None:
    """Send each retry's warning to ``sink`` (a callable taking the message)."""
    global _warning_sink
    _warning_sink = sink


def call_with_retries(fn: Callable[..., T], *args: Any, description: str,
                      attempts: int | None = None, base_delay: float | None = None,
                      max_delay: float | None = None, deadline: float | None = None,
                      **kwargs: Any) -> T:
    """Call ``fn(*args, **kwargs)``, retrying transient failures.

    Each retry is reported to the warning sink (:func:`set_warning_sink`; the current run
    logger at WARNING level once ``raytrainer.logging`` is imported), naming ``description``,
    the attempt number and the error.

    Args:
        fn: The operation.
        description: What it does, naming the location, e.g. ``'write s3://b/k'``.
        attempts: Tries in all; defaults to the module policy (:func:`set_retry_policy`).
        base_delay: First delay in seconds; defaults to the module policy.
        max_delay: Largest delay in seconds; defaults to the module policy.
        deadline: No retry starts later than this many seconds after the first try;
            defaults to the module policy.

    Returns:
        What ``fn`` returns.

    Raises:
        StorageError: ``fn`` failed permanently, or transiently ``attempts`` times or until
            the deadline; the message
            reads ``storage: cannot <description>: <reason>`` and the original exception is
            ``__cause__``. A ``StorageError`` raised by ``fn`` itself passes through unchanged.
    """
    if _ending or getattr(_this_thread, "one_attempt", False):
        attempts = 1
    attempts = int(_policy["attempts"] if attempts is None else attempts)
    base_delay = _policy["base_delay"] if base_delay is None else base_delay
    max_delay = _policy["max_delay"] if max_delay is None else max_delay
    deadline = _policy["deadline"] if deadline is None else deadline
    began = time.monotonic()
    for attempt in range(1, attempts + 1):
        try:
            return fn(*args, **kwargs)
        except StorageError:
            raise
        except Exception as exc:
            delay = retry_delay(attempt, base_delay, max_delay)
            late = time.monotonic() + delay - began > deadline
            if not is_transient(exc) or attempt == attempts or late:
                raise storage_error(exc, description, attempt,
                                    time.monotonic() - began if late else None) from exc
            _warning_sink(f"storage: {redact_text(description)} failed (attempt "
                          f"{attempt}/{attempts}): {error_detail(exc)}; retrying in {delay:.2f}s")
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


__all__ = ["call_with_retries", "last_attempts_only", "one_attempt", "retry_delay",
           "set_retry_policy", "set_warning_sink"]
