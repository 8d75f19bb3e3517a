"""Keeping secrets out of logs: redacted copies of option dicts and log-safe location strings.

This module owns deciding which keys hold secrets and stripping credentials from URLs. It does no
I/O and never mutates what it is given, except :func:`redact_exception`, which scrubs an
exception (a library's too: MLflow echoes its tracking URI with the password) in place before it
is printed, logged or handed to Ray.
"""
from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

REDACTED = "***"

# Substrings that mark a key as secret wherever they appear (``db_password``, ``client_secret``).
_SECRET_SUBSTRINGS = ("secret", "password", "passwd", "credential", "private_key", "access_key",
                      "api_key", "apikey")
# Words that mark a key as secret only as a whole word: ``session_token`` and ``hf_token`` are
# secrets, ``tokenizer`` and ``max_tokens`` are not.
_SECRET_WORDS = ("token",)
_SECRET_KEYS = ("key", "aws_access_key_id", "aws_secret_access_key", "aws_session_token")

_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<userinfo>[^/@\s'\"]+)@")
# ``user:password@host`` without a scheme, as it shows up in paths an SDK echoes back
_BARE_USERINFO = re.compile(r"(?<![\w.%+\-])[\w.%+\-]+:[^\s/@'\"]+@")
_QUERY_PARAM = re.compile(r"(?P<sep>[?&])(?P<name>[^=&#\s'\"]+)=(?P<value>[^&#\s'\"]*)")


def _words(key: str) -> list[str]:
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key)
    return [word for word in re.split(r"[^a-zA-Z0-9]+", snake.lower()) if word]


def is_secret_key(key: Any) -> bool:
    """Whether a dict key names a secret (``secret_access_key``, ``password``, ``token`` ...)."""
    if not isinstance(key, str):
        return False
    words = _words(key)
    normalized = "_".join(words)
    return (normalized in _SECRET_KEYS
            or any(part in normalized for part in _SECRET_SUBSTRINGS)
            or any(word in _SECRET_WORDS for word in words))


def redact_text(text: str) -> str:
    """Replace URL credentials in free text: ``s3://user:pass@b`` → ``s3://***@b`` (also
    ``user:pass@host`` without a scheme, as SDK error messages echo paths).

    Query parameters with secret names (``?token=...``, ``X-Amz-Credential=...``) are redacted
    too.
    """
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)
    text = _BARE_USERINFO.sub(f"{REDACTED}@", text)
    return _QUERY_PARAM.sub(
        lambda m: f"{m['sep']}{m['name']}={REDACTED}" if is_secret_key(m["name"]) else m[0],
        text)


# Message fields that exception types keep outside ``__dict__`` (OSError's, SyntaxError's).
_MESSAGE_SLOTS = ("strerror", "filename", "filename2", "msg", "text")


def redact_exception(exc: BaseException) -> BaseException:
    """Remove URL credentials from ``exc``'s message, in place, and from every exception it was
    raised from or while handling (``__cause__``, ``__context__``).

    The string arguments and string attributes (``MlflowException.message``, ``OSError.filename``
    ...) are redacted with :func:`redact_text`; the type and everything else stay, so the error
    is classified and caught as before.

    Returns:
        ``exc`` itself.
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        try:
            current.args = tuple(redact_text(arg) if isinstance(arg, str) else arg
                                 for arg in current.args)
            for name in {*vars(current), *_MESSAGE_SLOTS}:
                value = getattr(current, name, None)
                if isinstance(value, str) and redact_text(value) != value:
                    setattr(current, name, redact_text(value))
        except (AttributeError, TypeError):  # an exception type with read-only fields
            pass
        pending += [current.__cause__, current.__context__]
    return exc


def redact(obj: Any) -> Any:
    """A deep copy of ``obj`` that is safe to log.

    Values under secret-looking keys become ``'***'`` (``None`` stays ``None``, so an unset
    secret is still visible as unset) and credentials inside URL strings are removed.

    Args:
        obj: A nested structure of dicts, lists, tuples and scalars; a raytrainer ``Config`` (or
            anything with ``to_dict()``) is converted first.

    Returns:
        Plain dicts/lists/tuples with the same shape as ``obj``.

    Example:
        >>> redact({"s3": {"key": "AKIA", "endpoint_url": "http://u:p@host"}})
        {'s3': {'key': '***', 'endpoint_url': 'http://***@host'}}
    """
    if isinstance(obj, Mapping):
        return {key: _redact_value(key, value) for key, value in obj.items()}
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict) and not isinstance(obj, type):
        return redact(to_dict())
    if isinstance(obj, list):
        return [redact(item) for item in obj]
    if isinstance(obj, tuple):
        return tuple(redact(item) for item in obj)
    if isinstance(obj, (set, frozenset)):
        return {redact(item) for item in obj}
    if isinstance(obj, str):
        return redact_text(obj)
    return obj


def _redact_value(key: Any, value: Any) -> Any:
    if is_secret_key(key) and value is not None:
        return REDACTED
    return redact(value)


def describe(location: Any) -> str:
    """A log-safe string for a location: credentials are stripped from URLs.

    ``s3://user:pass@bucket/k`` → ``s3://bucket/k``; plain paths come back unchanged.
    """
    text = os.fspath(location) if isinstance(location, os.PathLike) else str(location)
    text = _USERINFO.sub(lambda m: m["scheme"], text)
    return _QUERY_PARAM.sub(
        lambda m: f"{m['sep']}{m['name']}={REDACTED}" if is_secret_key(m["name"]) else m[0],
        text)


__all__ = ["REDACTED", "describe", "is_secret_key", "redact", "redact_exception", "redact_text"]
