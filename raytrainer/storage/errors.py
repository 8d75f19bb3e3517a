"""Storage failures: which ones are worth retrying, and the one error type callers see.

This module owns classifying exceptions from fsspec, s3fs, botocore and aiohttp as transient
(retry) or permanent, and turning the final one into a :class:`StorageError` whose message names
the location and what was expected. It performs no I/O.

s3fs turns botocore's ``ClientError`` into built-in errors (``FileNotFoundError`` for
``NoSuchKey``/``NoSuchBucket``, ``PermissionError`` for ``AccessDenied``, ``OSError(EBUSY)`` for
``SlowDown``/503) and keeps the original as ``__cause__``, so classification walks the cause and
context chain.
"""
from __future__ import annotations

import asyncio
import errno
import functools
import ssl
from collections.abc import Iterator

from .redaction import redact_text


class StorageError(OSError):
    """A storage operation failed for good (after retries, if it was transient).

    The message names the location and the reason; the original exception is ``__cause__``.
    ``transient`` says whether the last failure was of a kind that may pass (a connection
    error, a timeout, throttling): a later attempt, e.g. after a restart, may succeed.
    """

    transient: bool = False


class StorageNotFoundError(StorageError, FileNotFoundError):
    """The file or directory does not exist (still an ``except FileNotFoundError`` match)."""


class StoragePermissionError(StorageError, PermissionError):
    """Access was denied (still an ``except PermissionError`` match)."""


_TRANSIENT_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "ThrottledException", "RequestTimeout",
    "RequestTimeoutException", "InternalError", "ServiceUnavailable", "RequestLimitExceeded",
    "TooManyRequestsException", "BandwidthLimitExceeded", "PriorRequestNotComplete",
    "EC2ThrottledException", "500", "502", "503", "504",
})
_CREDENTIAL_CODES = frozenset({
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
    "InvalidToken", "AllAccessDisabled", "403",
})


@functools.cache
def _optional_types() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(transient, never-transient) exception types of the optional HTTP stacks.

    Built on first use, not at import: importing botocore and aiohttp costs every process
    (driver, each worker, each restarted worker) about 0.1 s, and only a storage error needs
    them."""
    transient: list[type] = [ConnectionError, TimeoutError, asyncio.TimeoutError]
    permanent: list[type] = [ssl.SSLError, ssl.CertificateError]
    try:
        from fsspec.exceptions import FSTimeoutError
        transient.append(FSTimeoutError)
    except ImportError:  # pragma: no cover - fsspec is a dependency
        pass
    try:
        import botocore.exceptions as boto
        transient += [boto.ConnectionError, boto.HTTPClientError, boto.IncompleteReadError]
        permanent.append(boto.SSLError)
    except ImportError:  # pragma: no cover - only without s3fs
        pass
    try:
        import aiohttp
        transient += [aiohttp.ClientConnectionError, aiohttp.ClientPayloadError,
                      aiohttp.ServerTimeoutError]
        permanent.append(aiohttp.ClientSSLError)
    except ImportError:  # pragma: no cover - only without s3fs
        pass
    return tuple(transient), tuple(permanent)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then its causes and contexts, each once."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        link = pending.pop(0)
        if id(link) in seen:
            continue
        seen.add(id(link))
        yield link
        if link.__cause__ is not None:
            pending.append(link.__cause__)
        if link.__context__ is not None and not link.__suppress_context__:
            pending.append(link.__context__)


def _client_error_info(exc: BaseException) -> tuple[str | None, int | None] | None:
    """``(code, http_status)`` of a botocore ``ClientError``-like exception, else None."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict) or "Error" not in response:
        return None
    code = response.get("Error", {}).get("Code")
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return (str(code) if code is not None else None,
            int(status) if isinstance(status, int) else None)


def error_code(exc: BaseException) -> str | None:
    """The S3-style error code (``NoSuchBucket``, ``SlowDown`` ...) in ``exc``'s chain, if any."""
    for link in _chain(exc):
        info = _client_error_info(link)
        if info is not None and info[0]:
            return info[0]
    return None


def _is_transient_link(exc: BaseException) -> bool:
    info = _client_error_info(exc)
    if info is not None:
        code, status = info
        return code in _TRANSIENT_CODES or (status is not None and (status >= 500
                                                                    or status == 429))
    return isinstance(exc, _optional_types()[0])


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the operation that raised ``exc`` may succeed.

    Transient: connection resets/refusals, timeouts, botocore endpoint/connection/read-timeout
    errors, aiohttp connection errors, and service responses 5xx, 429 or ``SlowDown``,
    ``Throttling``, ``RequestTimeout``, ``InternalError``, ``ServiceUnavailable`` — also when
    wrapped in another exception (s3fs's translated ``OSError``). Everything else is permanent:
    missing files and buckets, access denied, invalid arguments, TLS certificate errors, and a
    :class:`StorageError` (already retried).
    """
    if isinstance(exc, StorageError):
        return False
    never_transient = _optional_types()[1]
    for link in _chain(exc):
        if isinstance(link, never_transient):
            return False
        if _is_transient_link(link):
            return True
    return False


def is_missing(exc: BaseException) -> bool:
    """Whether ``exc`` says a file/directory is absent (a missing *bucket* is not 'absent')."""
    return isinstance(exc, FileNotFoundError) and error_code(exc) != "NoSuchBucket"


def error_detail(exc: BaseException) -> str:
    """A one-line, log-safe reason: ``'NoSuchBucket: The specified bucket does not exist'``."""
    for link in _chain(exc):
        info = _client_error_info(link)
        if info is not None and info[0]:
            message = getattr(link, "response", {}).get("Error", {}).get("Message") or str(link)
            return redact_text(f"{info[0]}: {message}")
    return redact_text(f"{type(exc).__name__}: {exc}")


def _expectation(exc: BaseException) -> str:
    code = error_code(exc)
    if code == "NoSuchBucket":
        return "expected an existing bucket; raytrainer never creates buckets"
    if code in _CREDENTIAL_CODES or isinstance(exc, PermissionError):
        return ("expected credentials with access to it: check AWS_* environment variables, "
                "the profile, or the key/secret storage options")
    if is_transient(exc):
        return ("expected a reachable storage endpoint: check endpoint_url "
                "(RAYTRAINER_STORAGE_OPTIONS or set_storage_options) and the network")
    if isinstance(exc, FileNotFoundError):
        return "expected it to exist"
    if getattr(exc, "errno", None) in _FULL:
        code = errno.errorcode[exc.errno]
        what = "is full" if exc.errno == errno.ENOSPC else "is over a quota or file-size limit"
        return (f"the disk holding it {what} ({code}): free space or use another location; "
                "files written there before are untouched")
    return ""


_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def storage_error(exc: BaseException, description: str, attempts: int = 1,
                  seconds: float | None = None) -> StorageError:
    """The :class:`StorageError` to raise for ``exc`` (the caller raises it ``from exc``).

    Args:
        exc: The last exception.
        description: What was attempted, naming the location (``'write s3://b/k'``).
        attempts: How many times it was tried.
        seconds: How long it was tried, when the retry deadline ended the tries.

    Returns:
        A :class:`StorageNotFoundError`, :class:`StoragePermissionError` or
        :class:`StorageError` whose message is ``storage: cannot <description>: <reason>``.
    """
    message = f"storage: cannot {redact_text(description)}: {error_detail(exc)}"
    notes = [f"gave up after {attempts} attempts"] if attempts > 1 else []
    if seconds is not None:
        notes.append(f"tried for {seconds:.0f} s, the retry deadline")
    expected = _expectation(exc)
    if expected:
        notes.append(expected)
    if notes:
        message += f" ({'; '.join(notes)})"
    if isinstance(exc, FileNotFoundError):
        return StorageNotFoundError(message)
    if isinstance(exc, PermissionError):
        return StoragePermissionError(message)
    error = StorageError(message)
    error.transient = is_transient(exc)
    return error


__all__ = ["StorageError", "StorageNotFoundError", "StoragePermissionError", "error_code",
           "error_detail", "is_missing", "is_transient", "storage_error"]
