"""Streams: binary output/input streams and append-mode text streams on any location.

This module owns writing a file incrementally so that it is published whole on ``close()``
(:func:`open_output_stream`), reading one incrementally (:func:`open_input_stream`), and the
append-mode text stream behind the per-rank log file and ``scalars.json``
(:func:`open_text_for_append`).

Object stores cannot append, so a remote log is written to a local temporary file and the whole
file is uploaded on ``flush()`` at most every ``sync_interval`` seconds (:func:`set_sync_interval`,
default 10 s), on ``close()``, and at interpreter exit. Durability limit: a process that dies
without closing the stream (killed, ``os._exit``, a lost node) loses at most the last
``sync_interval`` seconds of lines on such a location. Local paths and ``memory://`` append for
real and lose nothing that was flushed. Local copies are removed on close, at interpreter exit
(after a failure too) and, for processes killed before either, by the next process on the
machine that opens a remote log.
"""
from __future__ import annotations

import atexit
import glob
import io
import os
import posixpath
import tempfile
import time
import warnings
import weakref
from collections.abc import Callable
from typing import IO, Any

from fsspec import AbstractFileSystem

from .errors import StorageError, is_missing, storage_error
from .files import get_file, local_temp_path, open_file, publish_local
from .location import get_filesystem, is_local, is_object_store
from .redaction import describe
from .retry import call_with_retries

_APPENDS_NATIVELY = ("file", "local", "memory")
_sync_interval = 10.0
_exiting = False
_open_synced: weakref.WeakSet[SyncedTextFile] = weakref.WeakSet()
# Local copies of remote logs are named raytrainer-log-<pid>-...; renamed when kept after a
# failed upload, so that the sweep of dead processes' copies leaves them alone.
_SPOOL_PREFIX = "raytrainer-log-"
_UNSENT_PREFIX = "raytrainer-unsent-log-"
_swept = False


def set_sync_interval(seconds: float) -> float:
    """Set the default upload interval of remote append streams; return the previous one."""
    global _sync_interval
    if seconds < 0:
        raise ValueError(f"set_sync_interval: seconds must be >= 0, got {seconds}")
    previous, _sync_interval = _sync_interval, float(seconds)
    return previous


class OutputStream(io.RawIOBase):
    """A binary write stream whose file is published whole when it is closed.

    Data goes to a local temporary file; ``close()`` (or leaving a ``with`` block normally)
    publishes it, ``abort()`` (or leaving a ``with`` block by an exception, or dropping the
    stream unclosed) discards it. Nothing is visible at the location before ``close()``.
    """

    def __init__(self, temp: str, publish: Callable[[str], None], location: str):
        super().__init__()
        self._temp = temp
        self._publish = publish
        self.location = location
        try:
            self._file: IO[bytes] = open(temp, "wb")  # closed in close() or abort()
        except OSError as exc:
            raise storage_error(exc, f"write {describe(location)}") from exc

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        """Write ``data`` (any bytes-like object); returns its size in bytes.

        Raises:
            StorageError: The write failed (e.g. the disk is full), naming the location.
        """
        if self.closed:
            raise ValueError(f"write to a closed stream for {describe(self.location)}")
        try:
            self._file.write(data)
        except OSError as exc:
            raise storage_error(exc, f"write {describe(self.location)}") from exc
        return memoryview(data).nbytes

    def tell(self) -> int:
        return self._file.tell()

    def flush(self) -> None:
        if not self._file.closed:
            self._file.flush()

    def close(self) -> None:
        """Publish the file at the location (raises ``StorageError`` if that fails)."""
        if self.closed:
            return
        try:
            self._file.close()
            self._publish(self._temp)
        except StorageError:
            raise
        except OSError as exc:
            raise storage_error(exc, f"write {describe(self.location)}") from exc
        finally:
            self._discard_temp()
            super().close()

    def abort(self) -> None:
        """Discard everything written; the location is left as it was."""
        if self.closed:
            return
        self._file.close()
        self._discard_temp()
        super().close()

    def _discard_temp(self) -> None:
        if os.path.exists(self._temp):
            os.unlink(self._temp)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        # An unclosed stream must never publish half a file.
        if hasattr(self, "_file") and not self.closed:
            self.abort()


def open_output_stream(location: str, durable: bool = True) -> OutputStream:
    """A binary write stream to ``location``; its data is durable once it is closed.

    On local disk the file is written under a hidden temporary name next to it, fsync'ed and
    renamed into place; elsewhere it is spooled to a local temporary file (``$TMPDIR``) and
    uploaded in one retried upload (multipart for large files) on close.

    Args:
        location: Where the file appears on ``close()``.
        durable: On local disk, fsync the file (and its directory) when publishing it, so it
            survives a power loss. ``False`` only renames it into place: still all-or-nothing
            for readers, for callers that verify content on read (checkpoint CRC-32s). Object
            stores are durable once an upload returns either way.

    Example:
        >>> with open_output_stream("s3://bucket/run/model.pt") as f:  # doctest: +SKIP
        ...     torch.save(state, f)
    """
    fs, path = get_filesystem(location)
    if is_local(fs):
        call_with_retries(os.makedirs, os.path.dirname(path), exist_ok=True,
                          description=f"create the parent of {describe(location)}")
        return OutputStream(local_temp_path(path),
                            lambda temp: publish_local(temp, path, durable), location)
    fd, temp = tempfile.mkstemp(prefix="raytrainer-upload-")
    os.close(fd)

    def upload(finished: str) -> None:
        if not is_object_store(fs):
            call_with_retries(fs.makedirs, posixpath.dirname(path), exist_ok=True,
                              description=f"create the parent of {describe(location)}")
        call_with_retries(fs.put_file, finished, path, description=f"write {describe(location)}")
        fs.invalidate_cache(path)

    return OutputStream(temp, upload, location)


def open_input_stream(location: str) -> IO[bytes]:
    """A binary read stream of the file at ``location`` (opening it is retried)."""
    return open_file(location, "rb")


class SyncedTextFile(io.TextIOWrapper):
    """A UTF-8 text stream on a local temporary file that is uploaded whole to a remote
    location on ``flush()`` (at most every ``sync_interval`` seconds), ``sync()`` and
    ``close()``, whenever something new was written. Made by :func:`open_text_for_append` for
    stores that cannot append; the filesystem (endpoint, credentials) is fixed when it opens.
    """

    def __init__(self, temp: str, location: str, sync_interval: float,
                 fs: AbstractFileSystem, path: str):
        self._temp = temp
        self._fs, self._path = fs, path
        self.location = location
        self.sync_interval = sync_interval
        self._last_sync = float("-inf")
        self._syncing = False
        self._dirty = True
        super().__init__(open(temp, "ab"), encoding="utf-8")  # closed in close()
        _open_synced.add(self)

    def write(self, text: str) -> int:
        self._dirty = True
        return super().write(text)

    def flush(self) -> None:
        """Write buffered text to the temporary file; upload it if ``sync_interval`` passed.

        A failed periodic upload warns and is retried at a later flush; ``close()`` raises.
        """
        if self.closed:
            return
        super().flush()
        if self._syncing or time.monotonic() - self._last_sync < self.sync_interval:
            return
        try:
            self.sync()
        except StorageError as exc:
            self._last_sync = time.monotonic()
            warnings.warn(f"{exc}; the log stays in {self._temp} and is uploaded again at a "
                          "later flush", RuntimeWarning, stacklevel=2)

    def sync(self) -> None:
        """Upload the whole file now (if anything was written since the last upload)."""
        if self.closed or self._syncing or not self._dirty:
            return
        super().flush()
        # Retries log through the current logger, which may write to this very stream: the
        # flag keeps that nested flush from starting a second upload.
        self._syncing = True
        try:
            self._dirty = False
            call_with_retries(self._fs.put_file, self._temp, self._path,
                              description=f"upload log {describe(self.location)}",
                              attempts=1 if _exiting else None)
            self._fs.invalidate_cache(self._path)
        except BaseException:
            self._dirty = True
            raise
        finally:
            self._syncing = False
        self._last_sync = time.monotonic()

    def close(self) -> None:
        """Upload the final content, then remove the temporary file.

        Raises:
            StorageError: The upload failed; the message names the local copy, which is kept.
        """
        if self.closed:
            return
        try:
            self.sync()
        except StorageError as exc:
            self._close_locally(keep_temp=True)
            kept = self._temp.replace(_SPOOL_PREFIX, _UNSENT_PREFIX, 1)
            os.replace(self._temp, kept)
            error = StorageError(f"{exc}; the log is kept in {kept}")
            error.transient = getattr(exc, "transient", False)
            raise error from exc
        self._close_locally(keep_temp=False)

    def discard(self) -> None:
        """Close without uploading and delete the local copy."""
        if not self.closed:
            self._close_locally(keep_temp=False)

    def _close_locally(self, keep_temp: bool) -> None:
        self._syncing = True  # the flush inside close() must not upload
        super().close()
        _open_synced.discard(self)
        if not keep_temp and os.path.exists(self._temp):
            os.unlink(self._temp)


def remove_orphaned_spool_files(directory: str | None = None) -> list[str]:
    """Remove the local log copies of processes that no longer run (a killed Ray worker gets
    no chance to remove its own); copies kept after a failed upload are left alone.

    Returns:
        The removed paths.
    """
    removed = []
    for path in glob.glob(os.path.join(directory or tempfile.gettempdir(),
                                       f"{_SPOOL_PREFIX}*-*")):
        pid = os.path.basename(path)[len(_SPOOL_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or _process_runs(int(pid)):
            continue
        try:
            os.unlink(path)
            removed.append(path)
        except FileNotFoundError:
            pass  # another process removed it first
    return removed


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _open_synced_text(location: str, mode: str, sync_interval: float) -> SyncedTextFile:
    global _swept
    if not _swept:
        _swept = True
        remove_orphaned_spool_files()
    fd, temp = tempfile.mkstemp(prefix=f"{_SPOOL_PREFIX}{os.getpid()}-",
                                suffix=f"-{posixpath.basename(location.rstrip('/'))}")
    os.close(fd)
    fresh = mode == "w"
    if mode == "a":
        try:
            get_file(location, temp)
        except StorageError as exc:
            if not is_missing(exc):
                os.unlink(temp)
                raise
            fresh = True
    fs, path = get_filesystem(location)
    stream = SyncedTextFile(temp, location, sync_interval, fs, path)
    if fresh:
        try:
            stream.sync()  # the file exists at once, and an unwritable location fails here
        except BaseException:
            stream.discard()
            raise
    return stream


def open_text_for_append(location: str, mode: str = "a",
                         sync_interval: float | None = None) -> io.TextIOBase:
    """A UTF-8 text stream for a log file; ``mode`` is ``'w'`` (new) or ``'a'`` (continue).

    Local paths and ``memory://`` get a real appending file. Other stores (``s3://`` ...) get a
    :class:`SyncedTextFile`: ``mode='a'`` first downloads the existing file so the log
    continues, and the whole file is uploaded on ``flush()`` at most every ``sync_interval``
    seconds and always on ``close()`` — a crash loses at most ``sync_interval`` seconds of lines.

    Args:
        location: Path or URL of the file.
        mode: ``'w'`` or ``'a'``.
        sync_interval: Seconds between uploads for remote files; default
            :func:`set_sync_interval` (10 s).
    """
    if mode not in ("w", "a"):
        raise ValueError(f"log file mode must be 'w' or 'a', got {mode!r}")
    fs, path = get_filesystem(location)
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
    if not any(protocol in _APPENDS_NATIVELY for protocol in protocols):
        interval = _sync_interval if sync_interval is None else float(sync_interval)
        return _open_synced_text(str(location), mode, interval)
    parent = posixpath.dirname(path)
    if parent:
        call_with_retries(fs.makedirs, parent, exist_ok=True,
                          description=f"create the parent of {describe(location)}")
    return call_with_retries(fs.open, path, mode, encoding="utf-8",
                             description=f"open {describe(location)} for logging")


def _close_open_streams() -> None:
    """Upload remote logs that are still open when the interpreter exits (after a failure
    too) and remove their local copies: one try each, so a storage outage cannot hold the
    process; a copy whose upload fails is kept and named."""
    global _exiting
    _exiting = True
    for stream in list(_open_synced):
        try:
            stream.close()
        except (StorageError, ValueError) as exc:
            warnings.warn(f"could not upload {describe(stream.location)} at exit: {exc}",
                          RuntimeWarning, stacklevel=1)


class _ExitOrderMarker:
    pass


# atexit runs the last registered handler first. s3fs closes its sessions through
# ``weakref.finalize`` callbacks, which run from one atexit handler that weakref registers when
# the first finalizer is made; making one now registers it before ours, so the remote logs are
# uploaded while their filesystems still work, whatever was imported first.
_EXIT_ORDER = _ExitOrderMarker()
weakref.finalize(_EXIT_ORDER, lambda: None)
atexit.register(_close_open_streams)


__all__ = ["OutputStream", "SyncedTextFile", "open_input_stream", "open_output_stream",
           "open_text_for_append", "remove_orphaned_spool_files", "set_sync_interval"]
