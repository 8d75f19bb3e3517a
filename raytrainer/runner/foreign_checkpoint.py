"""Reading the weights of checkpoints written by other engines (MMEngine ``.pth``) without
running code from them.

MMEngine pickles its ``message_hub`` (``HistoryBuffer`` objects holding numpy arrays) next to
the weights, so ``torch.load(weights_only=True)`` refuses the file. Here the file is unpickled
with torch's weights-only allowlist for everything torch itself writes (tensors, storages,
dtypes, ``OrderedDict`` ...); every other class or function the file names is replaced by an
inert placeholder that only records its arguments, so nothing foreign is ever imported or
called. Only plain entries (``state_dict``, ``meta``, ``optimizer``) are kept.

This module owns that reader; choosing when to use it is :mod:`.checkpoint`'s business.
"""
from __future__ import annotations

import pickle
from typing import Any

import torch


class Opaque:
    """Stands in for an object of a class that is not loaded; remembers what it was given."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.args, self.kwargs, self.state = args, kwargs, None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __call__(self, *args: Any, **kwargs: Any) -> Opaque:
        return Opaque(*args, **kwargs)


def _opaque_class(module: str, name: str) -> type:
    return type(name, (Opaque,), {"__module__": f"raytrainer.opaque.{module}"})


def _allowed_globals() -> dict[str, Any]:
    from torch import _weights_only_unpickler

    return _weights_only_unpickler._get_allowed_globals()


class _Unpickler(pickle.Unpickler):
    """Resolves only the globals torch's weights-only loader allows; the rest are opaque."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._allowed = _allowed_globals()  # built once per file, not per global it names

    def find_class(self, module: str, name: str) -> Any:
        allowed = self._allowed.get(f"{module}.{name}")
        return allowed if allowed is not None else _opaque_class(module, name)


class _PickleModule:
    """What ``torch.load(pickle_module=...)`` needs: an ``Unpickler`` and ``load``."""

    Unpickler = _Unpickler

    @staticmethod
    def load(file, **kwargs):  # legacy (non-zip) torch files
        return _Unpickler(file, **kwargs).load()


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
    loaded = torch.load(source, map_location=map_location, weights_only=False,
                        pickle_module=_PickleModule)
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
