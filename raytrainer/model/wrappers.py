"""Model wrappers (DDP ...) and how to look through them to the user's model."""
from __future__ import annotations

import torch.nn as nn
from torch.nn.parallel import DataParallel, DistributedDataParallel

from ..registry import MODEL_WRAPPERS

MODEL_WRAPPERS.register_module(module=DistributedDataParallel)
MODEL_WRAPPERS.register_module(module=DataParallel)


def is_model_wrapper(model: nn.Module) -> bool:
    """True for DDP or any class registered in ``MODEL_WRAPPERS``."""
    return any(isinstance(model, cls) for cls in MODEL_WRAPPERS.module_dict.values()
               if isinstance(cls, type))


def unwrap_model(model: nn.Module) -> nn.Module:
    """The user's model inside any number of wrappers (its parameter names lose ``module.``).

    One rule decides what a wrapper is, for the Runner, the strategies, the hooks and the
    optimizer constructor alike: a module is a wrapper when it is a registered model wrapper
    (DDP, DataParallel, ``MMDistributedDataParallel`` or any class in ``MODEL_WRAPPERS``), or
    when it has no ``train_step`` of its own and its ``module`` child holds every one of its
    parameters, so that looking through it loses nothing (an unregistered DDP-like wrapper). A
    model that merely has a child called ``module`` beside parameters of its own, or that
    defines ``train_step``, is the user's model and is left alone.
    """
    while isinstance(getattr(model, "module", None), nn.Module):
        inner = model.module
        if not is_model_wrapper(model):
            if hasattr(model, "train_step"):
                break
            if {id(p) for p in model.parameters()} != {id(p) for p in inner.parameters()}:
                break
        model = inner
    return model
