"""The checkpoint envelope: one directory per checkpoint, committed last, listed and verified.

A checkpoint is a directory ``<root>/<name>/`` (``epoch_3``, ``iter_500``, ``best_acc_epoch_3``)
holding the files of a backend (``full_state``: ``torch.save`` files; ``sharded``: DCP shards plus
the same small files) and two kinds of records this module owns:

- ``rank_<r>.done.json``: written by each rank after its files, with their sizes and CRC-32s
  (DCP shard files too, counted while DCP wrote them; sharded checkpoints written before
  that record their DCP files by size only);
- ``commit.json`` (rank 0, last): every file with its size and CRC-32, the world size and the
  layout (``full`` or ``sharded``).

A directory counts as a checkpoint only once ``commit.json`` exists and every file it lists has
the recorded size. Object stores have no atomic rename, so nothing is ever renamed: readers
ignore uncommitted directories, and "latest" is found by listing, not through a pointer file.

This is the one module that knows the on-storage layout of the envelope; the backends know
their own files, and what goes into a checkpoint is :mod:`.state`'s business.
"""
from __future__ import annotations

import json
import logging
import posixpath
import re
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from .. import storage
from ..logging import print_log

FORMAT_VERSION = 2
META_FILE = "meta.json"
COMMIT_FILE = "commit.json"
FULL, SHARDED = "full", "sharded"  # layouts
# ``epoch_3``, or ``epoch_3-<lineage>`` when ``epoch_3`` belongs to another run (see
# :func:`lineage_suffixed`)
_REGULAR_NAME = re.compile(r"^(epoch|iter)_(\d+)(-[\w.]+)?$")
_UNSAFE_IN_NAME = re.compile(r"[^\w.]")
_LOST_COMMIT = (f"{COMMIT_FILE} is missing but every file of the checkpoint is there (its "
                "commit record was lost); it is never loaded nor written over")
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


def done_file(rank: int) -> str:
    return f"rank_{rank}.done.json"


@dataclass(frozen=True)
class FileRecord:
    size: int
    # None: checked by size only (the DCP files of sharded checkpoints written before their
    # CRC-32s were recorded)
    crc32: int | None

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


def write_file(location: str, data: bytes | memoryview) -> FileRecord:
    """Write one file and return its size and CRC-32 (computed while it uploads).

    Data files are not fsynced: if a power loss leaves one incomplete behind a commit record,
    its CRC-32 no longer matches and readers fall back to an older checkpoint.
    """
    view = memoryview(data)
    crc = _in_thread(lambda: zlib.crc32(view))
    storage.write_bytes(location, data, durable=False)
    return FileRecord(view.nbytes, crc())


def write_done_marker(location: str, rank: int, records: Mapping[str, FileRecord]) -> None:
    """Rank ``rank`` has written ``records`` (name -> size/CRC-32) under ``location``."""
    marker = {name: record.to_json() for name, record in records.items()}
    storage.write_text(storage.join(location, done_file(rank)), json.dumps(marker))


def commit(location: str, world_size: int, timeout: float = 600.0, poll: float = 0.2,
           layout: str = FULL) -> None:
    """Rank 0: wait for every rank's marker, then write ``commit.json`` (the checkpoint exists).

    Args:
        layout: ``'full'`` (``torch.save`` files) or ``'sharded'`` (DCP shards).

    Raises:
        CheckpointError: Some rank's marker did not appear within ``timeout`` seconds; the
            checkpoint stays uncommitted and is never loaded.
    """
    deadline = time.monotonic() + timeout
    files: dict[str, dict] = {}
    wait = min(0.005, poll)  # markers usually land within milliseconds: back off up to poll
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
                time.sleep(wait)
                wait = min(wait * 2, poll)
        files.update(json.loads(text))
    record = {"format_version": FORMAT_VERSION, "world_size": world_size, "layout": layout,
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
        sizes = _sizes(location, {name.rpartition("/")[0] for name in files})
        for name, info in files.items():
            if name not in sizes:
                raise CheckpointError(f"{where}: {name} is missing")
            if sizes[name] != info["size"]:
                raise CheckpointError(f"{where}: {name} has {sizes[name]} bytes but the commit "
                                      f"record says {info['size']} (truncated or overwritten)")
    return record


def _sizes(location: str, folders: set[str]) -> dict[str, int]:
    """Size of every file in the checkpoint's top directory and in ``folders`` (relative)."""
    sizes = {}
    for folder in sorted(folders):
        base = storage.join(location, folder) if folder else location
        prefix = f"{folder}/" if folder else ""
        try:
            entries = storage.listdir(base)
        except storage.StorageNotFoundError:
            continue  # the files listed there are reported missing
        sizes.update({prefix + entry["name"]: entry["size"] for entry in entries})
    return sizes


def is_committed(location: str) -> bool:
    return storage.exists(storage.join(location, COMMIT_FILE))


def _raw_meta(location: str) -> dict | None:
    """``meta.json`` of an uncommitted directory, unverified (only to tell whose it is)."""
    try:
        meta = json.loads(storage.read_text(storage.join(location, META_FILE)))
    except (storage.StorageNotFoundError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def lacks_only_commit(location: str) -> bool:
    """Whether the uncommitted directory ``location`` holds a complete checkpoint: a
    ``meta.json``, the ``done`` marker of every rank (of its world size) and every file those
    list, at its recorded size. Its commit record was lost (deleted by hand, not copied): a
    save that stops early never gets this far, except in the instant before its commit."""
    meta = _raw_meta(location) or {}
    files: dict = {}
    try:
        for rank in range(int(meta.get("world_size", 0))):
            files.update(json.loads(storage.read_text(storage.join(location, done_file(rank)))))
        sizes = _sizes(location, {name.rpartition("/")[0] for name in files})
        return META_FILE in files and all(sizes.get(name) == info["size"]
                                          for name, info in files.items())
    except (storage.StorageNotFoundError, ValueError, KeyError, TypeError, AttributeError):
        return False


def unfinished_save_of(location: str) -> str | None:
    """The lineage named by the ``meta.json`` of the uncommitted directory ``location`` (the
    run whose save left it), or None if it has no readable one."""
    meta = _raw_meta(location) or {}
    lineage = meta.get("lineage") or meta.get("timestamp")
    return str(lineage) if lineage else None


def _corrupt(location: str, name: str) -> CheckpointError:
    return CheckpointError(f"{storage.describe(location)}: {name} is corrupt (size/CRC-32 "
                           "differ from the commit record)")


def _read_verified(location: str, name: str, info: Mapping) -> bytes:
    data = storage.read_bytes(storage.join(location, name))
    if len(data) != info["size"] or zlib.crc32(data) != info["crc32"]:
        raise _corrupt(location, name)
    return data



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
            (one with a commit record) that is torn or corrupt, and for every complete
            checkpoint that lost its commit record (:func:`lacks_only_commit`), whatever its
            run: a resume that finds only such checkpoints must fail rather than start afresh
            over them.
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
            reason, refuse = str(exc), rejected is not None and is_committed(location)
            if rejected is not None and not refuse and lacks_only_commit(location):
                reason, refuse = _LOST_COMMIT, True
            if warn:
                print_log(f"ignoring checkpoint {storage.describe(location)}: {reason}",
                          logger="current", level=logging.WARNING)
            if refuse and rejected is not None:
                rejected.append((location, reason))
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
    lost = sum(reason == _LOST_COMMIT for _, reason in rejected)
    kinds = [f"{count} {kind}" for count, kind in
             ((len(rejected) - lost, "committed checkpoint(s)"),
              (lost, f"checkpoint(s) without {COMMIT_FILE}")) if count]
    return CheckpointError(
        f"{what}: {storage.describe(root)} holds {' and '.join(kinds)} but none is usable "
        f"({reasons}). Nothing was deleted or overwritten; repair or remove them, resume from "
        "a given checkpoint (resume=<location>), or train without resume in another work_dir")


def _resolved(location: str) -> tuple[tuple[str, ...], str]:
    """``location``'s protocols and its path with ``.``, ``..`` and extra slashes resolved."""
    fs, path = storage.get_filesystem(location)
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    return protocols, posixpath.normpath(path)


def is_direct_child(location: str, root: str) -> bool:
    """Whether ``location`` resolves to an entry directly inside the folder ``root``."""
    (protocols, path), (root_protocols, root_path) = _resolved(location), _resolved(root)
    return protocols == root_protocols and path != root_path and \
        posixpath.dirname(path) == root_path


def _is_link(location: str) -> bool:
    fs, path = storage.get_filesystem(location)
    try:
        return bool(fs.info(path).get("islink"))
    except FileNotFoundError:
        return False


def _deletion_refusal(location: str, root: str, lineage: str | None) -> str | None:
    if not is_direct_child(location, root):
        return f"it is not a direct child of the run's checkpoint folder {storage.describe(root)}"
    if _is_link(location):
        return "it is a link (its target is not this run's to delete)"
    if lineage is not None:
        owner = owning_lineage(location)
        if owner is None:
            return "it is not a committed checkpoint"
        if owner != lineage:
            return f"it is a checkpoint of another run ({owner or 'unreadable'})"
    return None


def delete_checkpoint(location: str, root: str, lineage: str | None = None) -> bool:
    """Remove a checkpoint of the run whose checkpoint folder is ``root``: its commit record
    first, so a half-finished delete is never loaded. Every deletion goes through here.

    Refused, with a logged error (nothing is deleted): a location that does not resolve to a
    direct child of ``root`` (``root/../x``, a path of another work_dir), one that is a link
    (a link's target lies elsewhere), and, when ``lineage`` is given, anything but a committed
    checkpoint of that lineage.

    Returns:
        Whether something was deleted (False also when nothing is at ``location``).
    """
    if not storage.exists(location):
        return False
    refusal = _deletion_refusal(location, root, lineage)
    if refusal is not None:
        print_log(f"refusing to delete {storage.describe(location)}: {refusal}",
                  logger="current", level=logging.ERROR)
        return False
    storage.remove(storage.join(location, COMMIT_FILE))
    storage.remove(location, recursive=True)
    return True
