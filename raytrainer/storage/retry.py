"""Retrying storage calls: exponential backoff with jitter for transient failures.

This module owns the retry policy (attempts and delays, tunable with :func:`set_retry_policy`)
and :func:`call_with_retries`, which every storage operation goes through. Once a process is
ending after a fatal error, :func:`last_attempts_only` gives every further call a single try,
so background uploads (remote logs, a checkpoint write in flight) cannot keep it alive. Which
failures are transient is decided in ``errors.py``. s3fs and botocore retry some failures
themselves first; this layer catches what they give up on (and everything other filesystems
raise).
"""
from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from ..logging import print_log
from .errors import StorageError, error_detail, is_transient, storage_error
from .redaction import redact_text

T = TypeVar("T")

_policy: dict[str, float] = {"attempts": 5, "base_delay": 0.5, "max_delay": 8.0}
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
                     max_delay: float | None = None) -> dict[str, float]:
    """Change the module defaults of :func:`call_with_retries`; ``None`` keeps a value.

    Args:
        attempts: Tries in all (1 = no retry).
        base_delay: Seconds before the first retry; doubled for each further one.
        max_delay: Upper bound of one delay, in seconds.

    Returns:
        The policy before the change (pass it back as keyword arguments to restore it).

    Raises:
        ValueError: ``attempts`` < 1 or a negative delay.
    """
    if attempts is not None and int(attempts) < 1:
        raise ValueError(f"set_retry_policy: attempts must be >= 1, got {attempts}")
    if any(value is not None and value < 0 for value in (base_delay, max_delay)):
        raise ValueError("set_retry_policy: delays must be >= 0")
    before = dict(_policy)
    for name, value in (("attempts", attempts), ("base_delay", base_delay),
                        ("max_delay", max_delay)):
        if value is not None:
            _policy[name] = int(value) if name == "attempts" else float(value)
    return before


def retry_delay(attempt: int, base_delay: float, max_delay: float) -> float:
    """Seconds to wait after failed try number ``attempt`` (1-based): capped exponential
    backoff, with jitter between half and all of it so that ranks do not retry in lockstep."""
    delay = min(max_delay, base_delay * 2 ** (attempt - 1))
    return delay / 2 + random.uniform(0, delay / 2)


def call_with_retries(fn: Callable[..., T], *args: Any, description: str,
                      attempts: int | None = None, base_delay: float | None = None,
                      max_delay: float | None = None, **kwargs: Any) -> T:
    """Call ``fn(*args, **kwargs)``, retrying transient failures.

    Each retry is logged at WARNING level through ``print_log`` (the current logger), naming
    ``description``, the attempt number and the error.

    Args:
        fn: The operation.
        description: What it does, naming the location, e.g. ``'write s3://b/k'``.
        attempts: Tries in all; defaults to the module policy (:func:`set_retry_policy`).
        base_delay: First delay in seconds; defaults to the module policy.
        max_delay: Largest delay in seconds; defaults to the module policy.

    Returns:
        What ``fn`` returns.

    Raises:
        StorageError: ``fn`` failed permanently, or transiently ``attempts`` times; the message
            reads ``storage: cannot <description>: <reason>`` and the original exception is
            ``__cause__``. A ``StorageError`` raised by ``fn`` itself passes through unchanged.
    """
    if _ending or getattr(_this_thread, "one_attempt", False):
        attempts = 1
    attempts = int(_policy["attempts"] if attempts is None else attempts)
    base_delay = _policy["base_delay"] if base_delay is None else base_delay
    max_delay = _policy["max_delay"] if max_delay is None else max_delay
    for attempt in range(1, attempts + 1):
        try:
            return fn(*args, **kwargs)
        except StorageError:
            raise
        except Exception as exc:
            if not is_transient(exc) or attempt == attempts:
                raise storage_error(exc, description, attempt) from exc
            delay = retry_delay(attempt, base_delay, max_delay)
            print_log(f"storage: {redact_text(description)} failed (attempt {attempt}/{attempts}): "
                      f"{error_detail(exc)}; retrying in {delay:.2f}s",
                      logger="current", level=logging.WARNING)
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


__all__ = ["call_with_retries", "last_attempts_only", "one_attempt", "retry_delay",
           "set_retry_policy"]
