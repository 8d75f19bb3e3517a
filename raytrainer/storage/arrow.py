"""The pyarrow bridge: the same storage location as a ``pyarrow.fs`` filesystem for Ray.

This module owns handing Ray Train (``RunConfig(storage_path=..., storage_filesystem=...)``)
and Ray Data the filesystem raytrainer itself uses, built with the same options, so both see
the same bucket, endpoint and credentials.
"""
from __future__ import annotations

import os
from typing import Any

from .location import get_filesystem, is_local


def to_pyarrow(location: Any, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """``(pyarrow_filesystem, path)`` for a location.

    Local paths (plain or ``file://``) give ``pyarrow.fs.LocalFileSystem()`` and the absolute
    path; any other location gives ``PyFileSystem(FSSpecHandler(fs))`` over the fsspec
    filesystem and fsspec's path (``bucket/key`` for ``s3://bucket/key``, no protocol).

    Example:
        >>> fs, path = to_pyarrow("s3://bucket/runs")  # doctest: +SKIP
        >>> RunConfig(storage_path=path, storage_filesystem=fs)  # doctest: +SKIP
    """
    import pyarrow.fs

    fs, path = get_filesystem(location, storage_options)
    if is_local(fs):
        return pyarrow.fs.LocalFileSystem(), os.path.abspath(path)
    return pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(fs)), path


__all__ = ["to_pyarrow"]
