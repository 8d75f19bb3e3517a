"""Builders the runner uses for its components, kept out of the Runner class.

Each function turns a config (or an already-built object) into a component, naming the config
key in every error. Nothing here runs a loop or writes files.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..dataset.loader_info import batch_size_of
from ..optim import OptimWrapperDict, wrappers_of
from ..registry import PARAM_SCHEDULERS, STRATEGIES, build_from_cfg
from ..strategy import ddp_strategy_cfg


def build_strategy(strategy: Any, launcher: str, model_wrapper_cfg: dict | None,
                   find_unused_parameters: bool, backend: str | None = None):
    """The run's strategy: ``strategy`` if given, else one device for ``launcher='none'`` and
    DDP (with MMEngine's ``model_wrapper_cfg``/``find_unused_parameters``) otherwise."""
    if strategy is not None:
        if model_wrapper_cfg or find_unused_parameters:
            raise ValueError("give DDP options either in 'strategy' or in "
                             "'model_wrapper_cfg'/'find_unused_parameters', not both")
    elif launcher == "none":
        strategy = dict(type="SingleDeviceStrategy")
    else:
        strategy = ddp_strategy_cfg(model_wrapper_cfg, find_unused_parameters,
                                    launcher=launcher, backend=backend)
    return build_from_cfg(strategy, STRATEGIES, key="strategy")


def _scheduler_list(cfg: Any, optim_wrapper, key: str, runner) -> list:
    items = cfg if isinstance(cfg, Sequence) and not isinstance(cfg, Mapping) else [cfg]
    built = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            built.append(item)
            continue
        args = dict(item)
        loop = runner.train_loop_or_none
        if loop is not None:
            args.setdefault("end", loop.max_epochs if args.get("by_epoch", True)
                            else loop.max_iters)
        defaults = dict(optimizer=optim_wrapper)
        if loop is not None:
            defaults["epoch_length"] = len(loop.dataloader)
        built.append(PARAM_SCHEDULERS.build_func(
            args, PARAM_SCHEDULERS, defaults, key=f"{key}.{i}" if len(items) > 1 else key))
    return built


def build_param_schedulers(cfg: Any, optim_wrapper, runner) -> list | dict:
    """Build schedulers for one optimizer (a list) or for each of an OptimWrapperDict (a dict).

    ``end`` defaults to the train loop's max epochs/iters; ``convert_to_iter_based=True`` turns an
    epoch-based schedule into an iteration-based one using the train dataloader's length.
    """
    if isinstance(optim_wrapper, OptimWrapperDict):
        per_name = isinstance(cfg, Mapping) and "type" not in cfg
        if per_name:
            unknown = set(cfg) - set(optim_wrapper.keys())
            if unknown:
                raise KeyError(f"param_scheduler names {sorted(unknown)} do not match the optim "
                               f"wrappers {sorted(optim_wrapper.keys())}")
        return {name: _scheduler_list(cfg[name] if per_name else cfg, wrapper,
                                      f"param_scheduler.{name}" if per_name else
                                      "param_scheduler", runner)
                for name, wrapper in optim_wrapper.items() if not per_name or name in cfg}
    return _scheduler_list(cfg, optim_wrapper, "param_scheduler", runner)


def real_batch_size(runner, optim_wrapper) -> tuple[int, int, int]:
    """``(world_size, per-rank batch size, accumulative_counts)`` of this run."""
    batch = batch_size_of(runner.train_dataloader, default=None)
    if batch is None:
        raise ValueError("auto_scale_lr needs the train dataloader's batch_size")
    accumulation = max(getattr(w, "_accumulative_counts", 1) for w in wrappers_of(optim_wrapper))
    return runner.world_size, int(batch), int(accumulation)


def scale_lr(runner, optim_wrapper, auto_scale_lr: Mapping | None) -> float | None:
    """Scale every param group's lr by real batch / ``base_batch_size``; returns the factor.

    The real batch is world size × per-rank batch × gradient accumulation steps: accumulated
    iterations form one optimizer step, so they count towards the batch the lr applies to.
    """
    if not auto_scale_lr or not auto_scale_lr.get("enable", False):
        return None
    if "base_batch_size" not in auto_scale_lr:
        raise KeyError("auto_scale_lr.base_batch_size is required when auto_scale_lr.enable=True")
    base = auto_scale_lr["base_batch_size"]
    if not isinstance(base, (int, float)) or base <= 0:
        raise ValueError(f"auto_scale_lr.base_batch_size must be a positive number, got {base!r}")
    world, batch, accumulation = real_batch_size(runner, optim_wrapper)
    real = world * batch * accumulation
    factor = real / float(base)
    for wrapper in wrappers_of(optim_wrapper):
        for group in wrapper.optimizer.param_groups:
            group["lr"] = group["lr"] * factor
    runner.logger.info(
        f"auto_scale_lr: real batch size {real} = {world} ranks x {batch} per rank x "
        f"{accumulation} accumulation steps; base batch size {base}; lr scaled by {factor:g}")
    return factor
