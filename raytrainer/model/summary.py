"""A model summary for the start of training, as Lightning prints one: the top-level modules
with their parameter counts, the trainable and frozen totals, the size of the weights and
buffers, and, when the strategy shards the model (FSDP), what this rank holds of it.

A sharded parameter (a DTensor) counts with its full size in the totals and with its local
shard in this rank's share. The summary only reads the model; it never moves or copies it.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

_MAX_ROWS = 12


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's part of ``tensor`` (its shard, for a DTensor)."""
    to_local = getattr(tensor, "to_local", None)
    return to_local() if callable(to_local) else tensor


def _kind(module: nn.Module) -> str:
    """The module's own class name: FSDP2 (``fully_shard``) swaps a module's class for a
    generated ``FSDP<Name>`` subclass, which is not what the user wrote."""
    for cls in type(module).__mro__:
        if not cls.__module__.startswith("torch.distributed."):
            return cls.__name__
    return type(module).__name__


def _count(params: Iterable[torch.Tensor]) -> int:
    return sum(p.numel() for p in params)


def _bytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def human(number: float, units: tuple[str, ...] = ("", " K", " M", " B", " T")) -> str:
    """``1234`` -> ``'1.2 K'``, ``3_400_000`` -> ``'3.4 M'`` (counts under 1000 as they are)."""
    for unit in units[:-1]:
        if abs(number) < 1000:
            return f"{number:.0f}{unit}" if unit == "" else f"{number:.1f}{unit}"
        number /= 1000
    return f"{number:.1f}{units[-1]}"


def _size(num_bytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if num_bytes < 1000 or unit == "GB":
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1000
    return f"{num_bytes:.1f} GB"


def model_summary(model: nn.Module, sharded: bool = False) -> str:
    """The summary of ``model`` (the unwrapped model) as lines of text.

    Args:
        sharded: The strategy shards the parameters: add what this rank holds.
    """
    params = list(model.parameters())
    trainable = _count(p for p in params if p.requires_grad)
    total = _count(params)
    buffers = list(model.buffers())
    size = _bytes(params) + _bytes(buffers)
    lines = [f"model {_kind(model)}: {human(total)} parameters ({human(trainable)} "
             f"trainable, {human(total - trainable)} frozen), {_size(size)} of weights and "
             "buffers"]
    if sharded:
        local = [_local(p) for p in params]
        lines.append(f"  this rank holds {human(_count(local))} of them "
                     f"({_size(_bytes(local) + _bytes(_local(b) for b in buffers))}) as its "
                     "shard")
    children = list(model.named_children())
    width = max((len(name) for name, _ in children[:_MAX_ROWS]), default=0)
    kind_width = max((len(_kind(child)) for _, child in children[:_MAX_ROWS]), default=0)
    for name, child in children[:_MAX_ROWS]:
        lines.append(f"  {name:<{width}}  {_kind(child):<{kind_width}}  "
                     f"{human(_count(child.parameters()))}")
    if len(children) > _MAX_ROWS:
        lines.append(f"  ... and {len(children) - _MAX_ROWS} more modules")
    return "\n".join(lines)


__all__ = ["human", "model_summary"]
