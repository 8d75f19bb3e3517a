"""Resolve every location a user gives once, on the driver, before any worker starts.

Ray workers do not run in the driver's working directory, so a relative path (``work_dirs/x``,
``--checkpoint work_dirs/x/checkpoints/epoch_5``, a dataset file, a module imported through
``custom_imports``) means something else there. The driver turns each into an absolute path
here; URLs (``s3://...``) are left as they are. Modules next to the config or in the driver's
directory stay importable because the worker puts those directories on ``sys.path``
(:func:`import_roots`).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ... import storage
from ...checkpoint.folder import checkpoint_hook_cfg
from ...config import Config
from ...config.loaders import import_roots as config_import_roots

_DATALOADERS = ("train_dataloader", "val_dataloader", "test_dataloader")
# Dataset arguments that name files or directories (MMEngine's BaseDataset and ours).
_DATASET_PATH_KEYS = ("path", "data_root", "ann_file", "file", "files", "paths")


def absolute(location: Any, base: str) -> Any:
    """``location`` as an absolute path against ``base``; URLs and non-strings unchanged."""
    if not isinstance(location, str) or not location or storage.is_url(location):
        return location
    return os.path.normpath(os.path.join(base, os.path.expanduser(location)))


def _dataset_paths(dataset: Any, base: str) -> Any:
    if not isinstance(dataset, Mapping):
        return dataset
    resolved = dict(dataset)
    for key in _DATASET_PATH_KEYS:
        if key not in resolved:
            continue
        if key == "ann_file" and resolved.get("data_root"):
            continue  # MMEngine joins ann_file to data_root
        value = resolved[key]
        resolved[key] = ([absolute(v, base) for v in value] if isinstance(value, (list, tuple))
                         else absolute(value, base))
    for key in ("dataset", "datasets"):  # wrappers: RepeatDataset, ConcatDataset ...
        inner = resolved.get(key)
        if isinstance(inner, (list, tuple)):
            resolved[key] = [_dataset_paths(d, base) for d in inner]
        elif inner is not None:
            resolved[key] = _dataset_paths(inner, base)
    return resolved


def resolve_locations(cfg: Config, checkpoint: str | None = None,
                      base: str | None = None) -> tuple[Config, str | None]:
    """Make ``work_dir``, ``load_from``, ``resume``, the checkpoint hook's ``out_dir``, dataset
    paths and ``checkpoint`` absolute against ``base`` (the driver's working directory).

    Returns:
        ``(cfg, checkpoint)``: a new config and the resolved checkpoint.
    """
    base = base or os.getcwd()
    values = cfg.to_dict()
    for key in ("work_dir", "load_from"):
        values[key] = absolute(values.get(key), base)
    if isinstance(values.get("resume"), str) and values["resume"] != "auto":
        values["resume"] = absolute(values["resume"], base)
    hooks = values.get("default_hooks")
    hook = checkpoint_hook_cfg(values) if isinstance(hooks, Mapping) else {}
    if hook.get("out_dir"):
        hook["out_dir"] = absolute(hook["out_dir"], base)
        values["default_hooks"] = {**hooks, "checkpoint": hook}
    for name in _DATALOADERS:
        loader = values.get(name)
        if isinstance(loader, Mapping) and "dataset" in loader:
            values[name] = {**loader, "dataset": _dataset_paths(loader["dataset"], base)}
    return Config(values, filename=cfg.filename), absolute(checkpoint, base)


def import_roots(cfg: Config, base: str | None = None) -> list[str]:
    """Directories the driver imports ``custom_imports`` from: its working directory and the
    config file's directory (absolute paths)."""
    return config_import_roots(cfg.filename, base)


__all__ = ["absolute", "import_roots", "resolve_locations"]
