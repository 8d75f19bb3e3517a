"""Process-group helpers that degrade to no-ops in one process.

Everything here asks ``torch.distributed`` whether a process group is running; with none (the
single-process Runner) each function behaves as world size 1, rank 0.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as torch_dist


def is_distributed() -> bool:
    return torch_dist.is_available() and torch_dist.is_initialized()


def get_rank() -> int:
    return torch_dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return torch_dist.get_world_size() if is_distributed() else 1


def get_local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0")) if is_distributed() else 0


def is_main_process() -> bool:
    return get_rank() == 0


def master_only(func: Callable) -> Callable:
    """Run ``func`` on rank 0 only; other ranks get None."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs) if is_main_process() else None

    return wrapper


def barrier() -> None:
    if is_distributed():
        torch_dist.barrier()


def broadcast_object_list(objects: list[Any], src: int = 0) -> None:
    """Replace ``objects`` in place with rank ``src``'s list (picklable python objects)."""
    if is_distributed():
        torch_dist.broadcast_object_list(objects, src=src)


def all_gather_object(obj: Any, group: Any = None) -> list[Any]:
    """Every rank's ``obj``, indexed by rank (of ``group``, the default group if None)."""
    if not is_distributed():
        return [obj]
    gathered: list[Any] = [None] * torch_dist.get_world_size(group)
    torch_dist.all_gather_object(gathered, obj, group=group)
    return gathered


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """Reduce ``tensor`` in place across ranks (``'sum'``, ``'mean'``, ``'max'``, ``'min'``)."""
    if not is_distributed():
        return tensor
    ops = {"sum": torch_dist.ReduceOp.SUM, "mean": torch_dist.ReduceOp.SUM,
           "max": torch_dist.ReduceOp.MAX, "min": torch_dist.ReduceOp.MIN}
    if op not in ops:
        raise ValueError(f"all_reduce: op must be one of {sorted(ops)}, got {op!r}")
    torch_dist.all_reduce(tensor, ops[op])
    if op == "mean":
        tensor.div_(get_world_size())
    return tensor


def collect_results(results: list, size: int, device: str = "cpu") -> list | None:
    """Gather per-rank evaluation results into dataset order on rank 0.

    Ranks hold interleaved samples (``DefaultSampler`` gives rank r the indices r, r+N, ...), so
    the gathered lists are zipped back together and padding added by the sampler is cut off at
    ``size``. Returns the list on rank 0 and None on other ranks; with one process it returns
    ``results[:size]``.

    Args:
        results: This rank's results.
        size: Length of the dataset.
        device: ``'cpu'`` (gather pickled objects) or ``'gpu'``; both use the object collective.
    """
    if device not in ("cpu", "gpu"):
        raise ValueError(f"collect_device must be 'cpu' or 'gpu', got {device!r}")
    if not is_distributed():
        return list(results)[:size]
    parts = all_gather_object(list(results))
    if get_rank() != 0:
        return None
    ordered: list = []
    longest = max(len(part) for part in parts)
    for i in range(longest):
        for part in parts:
            if i < len(part):
                ordered.append(part[i])
    return ordered[:size]
