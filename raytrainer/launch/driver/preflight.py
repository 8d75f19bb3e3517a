"""Checks the driver runs before asking Ray for workers, so that bad input fails in seconds
with a message naming the config key, file or location, instead of inside every worker."""
from __future__ import annotations

import inspect
import uuid
from collections.abc import Mapping
from typing import Any

import torch

from ... import registry, storage
from ...checkpoint import CheckpointError, list_checkpoints, read_commit
from ...checkpoint.folder import checkpoint_dir_of
from ...checkpoint.reading import (
    CheckpointKeyMismatch,
    check_keys,
    check_shapes,
    open_checkpoint,
    stored_model_shapes,
    with_config_differences,
)
from ...config import Config, ConfigError
from ...model.wrappers import unwrap_model
from ...registry import UnknownTypeError
from ...runner import validation

_DATALOADERS = ("train_dataloader", "val_dataloader", "test_dataloader")


def _typed(cfg: Any) -> bool:
    return isinstance(cfg, Mapping) and isinstance(cfg.get("type"), str)


def _check(cfg: Any, reg: registry.Registry, key: str) -> None:
    if _typed(cfg) and reg.get(cfg["type"]) is None:
        registry._resolve_type(cfg["type"], reg, key)  # raises with close matches


def _items(value: Any, key: str):
    if isinstance(value, (list, tuple)):
        return [(item, f"{key}.{i}") for i, item in enumerate(value)]
    return [(value, key)]


def check_types(cfg: Config) -> None:
    """Every ``type`` the runner will build names something registered or importable.

    Raises:
        UnknownTypeError: naming the registry, the config key and close matches.
    """
    _check(cfg.get("model"), registry.MODELS, "model")
    optim = cfg.get("optim_wrapper")
    if isinstance(optim, Mapping):
        _check(optim, registry.OPTIM_WRAPPERS, "optim_wrapper")
        _check(optim.get("optimizer"), registry.OPTIMIZERS, "optim_wrapper.optimizer")
    for item, key in _items(cfg.get("param_scheduler"), "param_scheduler"):
        _check(item, registry.PARAM_SCHEDULERS, key)
    for name in _DATALOADERS:
        loader = cfg.get(name)
        if isinstance(loader, Mapping):
            _check(loader.get("dataset"), registry.DATASETS, f"{name}.dataset")
            _check(loader.get("sampler"), registry.DATA_SAMPLERS, f"{name}.sampler")
            _check(loader.get("collate_fn"), registry.FUNCTIONS, f"{name}.collate_fn")
    for name in ("val_evaluator", "test_evaluator"):
        for item, key in _items(cfg.get(name), name):
            if isinstance(item, Mapping) and "metrics" not in item:
                _check(item, registry.METRICS, key)
    for name, hook in (cfg.get("default_hooks") or {}).items():
        _check(hook, registry.HOOKS, f"default_hooks.{name}")
    for item, key in _items(cfg.get("custom_hooks") or [], "custom_hooks"):
        _check(item, registry.HOOKS, key)
    _check(cfg.get("train_cfg"), registry.LOOPS, "train_cfg")
    _check(cfg.get("strategy"), registry.STRATEGIES, "strategy")


def _check_arguments(cfg: Any, reg: registry.Registry, key: str, complete: bool) -> None:
    """The config's keyword arguments fit the constructor ``type`` names (all required ones
    given, when ``complete``), as the worker's build would find, without running it."""
    if not _typed(cfg):
        return
    target = reg.get(cfg["type"])
    if target is None or not callable(target):
        return
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):  # a builtin or C type without one: the build will tell
        return
    kwargs = {name: value for name, value in cfg.items() if name != "type"}
    try:
        (signature.bind if complete else signature.bind_partial)(**kwargs)
    except TypeError as exc:
        name = getattr(target, "__name__", cfg["type"])
        error = TypeError(f"{name}{signature}: {exc}")
        error.add_note(f"raised while building {reg.name} '{name}' from config key '{key}'")
        raise error from None


def check_arguments(cfg: Config) -> None:
    """The model's and the datasets' constructors accept their config's arguments, and the
    model gets every one it requires (a typo such as ``hiden_dims`` in the config file fails
    here, in seconds, instead of in every worker).

    Raises:
        TypeError: Naming the class, its signature, the argument and the config key.
    """
    _check_arguments(cfg.get("model"), registry.MODELS, "model", complete=True)
    for name in _DATALOADERS:
        loader = cfg.get(name)
        if isinstance(loader, Mapping):
            _check_arguments(loader.get("dataset"), registry.DATASETS, f"{name}.dataset",
                             complete=False)


def check_loop(cfg: Config, mode: str) -> None:
    """``val``/``test`` runs have their dataloader, loop config and evaluator.

    Raises:
        ConfigError: Naming the keys the config lacks.
    """
    if mode not in ("val", "test"):
        return
    keys = [f"{mode}_dataloader", f"{mode}_cfg", f"{mode}_evaluator"]
    missing = [key for key in keys if cfg.get(key) is None]
    if missing:
        raise ConfigError(f"{mode} needs {', '.join(keys)}; the config lacks "
                          f"{', '.join(missing)}")


def check_storage(work_dir: str) -> None:
    """The work_dir can be written (a probe file is written and removed) and is shared by
    the processes of a Ray run.

    Raises:
        ConfigError: The work_dir is ``memory://``, which each process has to itself.
        storage.StorageError: naming the location and why it cannot be written.
    """
    if str(work_dir).startswith("memory://"):
        raise ConfigError(f"work_dir {work_dir}: memory:// is private to each process, so Ray "
                          "workers and the driver cannot share it; use a path (one machine) or "
                          "an object store URL (s3://...), or --launcher none")
    probe = storage.join(work_dir, f".raytrainer-probe-{uuid.uuid4().hex[:8]}")
    storage.write_text(probe, "ok")
    storage.remove(probe)


def check_checkpoint(location: str | None, what: str) -> None:
    """``location`` is a single checkpoint file or a committed, complete checkpoint directory.

    Raises:
        FileNotFoundError: Nothing is there.
        CheckpointError: A directory that is not committed or is torn (the message says how).
    """
    if not location:
        return
    if not storage.exists(location):
        raise FileNotFoundError(f"{what}: checkpoint not found: {storage.describe(location)}")
    if storage.is_dir(location):
        try:
            read_commit(str(location).rstrip("/"))
        except CheckpointError as exc:
            raise CheckpointError(f"{what}: {exc}") from exc


def _meta_model(cfg: Config) -> Any:
    """The config's model built on the meta device (no memory, no init), or None when it
    cannot be built here (a constructor that reads files, say): the worker will tell."""
    model_cfg = cfg.get("model")
    if not _typed(model_cfg):
        return None
    model_cfg = dict(model_cfg)
    if cfg.get("data_preprocessor") is not None:
        model_cfg.setdefault("data_preprocessor", cfg["data_preprocessor"])
    try:
        with torch.device("meta"):
            return unwrap_model(registry.MODELS.build(model_cfg))
    except Exception:  # noqa: BLE001 - the worker builds it for real and reports
        return None


def check_fits(cfg: Config, location: str | None, what: str, strict: bool) -> None:
    """The weights of the checkpoint at ``location`` fit the config's model, as the worker's
    load would find (checked when the checkpoint's keys can be read without its tensors and
    the model can be built on the meta device; otherwise left to the worker).

    Raises:
        CheckpointKeyMismatch: ``what: the weights in ... do not fit ...``, with the model keys
            whose config differs from the checkpoint's.
    """
    if not location or not storage.is_dir(location):
        return
    try:
        opened = open_checkpoint(str(location).rstrip("/"))
        shapes = stored_model_shapes(opened)
    except Exception:  # noqa: BLE001 - damaged or refused: the workers skip it or say why
        return
    model = _meta_model(cfg) if shapes is not None else None
    if model is None:
        return
    try:
        check_keys(set(shapes), model, opened.location, strict)
        check_shapes(shapes, model, opened.location)
    except CheckpointKeyMismatch as exc:
        error = with_config_differences(exc, opened.meta or {}, cfg, opened.location)
        raise CheckpointKeyMismatch(f"{what}: {error}", getattr(error, "partial", False)) \
            from exc


def _resume_location(cfg: Config, work_dir: str) -> str | None:
    """The checkpoint a training run will resume or load from, if the driver can tell."""
    resume = cfg.get("resume")
    if isinstance(resume, str) and resume != "auto":
        return resume
    if resume in (True, "auto"):
        if cfg.get("load_from"):
            return cfg["load_from"]
        found = list_checkpoints(checkpoint_dir_of(cfg, work_dir), warn=False)
        return found[-1] if found else None
    return None


def preflight(cfg: Config, work_dir: str, mode: str, checkpoint: str | None = None) -> None:
    """Run every check; raise on the first problem."""
    validation.check_config(cfg, launcher="ray")
    check_types(cfg)
    check_arguments(cfg)
    check_loop(cfg, mode)
    check_storage(work_dir)
    if mode == "train":
        resume = cfg.get("resume")
        if isinstance(resume, str) and resume != "auto":
            check_checkpoint(resume, "resume")
        check_checkpoint(cfg.get("load_from"), "load_from")
        resumed = _resume_location(cfg, work_dir)
        if resumed is not None:
            check_fits(cfg, resumed, "resume", strict=True)
        elif cfg.get("load_from"):
            check_fits(cfg, cfg["load_from"], "load_from", strict=bool(cfg.get("load_strict",
                                                                                True)))
    else:
        check_checkpoint(checkpoint, "--checkpoint")
        check_fits(cfg, checkpoint, "--checkpoint", strict=False)


__all__ = ["preflight", "check_arguments", "check_checkpoint", "check_loop", "check_storage",
           "check_types", "UnknownTypeError"]
