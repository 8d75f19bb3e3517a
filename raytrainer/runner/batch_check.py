"""Turning a shape error at a loop's first step into a message that names the config keys.

A model whose input size does not match its dataset fails inside torch with a message such as
``mat1 and mat2 shapes cannot be multiplied (32x64 and 32x256)``, which names neither the model
nor the dataset. This module owns recognising such an error and describing the batch; the loops
decide when to ask (their first step only, so later steps pay nothing).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from ..config import ConfigError

_SHAPE_ERROR = re.compile(r"shape|size mismatch|must match the size|expected input|but got "
                          r"input of size|dimension", re.IGNORECASE)


class BatchModelMismatch(ValueError):
    """The data a dataloader yields does not fit the model."""


def _shapes(value: Any, name: str, out: list[str], limit: int = 6) -> None:
    if len(out) >= limit:
        return
    if isinstance(value, torch.Tensor):
        out.append(f"{name} {tuple(value.shape)}")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _shapes(item, f"{name}.{key}" if name else str(key), out, limit)
    elif isinstance(value, (list, tuple)) and value and \
            all(isinstance(v, torch.Tensor) for v in value[:limit]):
        for i, item in enumerate(value[:limit]):
            _shapes(item, f"{name}[{i}]", out, limit)


def describe_batch(data_batch: Any) -> str:
    """``'inputs (32, 64), data_samples (32,)'``: the tensor shapes of a batch."""
    shapes: list[str] = []
    _shapes(data_batch, "", shapes)
    return ", ".join(shapes) or type(data_batch).__name__


def mismatch_error(exc: BaseException, data_batch: Any, runner: Any,
                   dataloader_key: str, dataset: Any) -> BaseException | None:
    """A :class:`BatchModelMismatch` for ``exc`` when it is a shape error, else None."""
    if not isinstance(exc, (RuntimeError, ValueError)) or \
            isinstance(exc, (BatchModelMismatch, ConfigError)) or \
            not _SHAPE_ERROR.search(str(exc)):
        return None
    model_cfg = runner.cfg.get("model") if runner.cfg else None
    model = model_cfg.get("type") if isinstance(model_cfg, Mapping) else None
    model = getattr(model, "__name__", model) or runner.model_name
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return BatchModelMismatch(
        f"the first batch of {dataloader_key} does not fit the model: {first_line}. The batch "
        f"holds {describe_batch(data_batch)} from {dataloader_key}.dataset "
        f"({type(dataset).__name__}); check that the 'model' config ({model}: its input size, "
        f"e.g. in_features/in_channels) matches {dataloader_key}.dataset")
