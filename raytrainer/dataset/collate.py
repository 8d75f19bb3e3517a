"""Collate functions registered in ``FUNCTIONS`` (``collate_fn=dict(type='default_collate')``)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch.utils.data._utils.collate import default_collate as _torch_default_collate

from ..registry import FUNCTIONS


def _transpose(batch: Sequence, leaf, recurse) -> Any:
    first = batch[0]
    if isinstance(first, (str, bytes)):
        return list(batch)
    if isinstance(first, tuple) and hasattr(first, "_fields"):
        return type(first)(*(recurse(samples) for samples in zip(*batch)))
    if isinstance(first, Mapping):
        return type(first)({key: recurse([item[key] for item in batch]) for key in first})
    if isinstance(first, Sequence):
        size = len(first)
        if any(len(item) != size for item in batch):
            raise RuntimeError("collate: every sample in a batch must have the same length; "
                               f"got lengths {sorted({len(item) for item in batch})}")
        columns = [recurse(list(samples)) for samples in zip(*batch)]
        if isinstance(first, tuple):
            return columns
        try:
            return type(first)(columns)
        except TypeError:
            return columns
    return leaf(batch)


@FUNCTIONS.register_module()
def pseudo_collate(data_batch: Sequence) -> Any:
    """Group samples field by field without stacking (a dict of lists for dict samples)."""
    return _transpose(data_batch, list, pseudo_collate)


@FUNCTIONS.register_module()
def default_collate(data_batch: Sequence) -> Any:
    """Group samples field by field and stack tensors/numbers into batch tensors."""
    return _transpose(data_batch, _torch_default_collate, default_collate)
