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

This module owns the format; what goes into a checkpoint is the runner's business.
"""
from __future__ import annotations

import io
import json
import logging
import re
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .. import storage
from ..logging import print_log

FORMAT_VERSION = 2
MODEL_FILE = "model.pt"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "state.pt"
META_FILE = "meta.json"
COMMIT_FILE = "commit.json"
RANK_STATE_KEY = "rank_state"
_REGULAR_NAME = re.compile(r"^(epoch|iter)_(\d+)$")


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


def _crc32_in_thread(data: memoryview) -> Callable[[], int]:
    """Start computing a CRC-32 beside the upload (zlib releases the GIL); returns a getter."""
    box: list[int] = []
    thread = threading.Thread(target=lambda: box.append(zlib.crc32(data)), daemon=True)
    thread.start()

    def result() -> int:
        thread.join()
        return box[0]

    return result


def _serialize(obj: Any) -> memoryview:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getbuffer()


def write_file(location: str, data: bytes | memoryview) -> FileRecord:
    """Write one file and return its size and CRC-32 (computed while it uploads).

    Data files are not fsynced: if a power loss leaves one incomplete behind a commit record,
    its CRC-32 no longer matches and readers fall back to an older checkpoint.
    """
    view = memoryview(data)
    crc = _crc32_in_thread(view)
    storage.write_bytes(location, view, durable=False)
    return FileRecord(view.nbytes, crc())


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
    """Write the files rank ``rank`` owns, then its ``done`` marker (listing them)."""
    shared, meta, rank_state = split_checkpoint(checkpoint)
    records: dict[str, FileRecord] = {}
    if rank == 0:
        for name, obj in shared.items():
            records[name] = write_file(storage.join(location, name), _serialize(obj))
        meta["format_version"] = FORMAT_VERSION
        text = json.dumps(meta, default=_json_default, indent=1).encode()
        records[META_FILE] = write_file(storage.join(location, META_FILE), text)
    records[rank_file(rank)] = write_file(storage.join(location, rank_file(rank)),
                                          _serialize(rank_state))
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
        while not storage.exists(marker):
            if time.monotonic() > deadline:
                raise CheckpointError(f"checkpoint {storage.describe(location)}: rank {rank} "
                                      f"did not finish writing within {timeout:.0f} s; left "
                                      "uncommitted")
            time.sleep(poll)
        files.update(json.loads(storage.read_text(marker)))
    record = {"format_version": FORMAT_VERSION, "world_size": world_size,
              "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "files": files}
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


def _read_verified(location: str, name: str, info: Mapping) -> bytes:
    data = storage.read_bytes(storage.join(location, name))
    if len(data) != info["size"] or zlib.crc32(data) != info["crc32"]:
        raise CheckpointError(f"{storage.describe(location)}: {name} is corrupt (size/CRC-32 "
                              "differ from the commit record)")
    return data


def _torch_load(data: bytes, what: str, map_location) -> Any:
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read {what}: {exc}") from exc


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
    names = [MODEL_FILE] if weights_only else \
        [MODEL_FILE, OPTIMIZER_FILE, STATE_FILE, rank_file(rank)]
    checkpoint: dict[str, Any] = {"meta": meta}
    for name in names:
        if name not in files:
            continue
        obj = _torch_load(_read_verified(location, name, files[name]),
                          f"{storage.describe(location)}/{name}", map_location)
        if name == OPTIMIZER_FILE:
            checkpoint["optimizer"] = obj
        elif name == rank_file(rank):
            checkpoint[RANK_STATE_KEY] = obj
        else:
            checkpoint.update(obj)
    return checkpoint


def _load_single_file(location: str, map_location) -> dict[str, Any]:
    loaded = _torch_load(storage.read_bytes(location), storage.describe(location), map_location)
    if not isinstance(loaded, dict):
        raise CheckpointError(f"{storage.describe(location)} does not hold a dict (got "
                              f"{type(loaded).__name__})")
    if "state_dict" not in loaded and loaded and \
            all(isinstance(v, torch.Tensor) for v in loaded.values()):
        loaded = {"state_dict": loaded}  # a bare model state dict
    loaded.setdefault("meta", {})
    return loaded


def read_meta(location: str, record: dict | None = None) -> dict:
    """The verified ``meta.json`` of a committed checkpoint."""
    record = record or read_commit(location)
    try:
        return json.loads(_read_verified(location, META_FILE, record["files"][META_FILE]))
    except ValueError as exc:
        raise CheckpointError(f"{storage.describe(location)}: {META_FILE} is corrupt: "
                              f"{exc}") from exc


def list_checkpoints(root: str, warn: bool = True, timestamp: str | None = None) -> list[str]:
    """Committed, complete regular checkpoints (``epoch_N``/``iter_N``) under ``root``, oldest
    first by (iteration, epoch). Torn or uncommitted directories are skipped with a warning.

    Args:
        root: The checkpoint directory.
        warn: Log why a directory is skipped.
        timestamp: Only checkpoints of the run with this timestamp (``meta.json``).
    """
    found = []
    for entry in storage.listdir(root):
        if entry["type"] != "directory" or not _REGULAR_NAME.match(entry["name"]):
            continue
        location = storage.join(str(root).rstrip("/"), entry["name"])
        try:
            meta = read_meta(location)
            if timestamp is None or meta.get("timestamp") == timestamp:
                found.append((int(meta.get("iter", 0)), int(meta.get("epoch", 0)), location))
        except CheckpointError as exc:
            if warn:
                print_log(f"ignoring checkpoint {storage.describe(location)}: {exc}",
                          logger="current", level=logging.WARNING)
    return [location for _, _, location in sorted(found)]


def latest_checkpoint(root: str) -> str | None:
    """The newest committed, complete checkpoint under ``root``, or None."""
    found = list_checkpoints(root)
    return found[-1] if found else None


def delete_checkpoint(location: str) -> None:
    """Remove a checkpoint: its commit record first, so a half-finished delete is never loaded."""
    storage.remove(storage.join(location, COMMIT_FILE))
    storage.remove(location, recursive=True)
