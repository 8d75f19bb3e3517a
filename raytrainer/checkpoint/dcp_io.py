"""DCP's storage readers and writers, made safe to load and checked end to end.

``torch.distributed.checkpoint`` (DCP) reads ``.metadata`` with a plain ``pickle.load`` and the
non-tensor entries of its ``.distcp`` files with ``torch.load(weights_only=False)``: a crafted
file would run code. And it trusts every byte of its shard files. This module gives DCP:

- writers (:func:`writer`) whose files are checksummed as DCP writes them: every stream DCP
  opens for writing counts its bytes and their CRC-32, so the ``done`` marker records a CRC-32
  per shard file without reading anything back. The CRC-32 is zlib's, computed by zlib-ng when
  it is installed (a dependency of raytrainer: the same values, about 5x faster here, which
  keeps the checksum within about 5 % of a save to the page cache; see
  ``benchmarks/shard_checksums.py``), else by the standard library's ``zlib``;
- readers (:func:`reader`) that open only files the commit record lists, check each one's
  CRC-32 before DCP reads from it (a local file through a memory map, then read where it lies; a
  remote one is downloaded once, checked and served from memory), and
  read ``.metadata`` with a restricted unpickler that builds only DCP's metadata classes and
  the few torch types they hold (Python's "restricting globals" pattern: torch's weights-only
  unpickler reads pickle protocol 2 only, and DCP writes protocol 4);
- load planners (:func:`load_planner`) that read non-tensor entries with
  ``torch.load(weights_only=True)``.

This is the one module that touches DCP's storage classes (the fsspec ones live in a private
torch module).
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import mmap
import os
import pathlib
import pickle
from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import filesystem as dcp_filesystem
from torch.distributed.checkpoint import metadata as dcp_metadata
from torch.distributed.checkpoint._fsspec_filesystem import FsspecReader, FsspecWriter
from torch.distributed.checkpoint._traverse import set_element
from torch.distributed.checkpoint.default_planner import (
    DefaultLoadPlanner,
    _EmptyStateDictLoadPlanner,
)

from .. import storage
from .envelope import CheckpointError, FileRecord

try:  # zlib's CRC-32 (the same values), vectorised
    from zlib_ng.zlib_ng import crc32
except ImportError:  # pragma: no cover - zlib-ng is a dependency
    from zlib import crc32

METADATA_FILE = ".metadata"


# ---- writing ----------------------------------------------------------------------------
class _ChecksummedStream:
    """A stream DCP writes one file into: size and CRC-32 kept on the way, the rest (``tell``
    for item offsets, ``close``, ``fileno`` for fsync) passed through.

    The CRC-32 is computed in the writing thread, before each chunk is passed on: at zlib-ng's
    speed a helper thread per chunk costs more than it saves (see ``benchmarks/README.md``).
    """

    def __init__(self, stream: Any):
        self._stream = stream
        self.size = 0
        self.crc32 = 0

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.crc32 = crc32(view, self.crc32)
        self._stream.write(view)
        self.size += view.nbytes
        return view.nbytes

    def flush(self) -> None:
        self._stream.flush()

    def tell(self) -> int:
        return self._stream.tell()

    def close(self) -> None:
        self._stream.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _ChecksummingFileSystem:
    """Stands in for a DCP writer's ``fs``: ``records`` receives, by file name, the size and
    CRC-32 of every file written through it (``.metadata`` under its final name: DCP writes
    it as ``.metadata.tmp`` and renames it)."""

    def __init__(self, inner: Any):
        self._inner = inner
        self.records: dict[str, FileRecord] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @contextlib.contextmanager
    def create_stream(self, path: Any, mode: str) -> Iterator[Any]:
        with self._inner.create_stream(path, mode) as stream:
            if "w" not in mode:
                yield stream
                return
            counted = _ChecksummedStream(stream)
            yield counted
        self.records[_name(path)] = FileRecord(counted.size, counted.crc32)

    def rename(self, path: Any, new_path: Any) -> None:
        self._inner.rename(path, new_path)
        record = self.records.pop(_name(path), None)
        if record is not None:
            self.records[_name(new_path)] = record


def _name(path: Any) -> str:
    return os.path.basename(os.fspath(path).rstrip("/"))


def writer(directory: str) -> Any:
    """A DCP storage writer for ``directory`` (a path or URL) whose ``fs.records`` holds, once
    the save is done, the size and CRC-32 of every file it wrote.

    Files are not fsynced one by one (``sync_files=False``: on object stores the default would
    ``os.sync()`` the whole host per file); the commit record, written last, is.
    """
    local = storage.local_path(directory)
    if local is not None:
        created = dcp.FileSystemWriter(local, sync_files=False)
    else:
        created = FsspecWriter(directory, sync_files=False,
                               **storage.storage_options_for(directory))
    created.fs = _ChecksummingFileSystem(created.fs)
    return created


def written_records(storage_writer: Any) -> dict[str, FileRecord]:
    """What a :func:`writer` wrote: file name -> size and CRC-32."""
    return dict(storage_writer.fs.records)


# ---- reading ----------------------------------------------------------------------------
class ShardChecksumError(CheckpointError):
    """A file of a sharded checkpoint does not match its commit record."""


class MetadataRefused(CheckpointError):
    """DCP's ``.metadata`` names something other than DCP's metadata classes."""


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """What a DCP ``.metadata`` may name: DCP's metadata dataclasses and the torch types in
    them (``torch.Size``, dtypes, layouts, the memory-format enum) and the path DCP stores as
    ``storage_meta.checkpoint_id``. Calling any of these builds a value and runs nothing."""
    allowed: dict[tuple[str, str], Any] = {}
    for module, names in (
            (dcp_metadata, ("Metadata", "TensorStorageMetadata", "BytesStorageMetadata",
                            "ChunkStorageMetadata", "TensorProperties", "MetadataIndex",
                            "StorageMeta", "_MEM_FORMAT_ENCODING")),
            (dcp_filesystem, ("_StorageInfo",))):
        for name in names:
            if hasattr(module, name):
                allowed[(module.__name__, name)] = getattr(module, name)
    allowed[("torch", "Size")] = torch.Size
    allowed[("torch.serialization", "_get_layout")] = torch.serialization._get_layout
    allowed.update({("torch", name): value for name, value in vars(torch).items()
                    if isinstance(value, torch.dtype)})
    for name in ("PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath"):
        allowed[("pathlib", name)] = getattr(pathlib, name)
    allowed[("collections", "OrderedDict")] = collections.OrderedDict
    return allowed


_ALLOWED = _allowed_globals()


_BUILDABLE = {cls: frozenset(field.name for field in dataclasses.fields(cls))
              for cls in _ALLOWED.values()
              if isinstance(cls, type) and dataclasses.is_dataclass(cls)}


class _MetadataUnpickler(pickle._Unpickler):
    """Builds only the globals of :func:`_allowed_globals`; anything else (``builtins.exec``,
    ``os.system``, a class with a ``__reduce__``) is refused before it is looked up.

    Pickle's ``BUILD`` opcode sets attributes on whatever object is on the stack, a class
    included (``GLOBAL pathlib.PosixPath`` then ``BUILD`` would rewrite ``Path`` for the whole
    process before the file is refused). Here it only fills the fields of an instance of one
    of DCP's metadata dataclasses (or calls that class's own ``__setstate__``), which is all
    DCP's pickles use it for. The pure-Python
    unpickler is used because the C one cannot restrict an opcode; ``.metadata`` files are
    small. Persistent ids are refused by the base class itself."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(
                f"it names {module}.{name}, which is not one of DCP's metadata classes")
        return found

    def load_build(self) -> None:
        state = self.stack.pop()
        target = self.stack[-1]
        fields = _BUILDABLE.get(type(target))
        if fields is None:
            raise pickle.UnpicklingError(
                f"it sets the state of a {_described(target)}, which is not an instance of "
                "one of DCP's metadata classes")
        own = vars(type(target)).get("__setstate__")
        if own is not None:  # DCP's own (TensorProperties unpacks a tuple)
            own(target, state)
            return
        if not isinstance(state, dict) or not set(state) <= fields:
            unknown = sorted(map(repr, set(state) - fields)) if isinstance(state, dict) else \
                [f"a {type(state).__name__}"]
            raise pickle.UnpicklingError(
                f"it sets {', '.join(unknown)} on a {type(target).__name__}, which has only "
                f"the fields {', '.join(sorted(fields))}")
        vars(target).update(state)

    dispatch[pickle.BUILD[0]] = load_build


def _described(value: Any) -> str:
    if isinstance(value, type):
        return f"class {value.__module__}.{value.__qualname__}"
    return type(value).__name__


def load_metadata(data: bytes, where: str) -> Any:
    """DCP's ``Metadata`` from the bytes of a ``.metadata`` file, without running code.

    Raises:
        MetadataRefused: It names anything but DCP's metadata classes, or does not parse.
    """
    try:
        metadata = _MetadataUnpickler(io.BytesIO(data)).load()
    except Exception as exc:  # UnpicklingError, EOFError, a bad argument to an allowed class
        raise MetadataRefused(f"{where} is refused ({exc}); loading a checkpoint never runs "
                              "code") from None
    if not isinstance(metadata, dcp_metadata.Metadata):
        raise MetadataRefused(f"{where} is refused: it holds a {type(metadata).__name__}, not "
                              "DCP's Metadata")
    return metadata


class _VerifyingFileSystem:
    """Stands in for a DCP reader's ``fs``: opens for reading only the files ``expected``
    lists (name -> commit-record entry), each directly inside the checkpoint's folder ``root``
    (the paths come from ``.metadata``: ``../other/__0_0.distcp`` is refused, not matched by its
    name), and checks each one's size and CRC-32 (where recorded) before it is read."""

    def __init__(self, inner: Any, root: Any, expected: Mapping[str, Mapping], where: str,
                 local: bool):
        self._inner = inner
        self._root = root
        self._expected = expected
        self._where = where
        self._local = local

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @contextlib.contextmanager
    def create_stream(self, path: Any, mode: str) -> Iterator[Any]:
        if "r" not in mode or "+" in mode:
            raise CheckpointError(f"{self._where}: a checkpoint is read only")
        name = _name(path)
        info = self._expected.get(name)
        if os.fspath(path) != os.fspath(self._inner.concat_path(self._root, name)):
            raise CheckpointError(f"{self._where}: {os.fspath(path)} is not inside the "
                                  "checkpoint (its .metadata points outside it)")
        if info is None:
            raise CheckpointError(f"{self._where}/{name} is not a file of the checkpoint (its "
                                  "commit record does not list it)")
        with self._inner.create_stream(path, mode) as stream:
            if self._local:  # checked through a memory map, then read where it lies
                self._check(name, info, *_mapped_crc32(stream))
                yield stream
            else:  # one download: checked, then served from memory
                data = stream.read()
                self._check(name, info, len(data), crc32(data))
                yield io.BytesIO(data)

    def _check(self, name: str, info: Mapping, size: int, crc: int) -> None:
        where = f"{self._where}/{name}"
        if size != info["size"]:
            raise ShardChecksumError(f"{where} has {size} bytes but the commit record says "
                                     f"{info['size']} (truncated or overwritten)")
        expected = info.get("crc32")
        if expected is not None and crc != expected:
            raise ShardChecksumError(f"{where} is corrupt: its CRC-32 is {crc:#010x}, the "
                                     f"commit record says {expected:#010x}")


def _mapped_crc32(stream: Any) -> tuple[int, int]:
    """Size and CRC-32 of an open local file, read through a memory map (no copy)."""
    size = os.fstat(stream.fileno()).st_size
    if not size:
        return 0, 0
    with mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        return size, crc32(mapped)


class _CheckedReading:
    """What both readers share: the verifying ``fs`` and a ``read_metadata`` that reads
    ``.metadata`` once, checked and through :func:`load_metadata`."""

    def _set_up_checks(self, expected: Mapping[str, Mapping], where: str, local: bool) -> None:
        self.fs = _VerifyingFileSystem(self.fs, self.path, expected, where, local)
        self._where = where
        self._metadata: Any = None

    def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
        if self._metadata is None:
            path = self._get_metadata_path(kwargs.get("rank"))
            with self.fs.create_stream(path, "rb") as stream:
                data = stream.read()
            metadata = load_metadata(data, f"{self._where}/{_name(path)}")
            if getattr(metadata, "storage_meta", None) is None:
                metadata.storage_meta = dcp_metadata.StorageMeta()
            metadata.storage_meta.load_id = self.load_id
            self._metadata = metadata
        return self._metadata


class _CheckedFileSystemReader(_CheckedReading, dcp.FileSystemReader):
    pass


class _CheckedFsspecReader(_CheckedReading, FsspecReader):
    pass


def reader(directory: str, expected: Mapping[str, Mapping]) -> Any:
    """A DCP storage reader for ``directory`` that opens only the files of ``expected`` (file
    name -> its commit-record entry, ``{'size': ..., 'crc32': ...}``) and checks each before
    it is read (:class:`ShardChecksumError`), and whose metadata never runs code
    (:class:`MetadataRefused`)."""
    where = storage.describe(directory)
    local = storage.local_path(directory)
    if local is not None:
        created = _CheckedFileSystemReader(local)
    else:
        created = _CheckedFsspecReader(directory, **storage.storage_options_for(directory))
    created._set_up_checks(expected, where, local is not None)
    return created


class _WeightsOnlyBytes:
    """A load planner's ``load_bytes`` with ``torch.load(weights_only=True)`` (DCP's own
    planners load non-tensor entries, such as optimizer hyperparameters, with
    ``weights_only=False``)."""

    def load_bytes(self, read_item: Any, value: io.BytesIO) -> None:
        fqn = read_item.dest_index.fqn
        try:
            loaded = torch.load(value, weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"cannot read the entry {fqn!r}: {exc}") from None
        if self.flatten_state_dict:
            set_element(self.original_state_dict, self.mappings[fqn], loaded)
        else:
            self.state_dict[fqn] = loaded


class _LoadPlanner(_WeightsOnlyBytes, DefaultLoadPlanner):
    pass


class _EmptyStateLoadPlanner(_WeightsOnlyBytes, _EmptyStateDictLoadPlanner):
    pass


def load_planner(everything: bool = False) -> Any:
    """DCP's default load planner (``everything``: the one that reads every stored entry into
    an empty dict), with non-tensor entries read weights-only."""
    return _EmptyStateLoadPlanner() if everything else _LoadPlanner()
