"""Ranks that load a checkpoint together agree on whether each step worked everywhere.

A step that reads files may fail on one rank only: its own ``rank_<r>.pt`` is damaged, or its
read of DCP's ``.metadata`` failed for good. Without an agreement that rank raises (or falls
back to an older checkpoint) while the others go on into DCP's collective read, where they wait
for it, or resume a newer checkpoint than it did and train out of step with it. So every rank
runs such a step, then :func:`first_failure` shares the outcome (one small all-gather), and
every rank raises, or falls back, together.
"""
from __future__ import annotations

from typing import Any

from .. import dist
from ..storage.errors import StorageError
from .envelope import CheckpointError


def _kind(error: BaseException) -> str:
    if isinstance(error, CheckpointError):
        return "checkpoint"
    return "storage" if isinstance(error, StorageError) else "other"


def first_failure(error: Exception | None, group: Any = None) -> Exception | None:
    """The failure of a step every rank of ``group`` ran (collective when distributed).

    Returns:
        ``error`` where this rank failed; else, where another rank failed, an error of the
        same kind (a :class:`CheckpointError`, a :class:`StorageError`, or a RuntimeError)
        naming that rank and its message; None where the step worked on every rank.
    """
    if not dist.is_distributed():
        return error
    reports = dist.all_gather_object(
        None if error is None else (_kind(error), str(error)), group=group)
    if error is not None:
        return error
    for rank, report in enumerate(reports):
        if report is not None:
            kind, message = report
            cls = {"checkpoint": CheckpointError, "storage": StorageError}.get(kind, RuntimeError)
            return cls(f"rank {rank}: {message}")
    return None


def raise_first_failure(error: Exception | None, group: Any = None) -> None:
    """:func:`first_failure`, raised where there is one (this rank's own with its traceback)."""
    failure = first_failure(error, group)
    if failure is not None:
        raise failure
