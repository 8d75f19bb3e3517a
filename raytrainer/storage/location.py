"""Locations: turning a path or URL into an fsspec filesystem plus path, and joining paths.

This module owns the mapping ``location → (filesystem, path)`` with the configured options, and
the few facts about a filesystem the operations need (local disk? object store?). It performs
no I/O of its own (building a filesystem object does not contact the store).
"""
from __future__ import annotations

import os
import posixpath
from typing import Any

from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs

from .errors import StorageError
from .options import storage_options_for
from .redaction import describe

# Stores of objects under keys: no real directories, no append, no rename. s3fs's makedirs on
# them would even create a missing bucket, which raytrainer must never do behind a user's back.
_OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss"})


def is_url(location: Any) -> bool:
    """Whether ``location`` has a protocol (``s3://``, ``file://``, ``memory://`` ...)."""
    return "://" in str(location)


def _protocols(fs: AbstractFileSystem) -> tuple[str, ...]:
    return (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)


def is_local(fs: AbstractFileSystem) -> bool:
    """Whether ``fs`` is the local disk."""
    return "file" in _protocols(fs)


def is_object_store(fs: AbstractFileSystem) -> bool:
    """Whether ``fs`` is an object store (S3, GCS, Azure ...) rather than a file system."""
    return any(protocol in _OBJECT_STORES for protocol in _protocols(fs))


def get_filesystem(location: Any,
                   storage_options: dict[str, Any] | None = None
                   ) -> tuple[AbstractFileSystem, str]:
    """Return ``(fs, path)`` for a location; local paths are made absolute.

    Args:
        location: A plain path, ``file://``, ``memory://``, ``s3://bucket/key`` ...
        storage_options: Options for this call, over the defaults (see ``options.py``).

    Raises:
        StorageError: The protocol is unknown, its fsspec implementation is not installed, or
            the options are invalid.
    """
    location = os.fspath(location) if isinstance(location, os.PathLike) else str(location)
    try:
        return url_to_fs(location, **storage_options_for(location, storage_options))
    except ImportError as exc:
        raise StorageError(f"storage: cannot open {describe(location)}: {exc} (the protocol "
                           "needs an extra package)") from exc
    except (ValueError, TypeError) as exc:
        raise StorageError(f"storage: cannot open {describe(location)}: {exc} (expected a "
                           "local path or a URL with a protocol fsspec knows, e.g. file://, "
                           "memory://, s3://, gs://, and valid storage options)") from exc


def join(base: Any, *parts: str) -> str:
    """Join path parts onto a location, keeping its protocol (``s3://b/k`` + ``x`` → ``s3://b/k/x``)."""
    base = str(base)
    if is_url(base):
        protocol, rest = base.split("://", 1)
        return f"{protocol}://" + posixpath.join(rest, *parts) if rest else \
            f"{protocol}://" + posixpath.join(*parts)
    return posixpath.join(base, *parts)


__all__ = ["get_filesystem", "is_local", "is_object_store", "is_url", "join"]
