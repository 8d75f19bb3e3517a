"""The full-state backend: whole (unsharded) state as ``torch.save`` files in the envelope.

Files of a full-state checkpoint (single device, DDP, and the small files of every checkpoint):

- ``model.pt`` (rank 0): every ``*state_dict`` entry of the checkpoint (model weights, EMA ...)
- ``optimizer.pt`` (rank 0): the optimizer state, if saved
- ``state.pt`` (rank 0): schedulers, loop position, sampler, message hub, hook extras
- ``rank_<r>.pt`` (every rank): that rank's own state (RNG generators)
- ``meta.json`` (rank 0): counters, seed, config text, world size, format version

Tensor files are read back with ``torch.load(weights_only=True)``, so loading never runs code;
reading a file also checks its CRC-32. A sharded tensor (DTensor) never reaches these files:
it would hold one rank's shard only, so it is refused with a clear error.

I/O: on local disk ``torch.save`` writes each tensor file straight into a hidden temporary file
(its CRC-32 computed on the way), which is then renamed into place; ``torch.load`` reads it back
from its path while a helper thread computes the CRC-32 of the file. On other stores files are
serialized in memory, each while the previous ones upload, and loaded from the downloaded bytes
with the CRC-32 computed beside ``torch.load``.
"""
from __future__ import annotations

import functools
import io
import json
import logging
import pickle
import zlib
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch
from torch.distributed.tensor import DTensor

from .. import storage
from ..logging import print_log
from .envelope import (
    FORMAT_VERSION,
    META_FILE,
    CheckpointError,
    FileRecord,
    _corrupt,
    _in_thread,
    _json_default,
    write_file,
)
from .foreign import load_foreign_checkpoint

MODEL_FILE = "model.pt"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "state.pt"
RANK_STATE_KEY = "rank_state"
_THREADED_CRC_BYTES = 1 << 20
_UPLOADS_IN_FLIGHT = 2
_LARGE_FILE_BYTES = 16 << 20


def rank_file(rank: int) -> str:
    return f"rank_{rank}.pt"


class _CRC32Writer:
    """The file ``torch.save`` writes into: passes each chunk on to ``stream`` and keeps the
    running size and CRC-32 of what went through.

    Chunks of at least ``_THREADED_CRC_BYTES`` (tensor storages) are checksummed on a helper
    thread while they are written; it is joined before ``write`` returns, because the chunk is
    a view of memory that torch may free afterwards.
    """

    def __init__(self, stream: Any):
        self._stream = stream
        self.size = 0
        self.crc32 = 0
        self.failure: BaseException | None = None

    def write(self, data: Any) -> int:
        view = memoryview(data)
        start = self.crc32
        try:
            if view.nbytes >= _THREADED_CRC_BYTES:
                crc = _in_thread(lambda: zlib.crc32(view, start))
                try:
                    self._stream.write(view)
                finally:
                    self.crc32 = crc()
            else:
                self.crc32 = zlib.crc32(view, start)
                self._stream.write(view)
        except BaseException as exc:
            # torch's zip writer hides it behind its own error ("unexpected pos ...")
            self.failure = self.failure or exc
            raise
        self.size += view.nbytes
        return view.nbytes

    def flush(self) -> None:
        self._stream.flush()


def _save_local(location: str, obj: Any) -> FileRecord:
    """``torch.save`` straight into a hidden temporary file next to ``location`` (CRC-32 on the
    way), renamed into place when complete; not fsynced (see :func:`write_file`)."""
    with storage.open_output_stream(location, durable=False) as stream:
        writer = _CRC32Writer(stream)
        try:
            torch.save(obj, writer)
        except Exception:
            if writer.failure is not None:
                raise writer.failure from None  # the real reason (a full disk ...)
            raise
    return FileRecord(writer.size, writer.crc32)


def _serialize(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    # getvalue() hands over the buffer without a copy (no view of it is exported), and bytes
    # are uploaded as they are: storage.write_bytes copies anything else.
    return buffer.getvalue()


def _write_local_files(location: str, items: list[tuple[str, Any]]) -> dict[str, FileRecord]:
    records = {}
    for name, obj in items:
        target = storage.join(location, name)
        records[name] = write_file(target, obj) if isinstance(obj, bytes) else \
            _save_local(target, obj)
    return records


def _write_uploaded_files(location: str, items: list[tuple[str, Any]]) -> dict[str, FileRecord]:
    """Upload every file in parallel, serializing each while the earlier ones upload.

    Memory stays bounded: a file is serialized only once fewer than ``_UPLOADS_IN_FLIGHT``
    large serialized files (``_LARGE_FILE_BYTES`` or more) are still uploading.
    """
    futures: dict[str, Future] = {}
    large: list[Future] = []
    with ThreadPoolExecutor(max_workers=len(items),
                            thread_name_prefix="raytrainer-upload") as uploads:
        for name, obj in items:
            if isinstance(obj, bytes):
                data = obj
            else:
                large = [future for future in large if not future.done()]
                while len(large) >= _UPLOADS_IN_FLIGHT:
                    large.pop(0).result()  # raises an upload's failure before going on
                data = _serialize(obj)
            futures[name] = uploads.submit(write_file, storage.join(location, name), data)
            if len(data) >= _LARGE_FILE_BYTES:
                large.append(futures[name])
            del data
        return {name: future.result() for name, future in futures.items()}


def split_checkpoint(checkpoint: Mapping[str, Any]) -> tuple[dict[str, Any], dict, Any]:
    """Split a checkpoint dict into rank-0 files, ``meta`` and this rank's own state."""
    shared: dict[str, Any] = {}
    model, state = {}, {}
    for key, value in checkpoint.items():
        if key in ("meta", RANK_STATE_KEY):
            continue
        if key == "optimizer":
            shared[OPTIMIZER_FILE] = value
        elif key.endswith("state_dict"):
            model[key] = value
        else:
            state[key] = value
    shared[MODEL_FILE] = model
    shared[STATE_FILE] = state
    return shared, dict(checkpoint.get("meta", {})), checkpoint.get(RANK_STATE_KEY, {})


def rank_share(checkpoint: Mapping[str, Any], rank: int) -> Mapping[str, Any]:
    """What rank ``rank`` writes of ``checkpoint`` (:func:`write_rank_files`): all of it on rank
    0; on the others only ``meta`` and the rank's own state, so an asynchronous save snapshots
    no more than it writes. The DTensor check runs here on every rank all the same.
    """
    if rank == 0:
        return checkpoint
    for name, value in split_checkpoint(checkpoint)[0].items():
        _refuse_sharded(value, name)
    return {key: checkpoint[key] for key in ("meta", RANK_STATE_KEY) if key in checkpoint}


def _refuse_sharded(value: Any, key: str) -> None:
    """A DTensor holds one rank's shard: written here it would silently lose the rest."""
    if isinstance(value, Mapping):
        for name, item in value.items():
            _refuse_sharded(item, f"{key}.{name}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _refuse_sharded(item, f"{key}[{index}]")
    elif isinstance(value, DTensor):
        raise CheckpointError(
            f"checkpoint entry {key!r} is a sharded tensor (DTensor); the full-state backend "
            "would save this rank's shard only. Sharded state is saved by a sharded strategy "
            "(FSDPStrategy); a hook that adds model state under FSDP must add full tensors")


def write_rank_files(location: str, checkpoint: Mapping[str, Any], rank: int,
                     tensors: bool = True) -> dict[str, FileRecord]:
    """Write the files rank ``rank`` owns; returns their records for its ``done`` marker.

    Args:
        tensors: Write ``model.pt``/``optimizer.pt`` too (False when a sharded backend writes
            the model and optimizer state).

    On local disk each file is written by ``torch.save`` straight into its temporary file; on
    other stores it is serialized in memory, the next one while the previous one uploads.

    Raises:
        CheckpointError: A sharded tensor (DTensor) reached a file written here.
    """
    shared, meta, rank_state = split_checkpoint(checkpoint)
    if not tensors:
        shared.pop(MODEL_FILE), shared.pop(OPTIMIZER_FILE, None)
    for name, value in shared.items():
        _refuse_sharded(value, name)
    items: list[tuple[str, Any]] = []  # usually smallest first: they upload beside the rest
    if rank == 0:
        meta["format_version"] = FORMAT_VERSION
        items.append((META_FILE, json.dumps(meta, default=_json_default, indent=1).encode()))
        items.append((STATE_FILE, shared.pop(STATE_FILE)))
    items.append((rank_file(rank), rank_state))
    if rank == 0:
        items.extend(sorted(shared.items()))  # model.pt, optimizer.pt
    write = _write_local_files if storage.local_path(location) is not None else \
        _write_uploaded_files
    return write(location, items)


def _torch_load(source: Any, what: str, map_location) -> Any:
    """``torch.load(weights_only=True)`` of a local path or a file-like."""
    try:
        return torch.load(source, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read {what}: {exc}") from exc


def _local_checksums(location: str, names: list[str]) -> dict[str, Callable[[], tuple]]:
    """Start the CRC-32 of every named local file at once, each on its own helper thread, so
    they run beside the parsing and beside each other where there are cores for it."""
    if storage.local_path(location) is None:
        return {}
    return {name: _in_thread(functools.partial(storage.file_crc32, storage.join(location, name)))
            for name in names}


def _load_verified(location: str, name: str, info: Mapping, map_location,
                   checksum: Callable[[], tuple] | None = None) -> Any:
    """Load one tensor file of a committed checkpoint, checking its size and CRC-32.

    The CRC-32 is computed on a helper thread while ``torch.load`` parses the file: a local
    file straight from its path (``checksum``: its CRC-32 already started), anything else from
    the downloaded bytes. Checking after parsing is safe: weights-only loading cannot run code.
    A file that fails to parse and does not match its record is reported as corrupt.
    """
    target = storage.join(location, name)
    source: Any = storage.local_path(target)
    if source is not None:
        checksum = checksum or _in_thread(lambda: storage.file_crc32(target))
    else:
        data = storage.read_bytes(target)
        checksum = _in_thread(lambda: (len(data), zlib.crc32(data)))
        source = io.BytesIO(data)
    try:
        obj = _torch_load(source, f"{storage.describe(location)}/{name}", map_location)
    except CheckpointError:
        if checksum() != (info["size"], info["crc32"]):
            raise _corrupt(location, name) from None
        raise
    if checksum() != (info["size"], info["crc32"]):
        raise _corrupt(location, name)
    return obj


def read_files(location: str, record: Mapping, meta: dict, map_location="cpu", rank: int = 0,
               weights_only: bool = False) -> dict[str, Any]:
    """The checkpoint dict held by the full-state files of a committed checkpoint.

    Args:
        record: Its commit record (:func:`.envelope.read_commit`).
        meta: Its verified ``meta.json``.
        rank: Which ``rank_<r>.pt`` to read (none if that rank did not save).
        weights_only: Read only ``model.pt`` (for ``load_from``).

    Returns:
        ``meta``, the ``*state_dict`` entries and, unless ``weights_only``, ``optimizer``, the
        other state entries and ``rank_state`` (those of them the checkpoint has).
    """
    files = record["files"]
    names = [name for name in ([MODEL_FILE] if weights_only else
                               [MODEL_FILE, OPTIMIZER_FILE, STATE_FILE, rank_file(rank)])
             if name in files]
    checksums = _local_checksums(location, names)
    checkpoint: dict[str, Any] = {"meta": meta}
    for name in names:
        obj = _load_verified(location, name, files[name], map_location, checksums.get(name))
        if name == OPTIMIZER_FILE:
            checkpoint["optimizer"] = obj
        elif name == rank_file(rank):
            checkpoint[RANK_STATE_KEY] = obj
        else:
            checkpoint.update(obj)
    return checkpoint


def load_single_file(location: str, map_location="cpu") -> dict[str, Any]:
    """A single ``.pth`` file (ours, MMEngine's, or a bare state dict) as a checkpoint dict."""
    return _load_single_file(location, map_location)


def _load_single_file(location: str, map_location) -> dict[str, Any]:
    what = storage.describe(location)
    source = storage.local_path(location) or io.BytesIO(storage.read_bytes(location))
    try:
        loaded = torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:  # names classes outside torch's allowlist
        loaded = _load_foreign(location, source, map_location, exc)
    except Exception as exc:
        raise CheckpointError(f"cannot read {what}: {exc}") from exc
    if not isinstance(loaded, dict):
        raise CheckpointError(f"{storage.describe(location)} does not hold a dict (got "
                              f"{type(loaded).__name__})")
    if "state_dict" not in loaded and loaded and \
            all(isinstance(v, torch.Tensor) for v in loaded.values()):
        loaded = {"state_dict": loaded}  # a bare model state dict
    loaded.setdefault("meta", {})
    return loaded


def _load_foreign(location: str, source: Any, map_location,
                  error: Exception) -> dict[str, Any]:
    """The weights of a single-file checkpoint from another engine (MMEngine pickles its
    message hub), read without importing or calling anything it names."""
    what = storage.describe(location)
    if isinstance(source, io.BytesIO):
        source.seek(0)  # the weights-only attempt read part of it
    try:
        loaded, skipped = load_foreign_checkpoint(source, map_location)
    except Exception as exc:
        raise CheckpointError(f"cannot read {what}: {error}; read without its non-torch "
                              f"classes, it still fails: {exc}") from exc
    print_log(f"{what} names classes outside torch's weights-only allowlist (an MMEngine "
              f"checkpoint?): loaded {sorted(loaded)} without unpickling them; left out "
              f"{skipped}", logger="current", level=logging.WARNING)
    return loaded


