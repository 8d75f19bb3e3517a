"""The pyarrow bridge: the same storage location as a ``pyarrow.fs`` filesystem for Ray.

This module owns handing Ray Train (``RunConfig(storage_path=..., storage_filesystem=...)``)
and Ray Data the filesystem raytrainer itself uses, built with the same options, so both see
the same bucket, endpoint and credentials, and with the same retry policy (``retry.py``), so
Ray's own writes (its checkpoint manager snapshot, its marker files) survive the storage
blips raytrainer's writes survive, and fail as clearly when storage is gone for good.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any, TypeVar

import pyarrow
import pyarrow.fs

from .location import get_filesystem, is_local, is_object_store
from .redaction import describe
from .retry import call_with_retries
from .streams import OutputStream

T = TypeVar("T")


class RetryingFSSpecHandler(pyarrow.fs.FSSpecHandler):
    """``FSSpecHandler`` whose every operation goes through :func:`call_with_retries`.

    Transient failures (connection errors, timeouts, 5xx, throttling) are retried with the
    process's retry policy; the final failure is a ``StorageError`` naming the location.
    ``create_dir`` does nothing on object stores (as ``storage.makedirs``): a missing bucket
    is reported by the first write, never created.
    Output streams are spooled to a local temporary file and uploaded in one retried upload on
    close; sequential input streams are downloaded (retried) to a local temporary file first,
    so a blip in the middle of a read is retried too. Random-access files (Parquet) are opened
    with retries and read through fsspec.
    """

    def _location(self, path: str) -> str:
        protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        return f"{protocol}://{path.lstrip('/')}"

    def _retried(self, what: str, path: str, fn: Callable[..., T], *args: Any) -> T:
        return call_with_retries(fn, *args, description=f"{what} {describe(self._location(path))}")

    def get_file_info(self, paths: list[str]) -> list[pyarrow.fs.FileInfo]:
        one = super().get_file_info
        return [self._retried("get the info of", path, one, [path])[0] for path in paths]

    def get_file_info_selector(self, selector: pyarrow.fs.FileSelector
                               ) -> list[pyarrow.fs.FileInfo]:
        return self._retried("list", selector.base_dir, self._select, selector)

    def _select(self, selector: pyarrow.fs.FileSelector) -> list[pyarrow.fs.FileInfo]:
        try:
            self._require(selector.base_dir, "directory")
        except FileNotFoundError:
            if selector.allow_not_found:
                return []
            raise
        base = selector.base_dir.strip("/")
        found = self.fs.find(selector.base_dir, maxdepth=None if selector.recursive else 1,
                             withdirs=True, detail=True)
        return [self._create_file_info(path, info) for path, info in found.items()
                if path.strip("/") != base]

    def _require(self, path: str, kind: str) -> None:
        """Raise unless ``path`` is a ``kind`` ('file' or 'directory'). fsspec's ``isfile``,
        ``isdir`` and ``exists`` (which ``FSSpecHandler`` uses) answer False on any error,
        which would turn a blip into a missing file; ``info`` raises it, so it is retried."""
        if self.fs.info(path)["type"] != kind:
            error = IsADirectoryError if kind == "file" else NotADirectoryError
            raise error(f"{self._location(path)} is not a {kind}")

    def create_dir(self, path: str, recursive: bool) -> None:
        if is_object_store(self.fs):
            return  # keys need no directories, and s3fs's mkdir would create a missing bucket
        self._retried("create directory", path, super().create_dir, path, recursive)

    def delete_dir(self, path: str) -> None:
        self._retried("remove directory", path, super().delete_dir, path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool) -> None:
        if path.strip("/") == "":
            raise ValueError(f"delete_dir_contents called on path {path!r}")
        self._retried("remove what is in", path, self._delete_contents, path, missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        self._retried("remove what is in", "/", self._delete_contents, "/", False)

    def _delete_contents(self, path: str, missing_dir_ok: bool) -> None:
        try:
            entries = self.fs.ls(path, detail=True)
        except FileNotFoundError:
            if missing_dir_ok:
                return
            raise
        for entry in entries:
            if entry["name"].strip("/") != path.strip("/"):
                self.fs.rm(entry["name"], recursive=entry["type"] == "directory")

    def delete_file(self, path: str) -> None:
        self._retried("remove", path, self._delete_file, path)

    def _delete_file(self, path: str) -> None:
        self._require(path, "file")
        self.fs.rm(path)

    def move(self, src: str, dest: str) -> None:
        self._retried(f"move {describe(self._location(src))} to", dest, super().move, src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        self._retried(f"copy {describe(self._location(src))} to", dest, super().copy_file, src,
                      dest)

    def open_input_stream(self, path: str) -> pyarrow.NativeFile:
        fd, temp = tempfile.mkstemp(prefix="raytrainer-download-")
        os.close(fd)
        try:
            self._retried("read", path, self._download, path, temp)
            local = open(temp, "rb")  # noqa: SIM115 - pyarrow closes the stream
        finally:
            os.unlink(temp)  # the open file stays readable until closed
        return pyarrow.PythonFile(local, mode="r")

    def _download(self, path: str, temp: str) -> None:
        self._require(path, "file")
        self.fs.get_file(path, temp)

    def open_input_file(self, path: str) -> pyarrow.NativeFile:
        return self._retried("open", path, self._open_input_file, path)

    def _open_input_file(self, path: str) -> pyarrow.NativeFile:
        self._require(path, "file")
        return pyarrow.PythonFile(self.fs.open(path, mode="rb"), mode="r")

    def open_output_stream(self, path: str, metadata: dict | None) -> pyarrow.NativeFile:
        fd, temp = tempfile.mkstemp(prefix="raytrainer-upload-")
        os.close(fd)

        def upload(finished: str) -> None:
            self._retried("write", path, self.fs.put_file, finished, path)
            self.fs.invalidate_cache(path)

        return pyarrow.PythonFile(OutputStream(temp, upload, self._location(path)), mode="w")

    def open_append_stream(self, path: str, metadata: dict | None) -> pyarrow.NativeFile:
        return self._retried("open for appending", path, super().open_append_stream, path,
                             metadata)


def to_pyarrow(location: Any, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """``(pyarrow_filesystem, path)`` for a location.

    Local paths (plain or ``file://``) give ``pyarrow.fs.LocalFileSystem()`` and the absolute
    path; any other location gives ``PyFileSystem(RetryingFSSpecHandler(fs))`` over the fsspec
    filesystem and fsspec's path (``bucket/key`` for ``s3://bucket/key``, no protocol).

    Example:
        >>> fs, path = to_pyarrow("s3://bucket/runs")  # doctest: +SKIP
        >>> RunConfig(storage_path=path, storage_filesystem=fs)  # doctest: +SKIP
    """
    fs, path = get_filesystem(location, storage_options)
    if is_local(fs):
        return pyarrow.fs.LocalFileSystem(), os.path.abspath(path)
    return pyarrow.fs.PyFileSystem(RetryingFSSpecHandler(fs)), path


__all__ = ["RetryingFSSpecHandler", "to_pyarrow"]
