"""``DefaultOptimWrapperConstructor``: model + config → optimizer (with per-parameter options)
→ optim wrapper.

It owns ``paramwise_cfg``: which learning rate and weight decay each parameter gets, by name
(``custom_keys``) or by kind (bias, norm, depth-wise conv, 1-D). It builds the optimizer and the
wrapper through the registries and never touches the model's parameters.
"""
from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from typing import Any

import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from ...logging import print_log
from ...model.wrappers import unwrap_model
from ...registry import (
    OPTIM_WRAPPER_CONSTRUCTORS,
    OPTIM_WRAPPERS,
    OPTIMIZERS,
    build_from_cfg,
    current_build_key,
)
from .optimizer_wrapper import OptimWrapper

__all__ = ["DefaultOptimWrapperConstructor"]

_PARAMWISE_KEYS = ("custom_keys", "bias_lr_mult", "bias_decay_mult", "norm_decay_mult",
                   "dwconv_decay_mult", "flat_decay_mult", "bypass_duplicate",
                   "dcn_offset_lr_mult")
_DECAY_MULT_KEYS = ("bias_decay_mult", "norm_decay_mult", "dwconv_decay_mult")
_NORM_TYPES = (_BatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm)


def _params_arg_name(optimizer_type: Any) -> str:
    """The optimizer's first constructor argument (``params``; ``model_params`` for some)."""
    optimizer_cls = OPTIMIZERS.get(optimizer_type) if isinstance(optimizer_type, str) \
        else optimizer_type
    if not callable(optimizer_cls):
        return "params"  # unknown type: the build that follows raises the registry's error
    try:
        return next(iter(inspect.signature(optimizer_cls).parameters), "params")
    except (TypeError, ValueError):
        return "params"


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class DefaultOptimWrapperConstructor:
    """Build an optim wrapper for a model, with optional per-parameter lr / weight decay.

    ``paramwise_cfg`` keys (MMEngine's):

    - ``custom_keys``: ``{substring: dict(lr_mult=, decay_mult=, **group_options)}``. A
      parameter whose dotted name contains a key gets ``lr * lr_mult`` and
      ``weight_decay * decay_mult`` (plus the other options); the longest matching key wins,
      ties go to the alphabetically first. A matched parameter ignores the rules below.
    - ``bias_lr_mult``: lr multiplier for biases outside norm layers.
    - ``norm_decay_mult``, ``bias_decay_mult``, ``dwconv_decay_mult``, ``flat_decay_mult``:
      weight-decay multipliers for norm-layer parameters, biases, depth-wise Conv2d parameters
      and other 1-D parameters; the first that applies and is set wins, in that order.
    - ``bypass_duplicate``: optimize a parameter shared by several modules once, instead of
      raising.

    Args:
        optim_wrapper_cfg: ``dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=...),
            **wrapper_args)``; ``type`` defaults to ``'OptimWrapper'``.
        paramwise_cfg: The per-parameter options above.

    Raises:
        ValueError: No ``optimizer``, an unknown ``paramwise_cfg`` key, or a multiplier whose
            base value (``lr`` / ``weight_decay``) the optimizer config does not set.

    Example:
        >>> constructor = DefaultOptimWrapperConstructor(
        ...     dict(optimizer=dict(type='SGD', lr=0.1, weight_decay=1e-4)),
        ...     paramwise_cfg=dict(norm_decay_mult=0.0, custom_keys={'head': dict(lr_mult=10)}))
        >>> optim_wrapper = constructor(model)
    """

    def __init__(self, optim_wrapper_cfg: Mapping, paramwise_cfg: Mapping | None = None):
        # Built by build_optim_wrapper, the build stack names the config ('optim_wrapper',
        # 'optim_wrapper.generator'); errors from __call__ quote it.
        self.cfg_key = current_build_key() or "optim_wrapper"
        if not isinstance(optim_wrapper_cfg, Mapping):
            raise TypeError(f"'{self.cfg_key}' must be a dict, got {type(optim_wrapper_cfg)}")
        if "optimizer" not in optim_wrapper_cfg:
            raise ValueError(f"config '{self.cfg_key}' has no 'optimizer' key; set e.g. "
                             f"{self.cfg_key}.optimizer=dict(type='SGD', lr=0.01)")
        self.optim_wrapper_cfg = dict(optim_wrapper_cfg)
        self.optimizer_cfg = self.optim_wrapper_cfg.pop("optimizer")
        if not isinstance(self.optimizer_cfg, Mapping):
            raise TypeError(f"'{self.cfg_key}.optimizer' must be a config dict, got "
                            f"{type(self.optimizer_cfg)}")
        if paramwise_cfg is not None and not isinstance(paramwise_cfg, Mapping):
            raise TypeError(f"'{self.cfg_key}.paramwise_cfg' must be None or a dict, got "
                            f"{type(paramwise_cfg)}")
        self.paramwise_cfg = dict(paramwise_cfg or {})
        self.base_lr = self.optimizer_cfg.get("lr")
        self.base_wd = self.optimizer_cfg.get("weight_decay")
        self._validate_paramwise_cfg()
        custom_keys = self.paramwise_cfg.get("custom_keys", {})
        # Longest key first; among equal lengths, alphabetical order (MMEngine's precedence).
        self._sorted_custom_keys = sorted(sorted(custom_keys), key=len, reverse=True)

    def _validate_paramwise_cfg(self) -> None:
        cfg, where = self.paramwise_cfg, f"{self.cfg_key}.paramwise_cfg"
        unknown = sorted(set(cfg) - set(_PARAMWISE_KEYS))
        if unknown:
            raise ValueError(f"'{where}' has unknown keys {unknown}; accepted keys are "
                             f"{list(_PARAMWISE_KEYS)}")
        custom_keys = cfg.get("custom_keys", {})
        if not isinstance(custom_keys, Mapping) or not all(
                isinstance(v, Mapping) for v in custom_keys.values()):
            raise TypeError(f"'{where}.custom_keys' must map name substrings to dicts such as "
                            f"dict(lr_mult=0.1, decay_mult=1.0), got {custom_keys!r}")
        uses_decay = any(k in cfg for k in _DECAY_MULT_KEYS) or any(
            "decay_mult" in v for v in custom_keys.values())
        if uses_decay and self.base_wd is None:
            raise ValueError(f"'{where}' sets a decay multiplier, so "
                             f"'{self.cfg_key}.optimizer.weight_decay' must be set")
        if (custom_keys or "bias_lr_mult" in cfg) and self.base_lr is None:
            raise ValueError(f"'{where}' sets a learning-rate multiplier, so "
                             f"'{self.cfg_key}.optimizer.lr' must be set")
        if "dcn_offset_lr_mult" in cfg:
            print_log(f"'{where}.dcn_offset_lr_mult' is ignored: raytrainer has no deformable "
                      "convolution layers.", logger="current", level=logging.WARNING)

    def __call__(self, model: nn.Module) -> OptimWrapper:
        """Build the optimizer over ``model``'s parameters (unwrapped from DDP) and wrap it."""
        model = unwrap_model(model)
        optimizer_cfg = dict(self.optimizer_cfg)
        if self.paramwise_cfg:
            params: list = []
            self.add_params(params, model)
        else:
            params = list(model.parameters())
        optimizer_cfg[_params_arg_name(optimizer_cfg.get("type"))] = params
        optimizer = build_from_cfg(optimizer_cfg, OPTIMIZERS, key=f"{self.cfg_key}.optimizer")
        wrapper_cfg = dict(self.optim_wrapper_cfg)
        wrapper_cfg.setdefault("type", "OptimWrapper")
        return build_from_cfg(wrapper_cfg, OPTIM_WRAPPERS, dict(optimizer=optimizer),
                              key=self.cfg_key)

    def add_params(self, params: list[dict], module: nn.Module, prefix: str = "") -> None:
        """Append one param group per trainable parameter of ``module`` to ``params``.

        Args:
            params: The param-group list to extend.
            module: The module whose parameters (recursively) are added.
            prefix: The dotted name of ``module`` inside the model.

        Raises:
            ValueError: A parameter is shared by two modules and ``bypass_duplicate`` is off.
        """
        bypass_duplicate = self.paramwise_cfg.get("bypass_duplicate", False)
        seen: dict[int, str] = {}
        for module_name, child in module.named_modules(prefix=prefix, remove_duplicate=False):
            for name, param in child.named_parameters(recurse=False):
                full_name = f"{module_name}.{name}" if module_name else name
                if not param.requires_grad:
                    print_log(f"{full_name} is not optimized: requires_grad=False",
                              logger="current", level=logging.WARNING)
                    continue
                if id(param) in seen:
                    if not bypass_duplicate:
                        raise ValueError(
                            f"parameter '{full_name}' is the same tensor as "
                            f"'{seen[id(param)]}'; set {self.cfg_key}.paramwise_cfg."
                            "bypass_duplicate=True to optimize it once")
                    print_log(f"{full_name} is shared with {seen[id(param)]}; skipped since "
                              "bypass_duplicate=True", logger="current", level=logging.WARNING)
                    continue
                seen[id(param)] = full_name
                group = self._param_group(param, name, full_name, child)
                params.append(group)
                options = {k: v for k, v in group.items() if k != "params"}
                if options:
                    print_log(f"paramwise options of {full_name}: {options}",
                              logger="current")

    def _param_group(self, param: nn.Parameter, name: str, full_name: str,
                     module: nn.Module) -> dict:
        group: dict[str, Any] = {"params": [param]}
        custom_key = next((k for k in self._sorted_custom_keys if k in full_name), None)
        if custom_key is not None:
            options = self.paramwise_cfg["custom_keys"][custom_key]
            group["lr"] = self.base_lr * options.get("lr_mult", 1.0)
            if self.base_wd is not None:
                group["weight_decay"] = self.base_wd * options.get("decay_mult", 1.0)
            # Other entries (momentum, betas ...) are per-group optimizer options.
            group.update(options)
            return group
        is_norm = isinstance(module, _NORM_TYPES)
        bias_lr_mult = self.paramwise_cfg.get("bias_lr_mult")
        if name == "bias" and not is_norm and bias_lr_mult is not None:
            group["lr"] = self.base_lr * bias_lr_mult
        if self.base_wd is not None:
            decay_mult = self._decay_mult(param, name, module, is_norm)
            if decay_mult is not None:
                group["weight_decay"] = self.base_wd * decay_mult
        return group

    def _decay_mult(self, param: nn.Parameter, name: str, module: nn.Module,
                    is_norm: bool) -> float | None:
        """The first applicable multiplier that is set: norm, bias, depth-wise conv, 1-D."""
        is_dwconv = isinstance(module, nn.Conv2d) and module.in_channels == module.groups
        rules = ((is_norm, "norm_decay_mult"), (name == "bias", "bias_decay_mult"),
                 (is_dwconv, "dwconv_decay_mult"), (param.ndim == 1, "flat_decay_mult"))
        for applies, key in rules:
            if applies and self.paramwise_cfg.get(key) is not None:
                return self.paramwise_cfg[key]
        return None
