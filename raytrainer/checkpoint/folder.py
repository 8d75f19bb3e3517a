"""Where a run's checkpoints live, as its config says, before any hook is built.

The CheckpointHook saves there; the driver, a sweep and the stop hook look there for the latest
checkpoint before a Runner exists. They all read the config's ``default_hooks.checkpoint``
through :func:`checkpoint_hook_cfg` so that the rule for a missing or disabled hook is one.
"""
from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any

from .. import storage


def checkpoint_dir_for(work_dir: str, out_dir: str | None = None) -> str:
    """``<work_dir>/checkpoints``, or ``<out_dir>/<work_dir name>/checkpoints``."""
    base = work_dir if out_dir is None else storage.join(
        str(out_dir), posixpath.basename(str(work_dir).rstrip("/")))
    return storage.join(base, "checkpoints")


def checkpoint_hook_cfg(cfg: Mapping[str, Any]) -> dict:
    """The config's ``default_hooks.checkpoint`` as a dict; ``{}`` when it is absent, disabled
    (None) or given as a built hook rather than a config."""
    hook = (cfg.get("default_hooks") or {}).get("checkpoint")
    return dict(hook) if isinstance(hook, Mapping) else {}


def checkpoint_dir_of(cfg: Mapping[str, Any], work_dir: str) -> str:
    """The checkpoint folder of a run of ``cfg`` in ``work_dir`` (honouring the hook's
    ``out_dir``)."""
    return checkpoint_dir_for(work_dir, checkpoint_hook_cfg(cfg).get("out_dir"))
