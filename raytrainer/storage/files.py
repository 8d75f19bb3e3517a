"""Whole-file operations on any location: read, write, list, remove, copy to and from local disk.

This module owns the file operations the engine needs; each goes through ``call_with_retries``
and fails with a ``StorageError`` naming the location. Also: the CRC-32 of a stored file
(:func:`file_crc32`) and the local path behind a location (:func:`local_path`), for callers
with a faster path of their own for local files. Writes are all-or-nothing: on local disk
a file is written under a temporary name and renamed into place, on object stores it is one
upload; a reader never sees half a file.

Listings and existence checks always ask the store: fsspec filesystems cache directory listings
(s3fs answers ``exists`` from a cached listing of the parent), which would hide files written by
other processes, e.g. another rank's checkpoint shard.
"""
from __future__ import annotations

import mmap
import os
import posixpath
import shutil
import uuid
import zlib
from collections.abc import Callable
from typing import Any

from fsspec import AbstractFileSystem

from .errors import is_missing
from .location import get_filesystem, is_local, is_object_store, join
from .redaction import describe
from .retry import call_with_retries

BytesLike = bytes | bytearray | memoryview


def _fresh(fs: AbstractFileSystem, path: str) -> None:
    """Drop cached listings of ``path`` and its parents, so the next call asks the store."""
    fs.invalidate_cache(path)


def makedirs(location: str) -> None:
    """Create a directory and its parents (no error if it exists).

    On object stores this does nothing: they have no directories, a key's "parents" exist as
    soon as it does, and a missing bucket is an error to report, never something to create.
    """
    fs, path = get_filesystem(location)
    if is_object_store(fs):
        return
    call_with_retries(fs.makedirs, path, exist_ok=True,
                      description=f"create directory {describe(location)}")


def exists(location: str) -> bool:
    """Whether a file or directory exists at ``location``."""
    fs, path = get_filesystem(location)

    def _exists() -> bool:
        _fresh(fs, path)
        return fs.exists(path)

    return call_with_retries(_exists, description=f"check {describe(location)}")


def is_dir(location: str) -> bool:
    """Whether ``location`` is a directory (on object stores: a prefix with keys under it)."""
    fs, path = get_filesystem(location)

    def _is_dir() -> bool:
        _fresh(fs, path)
        return fs.isdir(path)

    return call_with_retries(_is_dir, description=f"check {describe(location)}")


def file_size(location: str) -> int:
    """Size of the file at ``location`` in bytes.

    Raises:
        StorageNotFoundError: There is nothing there.
        StorageError: It is a directory.
    """
    fs, path = get_filesystem(location)

    def _size() -> int:
        _fresh(fs, path)
        info = fs.info(path)
        if info.get("type") == "directory":
            raise IsADirectoryError(f"{describe(location)} is a directory, not a file")
        return int(info["size"])

    return call_with_retries(_size, description=f"get the size of {describe(location)}")


def _entry(location: str, info: dict[str, Any]) -> dict[str, Any]:
    name = posixpath.basename(str(info["name"]).rstrip("/"))
    is_directory = info.get("type") == "directory"
    return {"name": name, "path": join(str(location).rstrip("/"), name),
            "size": 0 if is_directory else int(info.get("size") or 0),
            "type": "directory" if is_directory else "file"}


def listdir(location: str) -> list[dict[str, Any]]:
    """The entries directly under a directory, sorted by name.

    Returns:
        One dict per entry: ``name`` (basename), ``path`` (``location`` joined with the name,
        same protocol), ``size`` (bytes; 0 for directories), ``type`` (``'file'`` or
        ``'directory'``). An empty list if the directory does not exist.

    Raises:
        StorageError: ``location`` is a file, its bucket does not exist, or listing failed.
    """
    fs, path = get_filesystem(location)
    own = path.rstrip("/")

    def _list() -> list[dict[str, Any]]:
        _fresh(fs, path)
        try:
            infos = fs.ls(path, detail=True)
        except FileNotFoundError as exc:
            if is_missing(exc):
                return []
            raise
        children = [info for info in infos if str(info["name"]).rstrip("/") != own]
        if not children and any(info.get("type") == "file" for info in infos):
            raise NotADirectoryError(f"{describe(location)} is a file, not a directory")
        return children

    entries = [_entry(location, info)
               for info in call_with_retries(_list, description=f"list {describe(location)}")]
    return sorted(entries, key=lambda entry: entry["name"])


def remove(location: str, recursive: bool = False) -> None:
    """Delete a file, or a directory with everything under it when ``recursive``.

    Nothing happens if ``location`` does not exist.

    Raises:
        StorageError: ``location`` is a directory and ``recursive`` is False (every backend
            refuses; S3 would otherwise silently delete nothing), or the delete failed.
    """
    fs, path = get_filesystem(location)

    def _remove() -> None:
        _fresh(fs, path)
        if not recursive and fs.isdir(path):
            raise IsADirectoryError(f"{describe(location)} is a directory: pass recursive=True "
                                    "to remove it with everything under it")
        try:
            fs.rm(path, recursive=recursive)
        except FileNotFoundError as exc:
            if not is_missing(exc):
                raise
        finally:
            _fresh(fs, path)

    call_with_retries(_remove, description=f"remove {describe(location)}")


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def local_temp_path(path: str) -> str:
    """A fresh hidden name next to ``path`` (same directory, so a rename is atomic)."""
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}.{uuid.uuid4().hex[:12]}.tmp")


def publish_local(temp: str, path: str, durable: bool = True) -> None:
    """Make the finished file ``temp`` visible as ``path`` in one rename; with ``durable``,
    fsync it first (and the directory after) so it also survives a power loss."""
    if durable:
        with open(temp, "rb+") as f:
            os.fsync(f.fileno())
    os.replace(temp, path)
    if durable:
        _fsync_dir(os.path.dirname(path))


def _write_local(path: str, fill: Callable[[str], None], durable: bool = True) -> None:
    """Create ``path`` atomically: ``fill(temp)`` writes the content under a temporary name."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    temp = local_temp_path(path)
    try:
        fill(temp)
        publish_local(temp, path, durable)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def _write_data(temp: str, data: BytesLike) -> None:
    with open(temp, "wb") as f:
        f.write(data)


def read_bytes(location: str) -> bytes:
    """The whole content of the file at ``location``."""
    fs, path = get_filesystem(location)
    return call_with_retries(fs.cat_file, path, description=f"read {describe(location)}")


def write_bytes(location: str, data: BytesLike, durable: bool = True) -> None:
    """Write a whole file, replacing any old one; it appears complete or not at all.

    Args:
        location: Where to write.
        data: The content.
        durable: On local disk, fsync before the file becomes visible. Callers that verify
            content on read (checkpoint files carry CRC-32s) can skip the cost.
    """
    fs, path = get_filesystem(location)
    description = f"write {describe(location)}"
    if is_local(fs):
        call_with_retries(_write_local, path, lambda temp: _write_data(temp, data), durable,
                          description=description)
        return
    payload = data if isinstance(data, bytes) else bytes(data)
    if not is_object_store(fs):
        call_with_retries(fs.makedirs, posixpath.dirname(path), exist_ok=True,
                          description=f"create the parent of {describe(location)}")
    call_with_retries(fs.pipe_file, path, payload, description=description)
    _fresh(fs, path)


def local_path(location: str) -> str | None:
    """The local filesystem path of ``location`` if it is on local disk, else None.

    For callers whose library reads or writes a local path faster than a stream (``torch.load``
    of a path reads straight into the tensors); anything else goes through this package.
    """
    fs, path = get_filesystem(location)
    return path if is_local(fs) else None


_CRC_CHUNK = 8 << 20


def _local_crc32(path: str) -> tuple[int, int]:
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return 0, 0
        # Everything this package writes is replaced by rename, never truncated in place, so
        # the mapping stays valid while it is read (truncating a mapped file would fault).
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return size, zlib.crc32(mapped)


def file_crc32(location: str) -> tuple[int, int]:
    """The size and CRC-32 of the file at ``location``: ``(size, crc32)``.

    Local files are read through a memory map (so the file must not be truncated in place
    meanwhile: files written by this package never are), others streamed in chunks. zlib
    releases the GIL, so this can run on a helper thread beside other work (e.g. parsing the
    same file).

    Raises:
        StorageNotFoundError: There is no file there.
    """
    fs, path = get_filesystem(location)
    description = f"checksum {describe(location)}"
    if is_local(fs):
        return call_with_retries(_local_crc32, path, description=description)

    def _remote() -> tuple[int, int]:
        size, crc = 0, 0
        _fresh(fs, path)
        with fs.open(path, "rb") as f:
            while chunk := f.read(_CRC_CHUNK):
                size, crc = size + len(chunk), zlib.crc32(chunk, crc)
        return size, crc

    return call_with_retries(_remote, description=description)


def read_text(location: str) -> str:
    """The content of a UTF-8 text file."""
    return read_bytes(location).decode("utf-8")


def write_text(location: str, text: str) -> None:
    """Write a UTF-8 text file (all-or-nothing, like :func:`write_bytes`)."""
    write_bytes(location, text.encode("utf-8"))


def put_file(local_path: str | os.PathLike, location: str) -> None:
    """Upload (or copy) the local file ``local_path`` to ``location``, replacing it whole."""
    local_path = os.fspath(local_path)
    fs, path = get_filesystem(location)
    description = f"upload {local_path} to {describe(location)}"
    if is_local(fs):
        call_with_retries(_write_local, path, lambda temp: shutil.copyfile(local_path, temp),
                          description=description)
        return
    if not is_object_store(fs):
        call_with_retries(fs.makedirs, posixpath.dirname(path), exist_ok=True,
                          description=f"create the parent of {describe(location)}")
    call_with_retries(fs.put_file, local_path, path, description=description)
    _fresh(fs, path)


def get_file(location: str, local_path: str | os.PathLike) -> None:
    """Download (or copy) the file at ``location`` to ``local_path``, creating its parents.

    ``local_path`` appears complete or not at all.
    """
    local_path = os.path.abspath(os.fspath(local_path))
    fs, path = get_filesystem(location)
    call_with_retries(_write_local, local_path, lambda temp: fs.get_file(path, temp),
                      description=f"download {describe(location)} to {local_path}")


def open_file(location: str, mode: str = "rb", **kwargs: Any) -> Any:
    """Open a file at a location with fsspec (parents are created for writes, except on object
    stores, which have no directories).

    Prefer :func:`~raytrainer.storage.streams.open_output_stream` for writing: an fsspec file
    opened for writing on local disk is visible while it is being written.
    """
    fs, path = get_filesystem(location)
    if any(flag in mode for flag in "wax") and not is_object_store(fs):
        parent = posixpath.dirname(path)
        if parent:
            call_with_retries(fs.makedirs, parent, exist_ok=True,
                              description=f"create the parent of {describe(location)}")
    return call_with_retries(fs.open, path, mode, description=f"open {describe(location)}",
                             **kwargs)


__all__ = ["exists", "file_crc32", "file_size", "get_file", "is_dir", "listdir", "local_path",
           "makedirs", "open_file", "put_file", "read_bytes", "read_text", "remove", "write_bytes",
           "write_text"]
