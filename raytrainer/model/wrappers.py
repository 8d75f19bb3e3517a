"""Model wrappers (DDP ...) and how to look through them to the user's model."""
from __future__ import annotations

import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from ..registry import MODEL_WRAPPERS

MODEL_WRAPPERS.register_module(module=DistributedDataParallel)


def is_model_wrapper(model: nn.Module) -> bool:
    """True for DDP or any class registered in ``MODEL_WRAPPERS``."""
    return any(isinstance(model, cls) for cls in MODEL_WRAPPERS.module_dict.values()
               if isinstance(cls, type))


def unwrap_model(model: nn.Module) -> nn.Module:
    """The user's model inside any number of wrappers."""
    while is_model_wrapper(model):
        model = model.module
    return model
