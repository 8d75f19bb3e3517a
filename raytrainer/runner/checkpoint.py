"""The on-storage checkpoint format: per-rank files, a commit record, verification, listing.

A checkpoint is a directory ``<root>/<name>/`` (``epoch_3``, ``iter_500``, ``best_acc_epoch_3``):

- ``model.pt`` (rank 0): every ``*state_dict`` entry of the checkpoint (model weights, EMA ...)
- ``optimizer.pt`` (rank 0): the optimizer state, if saved
- ``state.pt`` (rank 0): schedulers, loop position, sampler, message hub, hook extras
- ``rank_<r>.pt`` (every rank): that rank's own state (RNG generators)
- ``meta.json`` (rank 0): counters, seed, config text, world size, format version
- ``rank_<r>.done.json``: written by each rank after its files, with their sizes and CRC-32s
- ``commit.json`` (rank 0, last): every file with its size and CRC-32

Tensor files are ``torch.save`` archives read back with ``torch.load(weights_only=True)``, so
loading never runs code. A directory counts as a checkpoint only once ``commit.json`` exists and
every file it lists has the recorded size; reading a file also checks its CRC-32. Object stores
have no atomic rename, so nothing is ever renamed: readers simply ignore uncommitted directories,
and "latest" is found by listing, not through a pointer file.

I/O: on local disk ``torch.save`` writes each tensor file straight into a hidden temporary file
(its CRC-32 computed on the way), which is then renamed into place; ``torch.load`` reads it back
from its path while a helper thread computes the CRC-32 of the file. On other stores files are
serialized in memory, each while the previous ones upload, and loaded from the downloaded bytes
with the CRC-32 computed beside ``torch.load``.

This module owns the format; what goes into a checkpoint is the runner's business.
"""
from __future__ import annotations

import functools
import io
import json
import logging
import pickle
import re
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from .. import storage
from ..logging import print_log
from .foreign_checkpoint import load_foreign_checkpoint

FORMAT_VERSION = 2
MODEL_FILE = "model.pt"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "state.pt"
META_FILE = "meta.json"
COMMIT_FILE = "commit.json"
RANK_STATE_KEY = "rank_state"
# ``epoch_3``, or ``epoch_3-<lineage>`` when ``epoch_3`` belongs to another run (see
# :func:`lineage_suffixed`)
_REGULAR_NAME = re.compile(r"^(epoch|iter)_(\d+)(-[\w.]+)?$")
_UNSAFE_IN_NAME = re.compile(r"[^\w.]")
_THREADED_CRC_BYTES = 1 << 20
_UPLOADS_IN_FLIGHT = 2
_LARGE_FILE_BYTES = 16 << 20
_T = TypeVar("_T")


def is_regular(location: str) -> bool:
    """Whether ``location`` names a regular checkpoint (``epoch_N``/``iter_N``, possibly with a
    ``-<lineage>`` suffix; not ``best_*`` or a custom name), the kind that is listed, retained
    by count and resumed from."""
    return _REGULAR_NAME.match(str(location).rstrip("/").rsplit("/", 1)[-1]) is not None


def lineage_suffixed(name: str, lineage: str) -> str:
    """``name`` made distinct for ``lineage``: ``epoch_1`` -> ``epoch_1-20260102_030405``."""
    return f"{name}-{_UNSAFE_IN_NAME.sub('_', lineage)}"


def owning_lineage(location: str) -> str | None:
    """The lineage whose committed checkpoint is at ``location`` (``meta.json``'s
    ``lineage``, else its ``timestamp``); None if nothing committed is there, ``''`` if the
    committed checkpoint is unreadable (its owner is unknown)."""
    if not is_committed(location):
        return None
    try:
        meta = read_meta(location)
    except (CheckpointError, FileNotFoundError):
        return ""
    return str(meta.get("lineage") or meta.get("timestamp") or "")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, not committed, torn or unreadable."""


def rank_file(rank: int) -> str:
    return f"rank_{rank}.pt"


def done_file(rank: int) -> str:
    return f"rank_{rank}.done.json"


@dataclass(frozen=True)
class FileRecord:
    size: int
    crc32: int

    def to_json(self) -> dict:
        return {"size": self.size, "crc32": self.crc32}


def _in_thread(fn: Callable[[], _T]) -> Callable[[], _T]:
    """Start ``fn`` on a helper thread; returns a getter that joins it and returns its result
    (or raises its exception). For CRC-32s: zlib releases the GIL on large buffers."""
    box: list = []

    def run() -> None:
        try:
            box.append((True, fn()))
        except BaseException as exc:  # handed to the getter
            box.append((False, exc))

    thread = threading.Thread(target=run, name="raytrainer-crc32", daemon=True)
    thread.start()

    def result() -> _T:
        thread.join()
        ok, value = box[0]
        if not ok:
            raise value
        return value

    return result


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


def write_file(location: str, data: bytes | memoryview) -> FileRecord:
    """Write one file and return its size and CRC-32 (computed while it uploads).

    Data files are not fsynced: if a power loss leaves one incomplete behind a commit record,
    its CRC-32 no longer matches and readers fall back to an older checkpoint.
    """
    view = memoryview(data)
    crc = _in_thread(lambda: zlib.crc32(view))
    storage.write_bytes(location, data, durable=False)
    return FileRecord(view.nbytes, crc())


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


def write_rank_files(location: str, checkpoint: Mapping[str, Any], rank: int) -> None:
    """Write the files rank ``rank`` owns, then its ``done`` marker (listing them).

    On local disk each file is written by ``torch.save`` straight into its temporary file; on
    other stores it is serialized in memory, the next one while the previous one uploads.
    """
    shared, meta, rank_state = split_checkpoint(checkpoint)
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
    records = write(location, items)
    marker = {name: record.to_json() for name, record in records.items()}
    storage.write_text(storage.join(location, done_file(rank)), json.dumps(marker))


def commit(location: str, world_size: int, timeout: float = 600.0, poll: float = 0.2) -> None:
    """Rank 0: wait for every rank's marker, then write ``commit.json`` (the checkpoint exists).

    Raises:
        CheckpointError: Some rank's marker did not appear within ``timeout`` seconds; the
            checkpoint stays uncommitted and is never loaded.
    """
    deadline = time.monotonic() + timeout
    files: dict[str, dict] = {}
    for rank in range(world_size):
        marker = storage.join(location, done_file(rank))
        while True:
            try:  # one request per rank whose marker is there (no separate existence check)
                text = storage.read_text(marker)
                break
            except storage.StorageNotFoundError:
                if time.monotonic() > deadline:
                    raise CheckpointError(f"checkpoint {storage.describe(location)}: rank "
                                          f"{rank} did not finish writing within "
                                          f"{timeout:.0f} s; left uncommitted") from None
                time.sleep(poll)
        files.update(json.loads(text))
    record = {"format_version": FORMAT_VERSION, "world_size": world_size,
              "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
              # the commit time that orders checkpoints (list_checkpoints, resume=True)
              "created_unix": time.time(), "files": files}
    storage.write_text(storage.join(location, COMMIT_FILE), json.dumps(record, indent=1))


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def read_commit(location: str, check_sizes: bool = True) -> dict:
    """The commit record of a checkpoint, after checking that every listed file is complete.

    Raises:
        CheckpointError: No commit record, a corrupt one, a missing file or a size mismatch;
            the message names the checkpoint and what is wrong.
    """
    where = storage.describe(location)
    commit_path = storage.join(location, COMMIT_FILE)
    if not storage.exists(commit_path):
        raise CheckpointError(f"{where} is not a committed checkpoint: {COMMIT_FILE} is "
                              "missing (the save did not finish)")
    try:
        record = json.loads(storage.read_text(commit_path))
        files = record["files"]
        if not isinstance(files, dict) or META_FILE not in files:
            raise ValueError(f"no {META_FILE} entry")
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{where}: {COMMIT_FILE} is corrupt ({exc})") from exc
    if record.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{where}: format version {record.get('format_version')} is not "
                              f"supported (expected {FORMAT_VERSION})")
    if check_sizes:
        sizes = {entry["name"]: entry["size"] for entry in storage.listdir(location)}
        for name, info in files.items():
            if name not in sizes:
                raise CheckpointError(f"{where}: {name} is missing")
            if sizes[name] != info["size"]:
                raise CheckpointError(f"{where}: {name} has {sizes[name]} bytes but the commit "
                                      f"record says {info['size']} (truncated or overwritten)")
    return record


def is_committed(location: str) -> bool:
    return storage.exists(storage.join(location, COMMIT_FILE))


def _corrupt(location: str, name: str) -> CheckpointError:
    return CheckpointError(f"{storage.describe(location)}: {name} is corrupt (size/CRC-32 "
                           "differ from the commit record)")


def _read_verified(location: str, name: str, info: Mapping) -> bytes:
    data = storage.read_bytes(storage.join(location, name))
    if len(data) != info["size"] or zlib.crc32(data) != info["crc32"]:
        raise _corrupt(location, name)
    return data


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


def load_checkpoint(location: str, map_location: str | torch.device = "cpu", rank: int = 0,
                    weights_only: bool = False) -> dict[str, Any]:
    """Read a checkpoint: a committed directory, or a single ``.pth`` file (ours or MMEngine's).

    Args:
        location: Checkpoint directory or file (path or URL).
        map_location: Where tensors are loaded.
        rank: Which ``rank_<r>.pt`` to read (falls back to none if that rank did not save).
        weights_only: Read only ``model.pt`` and ``meta.json`` (for ``load_from``).

    Returns:
        The checkpoint dict: ``meta``, ``state_dict`` and, unless ``weights_only``,
        ``optimizer``, the other state entries and ``rank_state``.

    Raises:
        CheckpointError: The location does not exist, is not committed, is torn or corrupt.
    """
    location = str(location).rstrip("/")
    if not storage.exists(location):
        raise CheckpointError(f"checkpoint not found: {storage.describe(location)}")
    if not storage.is_dir(location):
        return _load_single_file(location, map_location)
    record = read_commit(location)
    files = record["files"]
    meta = read_meta(location, record)
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


def read_meta(location: str, record: dict | None = None) -> dict:
    """The verified ``meta.json`` of a committed checkpoint."""
    record = record or read_commit(location)
    try:
        return json.loads(_read_verified(location, META_FILE, record["files"][META_FILE]))
    except ValueError as exc:
        raise CheckpointError(f"{storage.describe(location)}: {META_FILE} is corrupt: "
                              f"{exc}") from exc


def list_checkpoints(root: str, warn: bool = True, timestamp: str | None = None,
                     lineage: str | None = None,
                     rejected: list[tuple[str, str]] | None = None) -> list[str]:
    """Committed, complete regular checkpoints (``epoch_N``/``iter_N``) under ``root``, oldest
    first in commit order. Torn or uncommitted directories are skipped with a warning.

    Commit order is the commit record's ``created_unix``; checkpoints committed before it was
    recorded count as older than every checkpoint that has it, ordered by (iteration, epoch)
    among themselves. So the last one is the most recently committed, as MMEngine's
    ``last_checkpoint`` is the most recently saved, even if an earlier run in the same
    directory got further.

    Args:
        root: The checkpoint directory.
        warn: Log why a directory is skipped.
        timestamp: Only checkpoints of the run with this timestamp (``meta.json``).
        lineage: Only checkpoints of this lineage (``meta.json``'s ``lineage``: the timestamp
            of the run that started it, which resumed runs inherit; a checkpoint without one
            belongs to the lineage of its own ``timestamp``).
        rejected: If given, receives ``(location, reason)`` for every committed checkpoint
            (one with a commit record) that is torn or corrupt, whatever its run: a resume
            that finds only such checkpoints must fail rather than start afresh over them.
    """
    found = []
    for entry in storage.listdir(root):
        if entry["type"] != "directory" or not is_regular(entry["name"]):
            continue
        location = storage.join(str(root).rstrip("/"), entry["name"])
        try:
            record = read_commit(location)
            meta = read_meta(location, record)
        except CheckpointError as exc:
            if warn:
                print_log(f"ignoring checkpoint {storage.describe(location)}: {exc}",
                          logger="current", level=logging.WARNING)
            if rejected is not None and is_committed(location):
                rejected.append((location, str(exc)))
            continue
        except FileNotFoundError:
            continue  # deleted while it was being read
        if timestamp is not None and meta.get("timestamp") != timestamp:
            continue
        if lineage is not None and (meta.get("lineage") or meta.get("timestamp")) != lineage:
            continue
        progress = (int(meta.get("iter", 0)), int(meta.get("epoch", 0)))
        created = record.get("created_unix")
        order = (1, float(created)) if isinstance(created, (int, float)) else (0, 0.0)
        found.append((order, progress, location))
    return [location for _, _, location in sorted(found)]


def latest_checkpoint(root: str) -> str | None:
    """The most recently committed complete checkpoint under ``root`` (see
    :func:`list_checkpoints`), or None."""
    found = list_checkpoints(root)
    return found[-1] if found else None


def unusable_checkpoints_error(root: str, rejected: list[tuple[str, str]],
                               what: str) -> CheckpointError:
    """The error of a resume that found committed checkpoints under ``root`` but none it can
    use: it names each one and why it was rejected, and says that nothing was touched."""
    reasons = "; ".join(f"{storage.describe(location)}: {reason}"
                        for location, reason in rejected)
    return CheckpointError(
        f"{what}: {storage.describe(root)} holds {len(rejected)} committed checkpoint(s) but "
        f"none is usable ({reasons}). Nothing was deleted or overwritten; repair or remove "
        "them, resume from a given checkpoint (resume=<location>), or train without resume "
        "in another work_dir")


def delete_checkpoint(location: str) -> None:
    """Remove a checkpoint: its commit record first, so a half-finished delete is never loaded."""
    storage.remove(storage.join(location, COMMIT_FILE))
    storage.remove(location, recursive=True)
