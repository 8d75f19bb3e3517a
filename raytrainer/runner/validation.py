"""Up-front checks of a Runner config: wrong values fail before anything is built or written.

This module owns the value checks that need no built component: loop lengths and intervals,
checkpoint intervals and retention, optimizer numbers and gradient clipping, the seed,
dataloader sizes, component configs without ``type``, ``topk`` against the model's class count,
and typos among the top-level keys. Each error is a :class:`~raytrainer.config.ConfigError`
naming the dotted config key and what was expected. The Runner runs :func:`check_runner_args`
when it is created; the Ray driver's preflight runs :func:`check_config` on the driver, so
these mistakes fail there in seconds, before any worker starts. It must not build, import user
code or touch storage.
"""
from __future__ import annotations

import difflib
import inspect
import math
import warnings
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from ..config import ConfigError, ConfigWarning
from ..config.ray_settings import RaySettings
from ..registry import RUNNERS

# Top-level keys that are not Runner arguments but that raytrainer or MMEngine configs use.
_OTHER_TOP_LEVEL_KEYS = frozenset({
    "_base_", "custom_imports", "ray", "storage", "resume", "load_strict", "cfg",
    "tta_model", "tta_pipeline", "dataset_type", "data_root", "backend_args",
    "train_pipeline", "val_pipeline", "test_pipeline", "vis_backends", "base_lr",
    "compile", "img_scale", "file_client_args", "data_preprocessor", "norm_cfg", "log_config",
    "checkpoint_config", "dist_params", "workflow", "gpu_ids", "auto_resume"})
_TYPO_CUTOFF = 0.75
_DATALOADERS = ("train_dataloader", "val_dataloader", "test_dataloader")
_EVALUATORS = ("val_evaluator", "test_evaluator")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_number(value: Any) -> bool:
    return _is_number(value) and math.isfinite(value) and value > 0


def _positive_int(value: Any, key: str) -> None:
    if not _is_int(value) or value < 1:
        raise ConfigError(f"{key} must be a positive integer, got {value!r}")


def _typed(cfg: Any, key: str) -> None:
    if isinstance(cfg, Mapping) and "type" not in cfg:
        raise ConfigError(f"{key} has no 'type'; got keys {sorted(cfg)} (give e.g. "
                          f"{key}=dict(type='...', ...))")


def known_top_level_keys() -> frozenset[str]:
    """The Runner's keyword arguments plus the other keys raytrainer/MMEngine configs use.

    The Runner class comes from the ``RUNNERS`` registry, the same lookup that builds it, so
    this module (which the Runner runs) does not import the Runner back.
    """
    params = inspect.signature(RUNNERS.get("Runner").__init__).parameters
    return frozenset(params) - {"self"} | _OTHER_TOP_LEVEL_KEYS


def warn_unknown_keys(cfg: Mapping) -> list[str]:
    """Warn (:class:`ConfigWarning`) about top-level keys that look like typos of known ones.

    MMEngine configs carry their own variables (``data_root``, pipelines ...), so an unknown
    key is only reported when it is close to a key the Runner reads (``trian_cfg``).

    Returns:
        The warning messages.
    """
    known = known_top_level_keys()
    messages = []
    for key in cfg:
        if not isinstance(key, str) or key in known or key.startswith("_"):
            continue
        close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=_TYPO_CUTOFF)
        if close:
            messages.append(f"config key '{key}' is not used by the Runner; did you mean "
                            f"'{close[0]}'?")
    for message in messages:
        warnings.warn(message, ConfigWarning, stacklevel=2)
    return messages


def _check_train_cfg(cfg: Any) -> None:
    if not isinstance(cfg, Mapping):
        return
    by_epoch = cfg.get("by_epoch", True)
    if "type" not in cfg and not isinstance(by_epoch, bool):
        raise ConfigError(f"train_cfg.by_epoch must be True or False, got {by_epoch!r}")
    for name in ("max_epochs", "max_iters", "val_interval"):
        if name in cfg:
            _positive_int(cfg[name], f"train_cfg.{name}")
    if "val_begin" in cfg and (not _is_int(cfg["val_begin"]) or cfg["val_begin"] < 0):
        raise ConfigError(f"train_cfg.val_begin must be an integer >= 0, got "
                          f"{cfg['val_begin']!r}")
    if "type" not in cfg:
        length = "max_epochs" if by_epoch else "max_iters"
        if length not in cfg:
            raise ConfigError(f"train_cfg needs {length} (by_epoch={by_epoch}); got keys "
                              f"{sorted(cfg)}")


def _check_checkpoint_hook(cfg: Any, key: str) -> None:
    if not isinstance(cfg, Mapping) or cfg.get("type") != "CheckpointHook":
        return
    interval = cfg.get("interval", -1)
    if not _is_int(interval) or interval == 0 or interval < -1:
        raise ConfigError(f"{key}.interval must be a positive integer (save every N "
                          f"epochs/iterations) or -1 (no periodic saving), got {interval!r}")
    keep = cfg.get("max_keep_ckpts", -1)
    if not _is_int(keep) or keep == 0 or keep < -1:
        raise ConfigError(f"{key}.max_keep_ckpts must be -1 (keep every checkpoint) or a "
                          f"positive integer, got {keep!r}")


def _check_hooks(default_hooks: Any, custom_hooks: Any) -> None:
    if isinstance(default_hooks, Mapping):
        for name, hook in default_hooks.items():
            _typed(hook, f"default_hooks.{name}")
            _check_checkpoint_hook(hook, f"default_hooks.{name}")
    if custom_hooks is None:
        return
    if not isinstance(custom_hooks, (list, tuple)):
        raise ConfigError(f"custom_hooks must be a list of hook configs, got "
                          f"{type(custom_hooks).__name__}")
    for i, hook in enumerate(custom_hooks):
        _typed(hook, f"custom_hooks.{i}")
        _check_checkpoint_hook(hook, f"custom_hooks.{i}")


def _check_optimizer(optim_wrapper: Any) -> None:
    if not isinstance(optim_wrapper, Mapping):
        return
    _check_clip_grad(optim_wrapper.get("clip_grad"))
    optimizer = optim_wrapper.get("optimizer")
    if not isinstance(optimizer, Mapping):
        return
    for name in ("lr", "momentum", "weight_decay", "eps"):
        if name in optimizer:
            value = optimizer[name]
            if not _is_number(value) or value < 0:
                raise ConfigError(f"optim_wrapper.optimizer.{name} must be a number >= 0, got "
                                  f"{value!r}")


def _check_clip_grad(clip_grad: Any) -> None:
    if not isinstance(clip_grad, Mapping):
        return
    key = "optim_wrapper.clip_grad"
    if clip_grad.get("type", "norm") == "value":
        if "clip_value" in clip_grad and not _positive_number(clip_grad["clip_value"]):
            raise ConfigError(f"{key}.clip_value must be a number > 0, got "
                              f"{clip_grad['clip_value']!r}")
        return
    if "max_norm" in clip_grad and not _positive_number(clip_grad["max_norm"]):
        raise ConfigError(f"{key}.max_norm must be a number > 0 (the largest gradient norm "
                          f"kept), got {clip_grad['max_norm']!r}")
    norm_type = clip_grad.get("norm_type", 2.0)
    if norm_type != "inf" and (not _is_number(norm_type) or not norm_type >= 1):
        raise ConfigError(f"{key}.norm_type must be a number >= 1 (2 for the Euclidean norm) "
                          f"or float('inf'), got {norm_type!r}")


def check_randomness(randomness: Any) -> None:
    """``randomness.seed`` is None or an integer >= 0 (the driver reads it before the rest).

    Raises:
        ConfigError: naming ``randomness.seed``.
    """
    if not isinstance(randomness, Mapping):
        return
    seed = randomness.get("seed")
    if seed is not None and (not _is_int(seed) or seed < 0):
        raise ConfigError(f"randomness.seed must be an integer >= 0 or None (drawn once per "
                          f"run), got {seed!r}")


def _check_dataloader(cfg: Any, key: str) -> None:
    if not isinstance(cfg, Mapping):
        return
    if "batch_size" in cfg:
        _positive_int(cfg["batch_size"], f"{key}.batch_size")
    workers = cfg.get("num_workers", 0)
    if not _is_int(workers) or workers < 0:
        raise ConfigError(f"{key}.num_workers must be an integer >= 0, got {workers!r}")
    _typed(cfg.get("dataset"), f"{key}.dataset")
    _typed(cfg.get("sampler"), f"{key}.sampler")
    _typed(cfg.get("batch_sampler"), f"{key}.batch_sampler")


def _metric_items(evaluator: Any, key: str) -> list[tuple[Any, str]]:
    if isinstance(evaluator, Mapping) and "metrics" in evaluator:
        evaluator, key = evaluator["metrics"], f"{key}.metrics"
    if isinstance(evaluator, (list, tuple)):
        return [(item, f"{key}.{i}") for i, item in enumerate(evaluator)]
    return [(evaluator, key)]


def _check_topk(evaluator: Any, key: str, num_classes: Any) -> None:
    for metric, metric_key in _metric_items(evaluator, key):
        if not isinstance(metric, Mapping) or metric.get("type") != "Accuracy":
            continue
        topk = metric.get("topk", (1,))
        values = (topk,) if _is_int(topk) else tuple(topk) if isinstance(topk, (list, tuple)) \
            else None
        if not values or not all(_is_int(k) and k >= 1 for k in values):
            raise ConfigError(f"{metric_key}.topk must be a positive integer or a tuple of them, "
                              f"got {topk!r}")
        if _is_int(num_classes) and max(values) > num_classes:
            raise ConfigError(f"{metric_key}.topk={topk!r} asks for the top {max(values)} "
                              f"predictions, but model.num_classes={num_classes}; use k <= "
                              f"{num_classes}")


def check_runner_args(args: Mapping[str, Any]) -> None:
    """Check the Runner's arguments (``train_cfg``, ``optim_wrapper`` ...) before building.

    Args:
        args: Runner keyword arguments by name (missing or None ones are skipped).

    Raises:
        ConfigError: naming the dotted key and what was expected.
    """
    _check_train_cfg(args.get("train_cfg"))
    _check_hooks(args.get("default_hooks"), args.get("custom_hooks"))
    _check_optimizer(args.get("optim_wrapper"))
    check_randomness(args.get("randomness"))
    for name in _DATALOADERS:
        _check_dataloader(args.get(name), name)
    _typed(args.get("model"), "model")
    model = args.get("model")
    num_classes = model.get("num_classes") if isinstance(model, Mapping) else \
        getattr(model, "num_classes", None)
    for name in _EVALUATORS:
        _check_topk(args.get(name), name, num_classes)
    strict = args.get("load_strict", True)
    if not isinstance(strict, bool):
        raise ConfigError(f"load_strict must be True or False, got {strict!r}")


def check_ray_section(section: Any) -> None:
    """The ``ray`` section's keys and values, checked whether or not the run uses Ray.

    Raises:
        ConfigError: An unknown key (with the known ones) or a wrong value.
    """
    if section is None:
        return
    if not isinstance(section, Mapping):
        raise ConfigError(f"ray must be a dict of Ray Train settings, got {section!r}")
    known = sorted(f.name for f in fields(RaySettings))
    for key in section:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f"did you mean 'ray.{close[0]}'? " if close else ""
            raise ConfigError(f"ray.{key} is not a Ray setting; {hint}known keys: "
                              f"{', '.join(known)}")
    RaySettings.from_config(section)


def check_config(cfg: Mapping, launcher: str) -> None:
    """Every check of this module on a full config.

    Args:
        cfg: The config (as ``Config.fromfile`` returns, overrides applied).
        launcher: ``'ray'``, ``'pytorch'`` or ``'none'``.

    Raises:
        ConfigError: naming the dotted key and what was expected.
    """
    warn_unknown_keys(cfg)
    check_ray_section(cfg.get("ray"))
    check_runner_args(cfg)
    check_launcher(cfg.get("strategy"), cfg.get("model_wrapper_cfg"), launcher)


_SINGLE_PROCESS_STRATEGIES = ("SingleDeviceStrategy",)


def check_launcher(strategy: Any, model_wrapper_cfg: Any, launcher: str) -> None:
    """A distributed strategy needs a launcher that starts the processes.

    Raises:
        ConfigError: ``strategy`` is distributed (DDP, FSDP ...) and ``launcher`` is 'none'.
    """
    if launcher != "none":
        return
    if isinstance(strategy, Mapping):
        name = strategy.get("type")
        name = getattr(name, "__name__", name)
    elif strategy is not None:
        name = type(strategy).__name__
    else:
        name = None
    if name is not None and name not in _SINGLE_PROCESS_STRATEGIES:
        raise ConfigError(
            f"strategy={name} is distributed and needs a launcher that starts its processes, "
            "but the launcher is 'none' (one process): run `raytrainer train CONFIG` (--launcher "
            "ray, the default) or torchrun with launcher='pytorch'; to train in one process, "
            "remove 'strategy'")
    if model_wrapper_cfg:
        warnings.warn("model_wrapper_cfg is ignored with launcher 'none' (one process, no DDP "
                      "wrapper); it applies under --launcher ray or launcher='pytorch'",
                      ConfigWarning, stacklevel=2)


__all__ = ["ConfigWarning", "check_config", "check_runner_args", "check_launcher",
           "check_randomness", "check_ray_section",
           "warn_unknown_keys", "known_top_level_keys"]
