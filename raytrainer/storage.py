"""Storage locations as URLs: every path a user gives goes through fsspec here.

This module owns turning a location (``/abs/path``, ``rel/path``, ``file://``, ``memory://``,
``s3://bucket/key``) into an fsspec filesystem plus path, and the few file operations the engine
needs. Nothing else in raytrainer opens user-given paths with ``open`` or ``os``.
"""
from __future__ import annotations

import io
import posixpath
from typing import Any

import fsspec
from fsspec.core import url_to_fs

_default_options: dict[str, dict[str, Any]] = {}


def set_storage_options(options: dict[str, Any] | None, protocol: str | None = None) -> None:
    """Default fsspec options (``endpoint_url``, ``profile`` ...) for URLs of ``protocol``.

    With ``protocol=None`` the options apply to every remote protocol.
    """
    _default_options[protocol or "*"] = dict(options or {})


def _options_for(url: str, storage_options: dict[str, Any] | None) -> dict[str, Any]:
    protocol = url.split("://", 1)[0] if "://" in url else "file"
    if protocol == "file":
        return dict(storage_options or {})
    merged = dict(_default_options.get("*", {}))
    merged.update(_default_options.get(protocol, {}))
    merged.update(storage_options or {})
    return merged


def is_url(location: str) -> bool:
    return "://" in str(location)


def get_filesystem(location: str, storage_options: dict[str, Any] | None = None):
    """Return ``(fs, path)`` for a location; local paths are made absolute."""
    location = str(location)
    return url_to_fs(location, **_options_for(location, storage_options))


def join(base: str, *parts: str) -> str:
    """Join path parts onto a location, keeping its protocol (``s3://b/k`` + ``x`` → ``s3://b/k/x``)."""
    base = str(base)
    if is_url(base):
        protocol, rest = base.split("://", 1)
        return f"{protocol}://" + posixpath.join(rest, *parts) if rest else \
            f"{protocol}://" + posixpath.join(*parts)
    return posixpath.join(base, *parts)


def makedirs(location: str) -> None:
    fs, path = get_filesystem(location)
    fs.makedirs(path, exist_ok=True)


def exists(location: str) -> bool:
    fs, path = get_filesystem(location)
    return fs.exists(path)


def open_file(location: str, mode: str = "rb", **kwargs):
    """Open a file at a location with fsspec (parents are created for writes on local disk)."""
    fs, path = get_filesystem(location)
    if any(flag in mode for flag in "wa"):
        parent = posixpath.dirname(path)
        if parent:
            fs.makedirs(parent, exist_ok=True)
    return fs.open(path, mode, **kwargs)


def read_bytes(location: str) -> bytes:
    with open_file(location, "rb") as f:
        return f.read()


def write_bytes(location: str, data: bytes) -> None:
    with open_file(location, "wb") as f:
        f.write(data)


def read_text(location: str) -> str:
    return read_bytes(location).decode("utf-8")


def write_text(location: str, text: str) -> None:
    write_bytes(location, text.encode("utf-8"))


def open_text_for_append(location: str, mode: str = "a") -> io.TextIOBase:
    """A text stream for a log file; ``mode`` is ``'w'`` (new) or ``'a'`` (continue)."""
    if mode not in ("w", "a"):
        raise ValueError(f"log file mode must be 'w' or 'a', got {mode!r}")
    fs, path = get_filesystem(location)
    parent = posixpath.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    if mode == "a" and not fs.exists(path):
        mode = "w"
    return fs.open(path, mode, encoding="utf-8")


__all__ = ["set_storage_options", "is_url", "get_filesystem", "join", "makedirs", "exists",
           "open_file", "read_bytes", "write_bytes", "read_text", "write_text",
           "open_text_for_append", "fsspec"]
