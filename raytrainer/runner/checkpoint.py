"""Checkpoint files: write a checkpoint directory, commit it, find and read committed ones.

A checkpoint is a directory ``<root>/<name>/`` holding ``state.pt`` (tensors and plain python
data, loadable with ``torch.load(weights_only=True)``), ``meta.json`` (counters, seed, config
text, version) and ``commit.json``, written last, which lists every file with its size. Readers
ignore directories without a valid commit record, so a save that died half-way is never loaded.

This module owns the on-storage format only; the runner decides what goes into the state.
"""
from __future__ import annotations

import io
import json
import logging
import posixpath
import re
from collections.abc import Mapping
from typing import Any

import torch

from .. import storage
from ..logging import print_log

FORMAT_VERSION = 1
STATE_FILE = "state.pt"
META_FILE = "meta.json"
COMMIT_FILE = "commit.json"
_NAME = re.compile(r"^(epoch|iter)_(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, not committed, or unreadable."""


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def save_checkpoint(location: str, checkpoint: Mapping[str, Any]) -> None:
    """Write ``checkpoint`` (a dict with ``meta`` and state entries) as a committed directory.

    Raises:
        CheckpointError: ``location`` already holds a committed checkpoint.
    """
    location = str(location).rstrip("/")
    if is_committed(location):
        raise CheckpointError(f"refusing to overwrite the committed checkpoint at {location}")
    meta = dict(checkpoint.get("meta", {}))
    meta["format_version"] = FORMAT_VERSION
    state = {key: value for key, value in checkpoint.items() if key != "meta"}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    files = {STATE_FILE: buffer.getvalue(),
             META_FILE: json.dumps(meta, default=_json_default, indent=1).encode()}
    storage.makedirs(location)
    for name, data in files.items():
        storage.write_bytes(storage.join(location, name), data)
    record = {"format_version": FORMAT_VERSION,
              "files": {name: len(data) for name, data in files.items()}}
    storage.write_text(storage.join(location, COMMIT_FILE), json.dumps(record))


def _read_commit(location: str) -> dict:
    commit_path = storage.join(location, COMMIT_FILE)
    if not storage.exists(commit_path):
        raise CheckpointError(f"{location} is not a committed checkpoint: {COMMIT_FILE} is "
                              "missing (the save did not finish)")
    try:
        record = json.loads(storage.read_text(commit_path))
        files = record["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{commit_path} is corrupt: {exc}") from exc
    fs, path = storage.get_filesystem(location)
    for name, size in files.items():
        file_path = posixpath.join(path, name)
        if not fs.exists(file_path):
            raise CheckpointError(f"checkpoint {location} is missing {name}")
        actual = fs.size(file_path)
        if actual != size:
            raise CheckpointError(f"checkpoint {location}: {name} has {actual} bytes, the commit "
                                  f"record says {size} (truncated or overwritten)")
    return record


def is_committed(location: str) -> bool:
    return storage.exists(storage.join(str(location).rstrip("/"), COMMIT_FILE))


def load_checkpoint(location: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint: a committed directory, or a single ``.pth`` file (ours or MMEngine's).

    Returns:
        The checkpoint dict: ``meta`` plus the state entries (``state_dict``, ``optimizer`` ...).

    Raises:
        CheckpointError: The location does not exist, is not committed, or cannot be read.
    """
    location = str(location).rstrip("/")
    fs, path = storage.get_filesystem(location)
    if not fs.exists(path):
        raise CheckpointError(f"checkpoint not found: {location}")
    if not fs.isdir(path):
        return _load_file(location, map_location)
    _read_commit(location)
    state = _load_file(storage.join(location, STATE_FILE), map_location)
    try:
        meta = json.loads(storage.read_text(storage.join(location, META_FILE)))
    except ValueError as exc:
        raise CheckpointError(f"{storage.join(location, META_FILE)} is corrupt: {exc}") from exc
    state["meta"] = meta
    return state


def _load_file(location: str, map_location) -> dict[str, Any]:
    try:
        with storage.open_file(location, "rb") as f:
            data = f.read()
        loaded = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint file {location}: {exc}") from exc
    if not isinstance(loaded, dict):
        raise CheckpointError(f"{location} does not hold a dict (got {type(loaded).__name__})")
    if "state_dict" not in loaded and all(isinstance(v, torch.Tensor) for v in loaded.values()):
        loaded = {"state_dict": loaded}  # a bare model state dict
    loaded.setdefault("meta", {})
    return loaded


def list_checkpoints(root: str) -> list[str]:
    """Committed checkpoint directories under ``root``, oldest first (by iteration, then epoch)."""
    fs, path = storage.get_filesystem(root)
    if not fs.exists(path):
        return []
    found = []
    for entry in fs.ls(path, detail=True):
        name = posixpath.basename(entry["name"].rstrip("/"))
        if entry.get("type") != "directory" or not _NAME.match(name):
            continue
        location = storage.join(str(root).rstrip("/"), name)
        try:
            _read_commit(location)
        except CheckpointError as exc:
            print_log(f"ignoring checkpoint {location}: {exc}", logger="current",
                      level=logging.WARNING)
            continue
        meta = json.loads(storage.read_text(storage.join(location, META_FILE)))
        found.append((int(meta.get("iter", 0)), int(meta.get("epoch", 0)), location))
    return [location for _, _, location in sorted(found)]


def latest_checkpoint(root: str) -> str | None:
    """The newest committed checkpoint under ``root``, or None."""
    found = list_checkpoints(root)
    return found[-1] if found else None


def delete_checkpoint(location: str) -> None:
    """Remove a checkpoint: the commit record first, so a partial delete is never loaded."""
    fs, path = storage.get_filesystem(location)
    commit = posixpath.join(path, COMMIT_FILE)
    if fs.exists(commit):
        fs.rm(commit)
    if fs.exists(path):
        fs.rm(path, recursive=True)
