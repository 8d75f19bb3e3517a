"""Registering ``torch.optim`` optimizers, and ``build_optim_wrapper``: config → optim wrapper.

It owns the choice between the ways an ``optim_wrapper`` config can be written (one optimizer,
a built optimizer, a custom constructor, or one config per sub-model) and the config keys errors
name. Per-parameter options belong to the constructor.
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn

from ...model.wrappers import unwrap_model
from ...registry import (
    OPTIM_WRAPPER_CONSTRUCTORS,
    OPTIM_WRAPPERS,
    OPTIMIZERS,
    UnknownTypeError,
    build_from_cfg,
)
from .base import BaseOptimWrapper
from .optimizer_wrapper import OptimWrapper
from .optimizer_wrapper_dict import OptimWrapperDict

__all__ = ["build_optim_wrapper", "register_torch_optimizers", "TORCH_OPTIMIZERS"]


def register_torch_optimizers() -> list[str]:
    """Register every ``torch.optim.Optimizer`` subclass in ``torch.optim`` under its name.

    ``Adafactor`` is also registered as ``'TorchAdafactor'``, the name MMEngine configs use.

    Returns:
        The registered names.
    """
    names = []
    for name, obj in vars(torch.optim).items():
        if not (inspect.isclass(obj) and issubclass(obj, torch.optim.Optimizer)) \
                or obj is torch.optim.Optimizer:
            continue
        aliases = [name, "TorchAdafactor"] if name == "Adafactor" else [name]
        OPTIMIZERS.register_module(name=aliases, module=obj)
        names.extend(aliases)
    return sorted(names)


TORCH_OPTIMIZERS = register_torch_optimizers()


def build_optim_wrapper(model: nn.Module, cfg: Mapping | BaseOptimWrapper,
                        key: str = "optim_wrapper") -> OptimWrapper | OptimWrapperDict:
    """Build the optim wrapper an ``optim_wrapper`` config describes.

    ``cfg`` may be:

    - ``dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01), paramwise_cfg=...,
      constructor='DefaultOptimWrapperConstructor', **wrapper_args)``; ``type`` and
      ``constructor`` default as shown;
    - the same with ``optimizer`` an already built ``torch.optim.Optimizer``;
    - several named configs (or built optim wrappers) without ``type`` / ``optimizer``: each
      is built over the model's sub-module of that name, giving an :class:`OptimWrapperDict`
      (``dict(generator=dict(optimizer=...), discriminator=dict(optimizer=...))``);
    - an already built wrapper, returned unchanged.

    Args:
        model: The model to optimize (DDP wrappers are looked through).
        cfg: The config, as above. It is not modified.
        key: The config key ``cfg`` came from, quoted in errors.

    Returns:
        An :class:`OptimWrapper` (or subclass), or an :class:`OptimWrapperDict`.

    Raises:
        ValueError: No ``optimizer``, or a named config whose sub-module the model lacks.
        UnknownTypeError: An unregistered optimizer, wrapper or constructor type.
    """
    if isinstance(cfg, BaseOptimWrapper):
        return cfg
    if not isinstance(cfg, Mapping):
        raise TypeError(f"'{key}' must be a dict or a built optim wrapper, got {type(cfg)}")
    cfg = dict(cfg)
    if "optimizer" not in cfg and "constructor" not in cfg:
        if _is_per_submodule(cfg):
            return _build_optim_wrapper_dict(model, cfg, key)
        raise ValueError(f"config '{key}' has no 'optimizer' key; set e.g. "
                         f"{key}.optimizer=dict(type='SGD', lr=0.01), or give one named optim "
                         f"wrapper config per sub-model for several optimizers")
    if isinstance(cfg.get("optimizer"), torch.optim.Optimizer):
        return _wrap_built_optimizer(cfg, key)
    constructor = cfg.pop("constructor", "DefaultOptimWrapperConstructor")
    paramwise_cfg = cfg.pop("paramwise_cfg", None)
    _check_registered(constructor, f"{key}.constructor")
    optim_wrapper_constructor = build_from_cfg(
        dict(type=constructor, optim_wrapper_cfg=cfg, paramwise_cfg=paramwise_cfg),
        OPTIM_WRAPPER_CONSTRUCTORS, key=key)
    return optim_wrapper_constructor(model)


def _is_per_submodule(cfg: dict) -> bool:
    return bool(cfg) and "type" not in cfg and all(
        isinstance(value, (Mapping, OptimWrapper)) for value in cfg.values())


def _build_optim_wrapper_dict(model: nn.Module, cfg: dict, key: str) -> OptimWrapperDict:
    model = unwrap_model(model)
    wrappers: dict[str, Any] = {}
    for name, sub_cfg in cfg.items():
        if isinstance(sub_cfg, OptimWrapper):
            wrappers[name] = sub_cfg
            continue
        sub_model = getattr(model, name, None)
        if not isinstance(sub_model, nn.Module):
            children = [child for child, _ in model.named_children()]
            raise ValueError(f"'{key}.{name}': a per-sub-model optim wrapper config needs a "
                             f"sub-module named '{name}' on {type(model).__name__}; its "
                             f"sub-modules are {children}")
        wrappers[name] = build_optim_wrapper(sub_model, sub_cfg, key=f"{key}.{name}")
    return OptimWrapperDict(**wrappers)


def _wrap_built_optimizer(cfg: dict, key: str) -> OptimWrapper:
    for option in ("paramwise_cfg", "constructor"):
        if option in cfg:
            raise ValueError(f"'{key}.{option}' cannot apply to an optimizer that is already "
                             f"built; give '{key}.optimizer' as a config dict instead")
    cfg.setdefault("type", "OptimWrapper")
    return build_from_cfg(cfg, OPTIM_WRAPPERS, key=key)


def _check_registered(constructor: Any, key: str) -> None:
    if not isinstance(constructor, str) or OPTIM_WRAPPER_CONSTRUCTORS.get(constructor):
        return
    message = f"'{constructor}' is not registered in the {OPTIM_WRAPPER_CONSTRUCTORS.name} " \
              f"registry (config key '{key}')"
    matches = OPTIM_WRAPPER_CONSTRUCTORS.close_matches(constructor)
    if matches:
        message += "; did you mean " + " or ".join(f"'{m}'" for m in matches) + "?"
    raise UnknownTypeError(message)
