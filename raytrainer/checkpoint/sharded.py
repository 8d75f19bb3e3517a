"""The sharded backend: model and optimizer state written by every rank at once, with DCP.

A sharded checkpoint is the same envelope as a full-state one (:mod:`.envelope`), with the
small files of :mod:`.full_state` (``meta.json``, ``state.pt``, ``rank_<r>.pt``) and, instead
of ``model.pt``/``optimizer.pt``, a ``torch.distributed.checkpoint`` (DCP) directory:

- ``dcp/__<r>_0.distcp``: rank ``r``'s shards of the model and optimizer state;
- ``dcp/.metadata`` (rank 0): which slice of which tensor lives where.

DCP plans the read for the model it loads into, so a checkpoint written by N ranks loads on M
ranks (any M, one process without a process group included). Each rank lists its own DCP files
in its ``done`` marker (by size; DCP reads them itself), so a missing or truncated shard keeps
the checkpoint from counting as committed.

Storage: local directories go through DCP's ``FileSystemWriter``/``FileSystemReader``, URLs
through its fsspec writer and reader (a private torch module, imported only in
:func:`_fsspec_classes`) with raytrainer's storage options; reading a whole sharded
checkpoint into one process without a model uses DCP's empty-state planner, as torch's
``format_utils`` does. Files are not fsynced one by one
(``sync_files=False``: on object stores the default would ``os.sync()`` the whole host per
file); the commit record, written last, is. A save that fails transiently on any rank is
retried by every rank together (DCP reports a failure to all of them), so the ranks stay in step.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import Future
from typing import Any

import torch.distributed.checkpoint as dcp

from .. import storage
from ..logging import print_log
from ..storage.errors import error_detail, is_transient, storage_error
from ..storage.retry import retry_delay
from .envelope import CheckpointError, FileRecord

SHARD_DIR = "dcp"
METADATA_FILE = ".metadata"


def shard_dir(location: str) -> str:
    """The DCP directory of the checkpoint at ``location``."""
    return storage.join(location, SHARD_DIR)


def _fsspec_classes() -> tuple[type, type]:
    """DCP's fsspec reader and writer (``torch.distributed.checkpoint._fsspec_filesystem``)."""
    from torch.distributed.checkpoint._fsspec_filesystem import FsspecReader, FsspecWriter

    return FsspecReader, FsspecWriter


def _writer(directory: str) -> Any:
    local = storage.local_path(directory)
    if local is not None:
        return dcp.FileSystemWriter(local, sync_files=False)
    writer_class = _fsspec_classes()[1]
    return writer_class(directory, sync_files=False,
                        **storage.storage_options_for(directory))


def _reader(directory: str) -> Any:
    local = storage.local_path(directory)
    if local is not None:
        return dcp.FileSystemReader(local)
    reader_class = _fsspec_classes()[0]
    return reader_class(directory, **storage.storage_options_for(directory))


def _causes(exc: BaseException) -> list[BaseException]:
    """The per-rank errors inside a DCP ``CheckpointException`` (or ``exc`` itself)."""
    failures = getattr(exc, "failures", None)
    if isinstance(failures, dict) and failures:
        found: list[BaseException] = []
        for failure in failures.values():
            error = failure.exception if hasattr(failure, "exception") else failure
            found.append(error if isinstance(error, BaseException) else exc)
        return found
    return [exc]


def _transient(exc: BaseException) -> bool:
    causes = _causes(exc)
    return all(is_transient(cause) or "transient" in type(cause).__name__.lower()
               for cause in causes) and bool(causes)


def _failure(exc: BaseException, what: str, attempts: int) -> BaseException:
    """A named error for a failed DCP call: a :class:`~raytrainer.storage.StorageError` when a
    storage error caused it, else a :class:`CheckpointError`."""
    causes = _causes(exc)
    for cause in causes:
        if isinstance(cause, (OSError, ConnectionError, TimeoutError)) or is_transient(cause):
            return storage_error(cause, what, attempts)
    return CheckpointError(f"cannot {what}: {error_detail(causes[0])}")


def save(directory: str, state: dict[str, Any], process_group: Any = None) -> None:
    """Every rank: write its shards of ``state`` under ``directory`` (collective).

    Transient storage failures are retried by every rank together, under the storage retry
    policy; anything else raises at once.

    Raises:
        StorageError: Storage failed (named, with the location).
        CheckpointError: DCP failed for another reason.
    """
    from ..storage import retry

    attempts = 1 if retry._ending else int(retry._policy["attempts"])
    what = f"write the sharded checkpoint {storage.describe(directory)}"
    for attempt in range(1, attempts + 1):
        try:
            dcp.save(state, storage_writer=_writer(directory), process_group=process_group)
            return
        except Exception as exc:
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
    inner = dcp.async_save(state, storage_writer=_writer(directory),
                           process_group=process_group, async_stager=stager)
    inner = getattr(inner, "upload_completion", inner)  # AsyncSaveResponse in newer torch
    outer: Future = Future()

    def done(future: Future) -> None:
        stager.close()  # drops the staged copy
        error = future.exception()
        if error is None:
            outer.set_result(None)
        else:
            outer.set_exception(_failure(error, what, 1))

    inner.add_done_callback(done)
    return outer


def shard_records(location: str, rank: int) -> dict[str, FileRecord]:
    """The DCP files rank ``rank`` wrote for the checkpoint at ``location``, by size.

    Raises:
        CheckpointError: The rank's shard file (or rank 0's metadata) is not there.
    """
    directory = shard_dir(location)
    prefix = f"__{rank}_"
    records = {}
    for entry in storage.listdir(directory):
        name = entry["name"]
        if name.startswith(prefix) or (rank == 0 and name == METADATA_FILE):
            records[f"{SHARD_DIR}/{name}"] = FileRecord(int(entry["size"]), None)
    if not any(name.startswith(f"{SHARD_DIR}/{prefix}") for name in records) or \
            (rank == 0 and f"{SHARD_DIR}/{METADATA_FILE}" not in records):
        raise CheckpointError(f"{storage.describe(directory)}: the files of rank {rank} are "
                              "missing after the save")
    return records


def load_into(location: str, state: dict[str, Any], process_group: Any = None,
              no_dist: bool = False) -> None:
    """Fill ``state`` (this rank's model/optimizer state dicts, sharded or not) in place from
    the checkpoint at ``location``, whatever world size wrote it (collective unless
    ``no_dist``).

    Raises:
        CheckpointError: A key of ``state`` is not in the checkpoint, or the shards do not fit.
        StorageError: Storage failed.
    """
    directory = shard_dir(location)
    try:
        dcp.load(state, storage_reader=_reader(directory), process_group=process_group,
                 no_dist=no_dist)
    except Exception as exc:
        error = _failure(exc, f"read the sharded checkpoint {storage.describe(directory)}", 1)
        raise error from exc


def load_full(location: str) -> dict[str, Any]:
    """Everything in the DCP directory of ``location`` as full tensors, read in this process
    alone (no process group needed): ``{'state_dict': ..., 'optimizer': ...}``."""
    # As torch's own ``format_utils.dcp_to_torch_save``: the empty-state planner fills the
    # dict it is given with everything stored, which ``dcp.load`` (it copies the dict) hides.
    from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

    directory = shard_dir(location)
    state: dict[str, Any] = {}
    try:
        _load_state_dict(state, storage_reader=_reader(directory),
                         planner=_EmptyStateDictLoadPlanner(), no_dist=True)
    except Exception as exc:
        error = _failure(exc, f"read the sharded checkpoint {storage.describe(directory)}", 1)
        raise error from exc
    return state


def model_keys(location: str) -> set[str]:
    """The model weight names stored in the sharded checkpoint at ``location``."""
    directory = shard_dir(location)
    try:
        metadata = _reader(directory).read_metadata()
    except Exception as exc:
        raise _failure(exc, f"read {storage.describe(directory)}/{METADATA_FILE}", 1) from exc
    prefix = "model."
    return {key[len(prefix):] for key in metadata.state_dict_metadata if key.startswith(prefix)}
