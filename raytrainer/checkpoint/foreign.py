"""Reading the weights of checkpoints written by other engines (MMEngine ``.pth``) without
running code from them.

MMEngine pickles its ``message_hub`` (``HistoryBuffer`` objects holding numpy arrays) next to
the weights, so ``torch.load(weights_only=True)`` refuses the file. Here the file is still read
by torch's weights-only unpickler, with every global it names outside torch's allowlist
(listed by ``torch.serialization.get_unsafe_globals_in_checkpoint``) stood in for, for this one
load only (``torch.serialization.safe_globals``), by an inert placeholder class that records its
arguments. So nothing foreign is imported or called, and torch's unpickler refuses to set state
on anything but instances (a crafted file cannot set attributes on a class, ours or torch's):
loading a file changes no global state. Only plain entries (``state_dict``, ``meta``,
``optimizer``) are kept.

This module owns that reader; choosing when to use it is :mod:`.checkpoint`'s business.
"""
from __future__ import annotations

from typing import Any

import torch


class Opaque:
    """Stands in for an object of a class that is not loaded; remembers what it was given."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.args, self.kwargs, self.state = args, kwargs, None

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _placeholders(source: Any) -> list[tuple[type, str]]:
    """An :class:`Opaque` subclass for each global the file names outside torch's allowlist."""
    names = torch.serialization.get_unsafe_globals_in_checkpoint(source)
    if hasattr(source, "seek"):
        source.seek(0)
    return [(type(name.rpartition(".")[2], (Opaque,), {"__module__": "raytrainer.opaque"}),
             name) for name in names]


def _plain(value: Any) -> bool:
    """Whether ``value`` holds only tensors and builtin containers/scalars (no placeholders)."""
    if isinstance(value, Opaque):
        return False
    if isinstance(value, dict):
        return all(_plain(k) and _plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple, set)):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (torch.Tensor, str, bytes, int, float, bool,
                                               torch.dtype, torch.device, torch.Size))


def load_foreign_checkpoint(source: Any, map_location: Any) -> tuple[dict, list[str]]:
    """The plain entries of a checkpoint (a local path or a binary file object) that needs
    classes outside torch's allowlist.

    Returns:
        ``(checkpoint, skipped)``: ``state_dict``, ``meta`` (its plain items) and ``optimizer``
        (when plain), and the names of the entries left out.

    Raises:
        ValueError: The file holds no dict with a plain ``state_dict``.
    """
    with torch.serialization.safe_globals(_placeholders(source)):
        loaded = torch.load(source, map_location=map_location, weights_only=True)
    state = loaded.get("state_dict") if isinstance(loaded, dict) else None
    if not isinstance(state, dict) or not _plain(state):
        raise ValueError("it holds no plain 'state_dict' (only tensors and builtin types)")
    checkpoint = {"state_dict": state}
    meta = loaded.get("meta")
    if isinstance(meta, dict):
        checkpoint["meta"] = {k: v for k, v in meta.items() if _plain(k) and _plain(v)}
    if "optimizer" in loaded and _plain(loaded["optimizer"]):
        checkpoint["optimizer"] = loaded["optimizer"]
    skipped = sorted(str(k) for k in loaded if k not in checkpoint)
    return checkpoint, skipped
