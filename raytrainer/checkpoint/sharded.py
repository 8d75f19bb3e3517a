"""The sharded backend: model and optimizer state written by every rank at once, with DCP.

A sharded checkpoint is the same envelope as a full-state one (:mod:`.envelope`), with the
small files of :mod:`.full_state` (``meta.json``, ``state.pt``, ``rank_<r>.pt``) and, instead
of ``model.pt``/``optimizer.pt``, a ``torch.distributed.checkpoint`` (DCP) directory:

- ``dcp/__<r>_0.distcp``: rank ``r``'s shards of the model and optimizer state;
- ``dcp/.metadata`` (rank 0): which slice of which tensor lives where.

DCP plans the read for the model it loads into, so a checkpoint written by N ranks loads on M
ranks (any M, one process without a process group included). Each rank lists its own DCP files
in its ``done`` marker with their sizes and CRC-32s, counted while DCP wrote them
(:func:`.dcp_io.writer`), so a missing or truncated shard keeps the checkpoint from counting as
committed, and a damaged one is refused when it is loaded (:func:`.dcp_io.reader`): a resume
falls back to the checkpoint committed before, as for a damaged full-state file. Loading never
runs code: ``.metadata`` is read by a restricted unpickler and non-tensor entries weights-only.

Storage: local directories go through DCP's ``FileSystemWriter``/``FileSystemReader``, URLs
through its fsspec writer and reader with raytrainer's storage options (see :mod:`.dcp_io`);
reading a whole sharded checkpoint into one process without a model uses DCP's empty-state
planner, as torch's ``format_utils`` does. A save that fails transiently on any rank is retried
by every rank together (DCP reports a failure to all of them), so the ranks stay in step.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.api import CheckpointException

from .. import storage
from ..logging import print_log
from ..storage import retry
from ..storage.errors import error_detail, is_transient, storage_error
from ..storage.retry import retry_delay
from . import agreement, dcp_io, envelope
from .envelope import CheckpointError, FileRecord

SHARD_DIR = "dcp"
METADATA_FILE = dcp_io.METADATA_FILE

# What each finished save wrote (DCP directory -> file name -> size and CRC-32), until the
# save's ``done`` marker takes it (:func:`shard_records`).
_written: dict[str, dict[str, FileRecord]] = {}
_written_lock = threading.Lock()
# DCP reports a failure on any rank as a CheckpointException, a BaseException
_DCP_ERRORS = (Exception, CheckpointException)


def shard_dir(location: str) -> str:
    """The DCP directory of the checkpoint at ``location``."""
    return storage.join(location, SHARD_DIR)


def _remember(directory: str, storage_writer: Any) -> None:
    with _written_lock:
        _written[directory] = dcp_io.written_records(storage_writer)


def _causes(exc: BaseException) -> list[BaseException]:
    """The per-rank errors inside a DCP ``CheckpointException`` (or ``exc`` itself): its
    ``failures`` map each failed rank to ``(exception, stack summary)``."""
    failures = getattr(exc, "failures", None)
    if isinstance(failures, dict) and failures:
        found: list[BaseException] = []
        for failure in failures.values():
            error = failure[0] if isinstance(failure, tuple) and failure else failure
            found.append(error if isinstance(error, BaseException) else exc)
        return found
    return [exc]


def _transient(exc: BaseException) -> bool:
    causes = _causes(exc)
    return all(is_transient(cause) or "transient" in type(cause).__name__.lower()
               for cause in causes) and bool(causes)


def _failure(exc: BaseException, what: str, attempts: int) -> BaseException:
    """A named error for a failed DCP call: the :class:`CheckpointError` that caused it (a
    damaged or refused file, named), a :class:`~raytrainer.storage.StorageError` when a storage
    error caused it, else a :class:`CheckpointError`."""
    causes = _causes(exc)
    for cause in causes:
        if isinstance(cause, CheckpointError):
            return cause
    for cause in causes:
        if isinstance(cause, (OSError, ConnectionError, TimeoutError)) or is_transient(cause):
            return storage_error(cause, what, attempts)
    return CheckpointError(f"cannot {what}: {error_detail(causes[0])}")


def save(directory: str, state: dict[str, Any], process_group: Any = None) -> None:
    """Every rank: write its shards of ``state`` under ``directory`` (collective).

    Transient storage failures are retried by every rank together, under the storage retry
    policy; anything else raises at once. The files' sizes and CRC-32s are kept for
    :func:`shard_records`.

    Raises:
        StorageError: Storage failed (named, with the location).
        CheckpointError: DCP failed for another reason.
    """
    attempts = 1 if retry._ending else int(retry._policy["attempts"])
    what = f"write the sharded checkpoint {storage.describe(directory)}"
    for attempt in range(1, attempts + 1):
        storage_writer = dcp_io.writer(directory)
        try:
            dcp.save(state, storage_writer=storage_writer, process_group=process_group)
            _remember(directory, storage_writer)
            return
        except _DCP_ERRORS as exc:
            if not _transient(exc) or attempt == attempts:
                raise _failure(exc, what, attempt) from exc
            delay = retry_delay(attempt, retry._policy["base_delay"], retry._policy["max_delay"])
            print_log(f"{what} failed (attempt {attempt}/{attempts}): {error_detail(exc)}; "
                      f"retrying in {delay:.2f}s", logger="current", level=logging.WARNING)
            time.sleep(delay)


def async_save(directory: str, state: dict[str, Any], process_group: Any = None) -> Future:
    """Every rank: stage ``state`` to CPU memory now and write it in the background.

    Returns:
        A future that completes once this rank's shards (and, on rank 0, DCP's metadata) are
        written. Its error names the location.
    """
    from torch.distributed.checkpoint.staging import DefaultStager, StagingOptions

    what = f"write the sharded checkpoint {storage.describe(directory)}"
    # One plain copy to CPU memory. Without a stager DCP stages through the writer, which
    # copies the state two to three times over (see benchmarks/README.md, "FSDP vs DDP").
    stager = DefaultStager(StagingOptions(use_pinned_memory=False, use_shared_memory=False,
                                          use_async_staging=False, use_non_blocking_copy=False))
    storage_writer = dcp_io.writer(directory)
    inner = dcp.async_save(state, storage_writer=storage_writer,
                           process_group=process_group, async_stager=stager)
    inner = getattr(inner, "upload_completion", inner)  # AsyncSaveResponse in newer torch
    outer: Future = Future()

    def done(future: Future) -> None:
        stager.close()  # drops the staged copy
        error = future.exception()
        if error is None:
            _remember(directory, storage_writer)
            outer.set_result(None)
        else:
            outer.set_exception(_failure(error, what, 1))

    inner.add_done_callback(done)
    return outer


def shard_records(location: str, rank: int) -> dict[str, FileRecord]:
    """The DCP files rank ``rank`` wrote for the checkpoint at ``location`` (by this process's
    last :func:`save`/:func:`async_save` of it), with the sizes and CRC-32s counted while they
    were written, after checking that storage holds each at that size.

    Raises:
        CheckpointError: No save of it finished here, or the rank's shard file (or rank 0's
            metadata) is not there, or not at its written size.
    """
    directory = shard_dir(location)
    where = storage.describe(directory)
    with _written_lock:
        written = _written.pop(directory, None)
    if written is None:
        raise CheckpointError(f"{where}: no sharded save of it finished in this process")
    prefix = f"__{rank}_"
    mine = {name: record for name, record in written.items()
            if name.startswith(prefix) or (rank == 0 and name == METADATA_FILE)}
    sizes = {entry["name"]: int(entry["size"]) for entry in storage.listdir(directory)}
    if not any(name.startswith(prefix) for name in mine) or \
            (rank == 0 and METADATA_FILE not in mine) or \
            any(sizes.get(name) != record.size for name, record in mine.items()):
        raise CheckpointError(f"{where}: the files of rank {rank} are missing after the save "
                              f"(written: {sorted(mine)}; stored: {sorted(sizes)})")
    return {f"{SHARD_DIR}/{name}": record for name, record in mine.items()}


def _expected(location: str, record: Mapping | None = None) -> dict[str, Mapping]:
    """The DCP files the commit record of ``location`` lists: name -> size and CRC-32 (None
    in checkpoints written before shards had CRC-32s)."""
    record = record or envelope.read_commit(location, check_sizes=False)
    prefix = f"{SHARD_DIR}/"
    return {name[len(prefix):]: info for name, info in record["files"].items()
            if name.startswith(prefix)}


def _checked_reader(location: str, record: Mapping | None = None) -> Any:
    """A reader of the DCP directory of ``location`` whose metadata is already read (checked
    and without running code), so a refused file fails here, named, and not inside DCP."""
    directory = shard_dir(location)
    storage_reader = dcp_io.reader(directory, _expected(location, record))
    try:
        storage_reader.read_metadata()
    except CheckpointError:
        raise
    except _DCP_ERRORS as exc:
        raise _failure(exc, f"read {storage.describe(directory)}/{METADATA_FILE}", 1) from exc
    return storage_reader


def load_into(location: str, state: dict[str, Any], process_group: Any = None,
              no_dist: bool = False) -> None:
    """Fill ``state`` (this rank's model/optimizer state dicts, sharded or not) in place from
    the checkpoint at ``location``, whatever world size wrote it (collective unless
    ``no_dist``). Every shard file is checked against its CRC-32 before it is read.

    Raises:
        CheckpointError: A key of ``state`` is not in the checkpoint, the shards do not fit,
            or a file is damaged (named, with the expected and the actual CRC-32) or refused.
        StorageError: Storage failed.
    """
    directory = shard_dir(location)
    storage_reader, failure = None, None
    try:
        storage_reader = _checked_reader(location)
    except Exception as exc:  # noqa: BLE001 - shared with every rank, then raised
        failure = exc
    # A rank whose metadata read failed must not leave the others waiting in DCP's collective.
    if not no_dist:
        failure = agreement.first_failure(failure, process_group)
    if failure is not None:
        raise failure
    try:
        dcp.load(state, storage_reader=storage_reader, planner=dcp_io.load_planner(),
                 process_group=process_group, no_dist=no_dist)
    except _DCP_ERRORS as exc:
        error = _failure(exc, f"read the sharded checkpoint {storage.describe(directory)}", 1)
        raise error from exc


def load_full(location: str, record: Mapping | None = None) -> dict[str, Any]:
    """Everything in the DCP directory of ``location`` as full tensors, read in this process
    alone (no process group needed): ``{'state_dict': ..., 'optimizer': ...}``.

    Args:
        record: The checkpoint's commit record, if already read.
    """
    # As torch's own ``format_utils.dcp_to_torch_save``: the empty-state planner fills the
    # dict it is given with everything stored, which ``dcp.load`` (it copies the dict) hides.
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

    directory = shard_dir(location)
    storage_reader = _checked_reader(location, record)
    state: dict[str, Any] = {}
    try:
        _load_state_dict(state, storage_reader=storage_reader,
                         planner=dcp_io.load_planner(everything=True), no_dist=True)
    except _DCP_ERRORS as exc:
        error = _failure(exc, f"read the sharded checkpoint {storage.describe(directory)}", 1)
        raise error from exc
    return state


def model_keys(location: str) -> set[str]:
    """The model weight names stored in the sharded checkpoint at ``location``."""
    return set(model_shapes(location))


def model_shapes(location: str) -> dict[str, tuple[int, ...] | None]:
    """The model weights stored in the sharded checkpoint at ``location``: name -> full shape
    (None for a non-tensor entry), from DCP's metadata alone."""
    metadata = _checked_reader(location).read_metadata()
    prefix = "model."
    return {key[len(prefix):]: (tuple(entry.size) if hasattr(entry, "size") else None)
            for key, entry in metadata.state_dict_metadata.items() if key.startswith(prefix)}
