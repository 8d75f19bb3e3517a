"""MMEngine and MMCV arguments raytrainer accepts without acting on them: each warns once.

A config written for MMEngine (or MMCV 1.x) may carry keys and arguments that raytrainer has no
use for. They are accepted, so such configs still run, but never silently: the first use of
each in a process warns (:class:`~raytrainer.config.errors.ConfigWarning`), naming the key, why
it has no effect and what to use instead. :data:`TOP_LEVEL` lists the top-level config keys,
:data:`ARGUMENTS` the arguments of components.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from .errors import ConfigWarning

_STORAGE = ("raytrainer reaches storage through fsspec URLs: give the location as a URL and "
            "its options in storage=dict(...) or RAYTRAINER_STORAGE_OPTIONS (docs/storage.md)")

#: Top-level config keys of MMEngine or MMCV 1.x configs that raytrainer does not use.
TOP_LEVEL: dict[str, str] = {
    "tta_model": "raytrainer has no test-time augmentation; the model is tested as built",
    "tta_pipeline": "raytrainer has no test-time augmentation; the model is tested as built",
    "auto_resume": "an MMDetection tools flag; use resume='auto' (or raytrainer train "
                   "--resume) to continue the newest committed checkpoint",
    "log_config": "an MMCV 1.x key; use default_hooks.logger=dict(type='LoggerHook', "
                  "interval=...) and visualizer=dict(vis_backends=[...])",
    "checkpoint_config": "an MMCV 1.x key; use default_hooks.checkpoint=dict("
                         "type='CheckpointHook', interval=...)",
    "dist_params": "an MMCV 1.x key; use env_cfg.dist_cfg=dict(backend=...)",
    "workflow": "an MMCV 1.x key; use train_cfg (val_interval) and val_cfg/test_cfg",
    "gpu_ids": "devices come from the launcher: --num-workers and ray.use_gpu on Ray, the "
               "visible device otherwise",
}

#: Component arguments accepted for MMEngine compatibility that have no effect.
ARGUMENTS: dict[str, str] = {
    "CheckpointHook.file_client_args": _STORAGE,
    "CheckpointHook.backend_args": _STORAGE,
    "CheckpointHook.published_keys": "raytrainer does not publish a model file after "
                                     "training; write one with raytrainer convert "
                                     "CHECKPOINT OUT.pth",
    "save_checkpoint.file_client_args": _STORAGE,
    "save_checkpoint.backend_args": _STORAGE,
    "resume.map_location": "a resumed checkpoint is read to CPU and each tensor placed by the "
                           "strategy on this rank's device",
    "BaseMetric.collect_dir": "results are gathered with torch.distributed collectives, not "
                              "through a shared directory",
    "default_scope": "raytrainer has one registry: every type resolves in it, whatever the "
                     "scope",
    "env_cfg": "raytrainer reads env_cfg.cudnn_benchmark and env_cfg.dist_cfg only",
}

_warned: set[str] = set()


def warn_ignored(key: str, value: Any = None, why: str | None = None) -> bool:
    """Warn, once per process and ``key``, that ``key`` has no effect (``why``, or the
    reason listed for it). Returns True when it warned now."""
    if key in _warned:
        return False
    _warned.add(key)
    reason = why or TOP_LEVEL.get(key) or ARGUMENTS.get(key) or "raytrainer does not use it"
    shown = "" if value is None else f"={value!r}"
    warnings.warn(f"{key}{shown} has no effect: {reason}", ConfigWarning, stacklevel=3)
    return True


def warn_ignored_top_level(cfg: Mapping) -> list[str]:
    """Warn about every key of :data:`TOP_LEVEL` that ``cfg`` sets; returns those keys."""
    given = [key for key in TOP_LEVEL if cfg.get(key) not in (None, False)]
    for key in given:
        warn_ignored(key)
    return given
