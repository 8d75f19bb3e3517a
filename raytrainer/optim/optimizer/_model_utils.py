"""Questions the optimizer package asks about a model: its unwrapped form, BatchNorm, device.

Kept apart so the wrappers and the constructor share one answer; this module never changes the
model.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.parallel import DataParallel, DistributedDataParallel


def unwrap_model(model: nn.Module) -> nn.Module:
    """The user's model inside DDP-style wrappers, so parameter names lose ``module.``.

    A module counts as a wrapper when it is DDP/DataParallel, or when its ``module`` attribute
    holds every one of its parameters: then unwrapping loses nothing. A model that merely has a
    child called ``module`` next to other parameters is left alone.
    """
    while isinstance(getattr(model, "module", None), nn.Module):
        inner = model.module
        if not isinstance(model, (DistributedDataParallel, DataParallel)):
            outer_ids = {id(p) for p in model.parameters()}
            if outer_ids != {id(p) for p in inner.parameters()}:
                break
        model = inner
    return model


def has_batch_norm(model: nn.Module) -> bool:
    """True when any sub-module is a BatchNorm (incl. SyncBatchNorm)."""
    return any(isinstance(module, _BatchNorm) for module in model.modules())


def device_type_of(params: Iterable[torch.Tensor], default: str = "cpu") -> str:
    """``'cuda'``/``'cpu'``/... of the first tensor in ``params``; ``default`` when empty."""
    for param in params:
        return param.device.type
    return default
