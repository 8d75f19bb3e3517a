"""Questions the optimizer package asks about a model: BatchNorm, device.

Kept apart so the wrappers and the constructor share one answer; this module never changes the
model.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm


def has_batch_norm(model: nn.Module) -> bool:
    """True when any sub-module is a BatchNorm (incl. SyncBatchNorm)."""
    return any(isinstance(module, _BatchNorm) for module in model.modules())


def device_type_of(params: Iterable[torch.Tensor], default: str = "cpu") -> str:
    """``'cuda'``/``'cpu'``/... of the first tensor in ``params``; ``default`` when empty."""
    for param in params:
        return param.device.type
    return default
