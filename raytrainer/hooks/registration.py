"""The hooks of a run, in the order they are called: defaults, building, priority ordering.

The Runner keeps MMEngine's methods (``register_hook``, ``call_hook``, ``get_hooks_info``) and
delegates to :class:`HookList`, which owns the ordering rule: a hook runs after every hook of
the same or a higher priority registered before it. Nothing here calls a hook point.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from ..registry import HOOKS, build_from_cfg
from .hook import Hook, get_priority

DEFAULT_HOOKS: dict[str, dict] = {
    "runtime_info": dict(type="RuntimeInfoHook"),
    "timer": dict(type="IterTimerHook"),
    "sampler_seed": dict(type="DistSamplerSeedHook"),
    "logger": dict(type="LoggerHook"),
    "param_scheduler": dict(type="ParamSchedulerHook"),
    "checkpoint": dict(type="CheckpointHook", interval=1),
}


def merge_default_hooks(default_hooks: Mapping | None) -> dict[str, Any]:
    """The default hooks with the user's entries applied (None disables one)."""
    merged: dict[str, Any] = copy.deepcopy(DEFAULT_HOOKS)
    for name, hook in (default_hooks or {}).items():
        merged[name] = hook
    return {name: hook for name, hook in merged.items() if hook is not None}


def build_hook(hook: Any, key: str):
    """Build one hook; returns ``(hook, priority or None)`` with ``priority`` taken off the cfg."""
    if isinstance(hook, Mapping):
        cfg = dict(hook)
        priority = cfg.pop("priority", None)
        return build_from_cfg(cfg, HOOKS, key=key), priority
    return hook, None


class HookList:
    """A run's hooks in calling order, with the bound methods of each hook point cached."""

    def __init__(self) -> None:
        self.hooks: list[Hook] = []
        self._table: dict[str, list[Callable]] = {}

    def methods(self, fn_name: str) -> list[Callable]:
        """The hooks' ``fn_name`` methods in calling order (only hooks that implement it)."""
        methods = self._table.get(fn_name)
        if methods is None:
            if not hasattr(Hook, fn_name):
                raise AttributeError(f"{fn_name!r} is not a hook point")
            methods = self._table[fn_name] = [
                getattr(h, fn_name) for h in self.hooks if fn_name in h.get_triggered_stages()]
        return methods

    def insert(self, hook: Hook | dict, priority: int | str | None = None) -> None:
        """Insert a hook after every registered hook of the same or higher priority."""
        built, cfg_priority = build_hook(hook, "hook")
        if not isinstance(built, Hook):
            raise TypeError(f"{type(built).__name__} is not a raytrainer.hooks.Hook")
        chosen = priority if priority is not None else cfg_priority
        if chosen is not None:
            built.priority = chosen
        value = get_priority(built.priority)
        index = 0
        for i in range(len(self.hooks) - 1, -1, -1):
            if value >= get_priority(self.hooks[i].priority):
                index = i + 1
                break
        self.hooks.insert(index, built)
        self._table.clear()

    def insert_defaults(self, default_hooks: Mapping | None) -> None:
        """The default hooks, with the user's overrides (``default_hooks.<name>``)."""
        for name, hook in merge_default_hooks(default_hooks).items():
            built, priority = build_hook(hook, f"default_hooks.{name}")
            self.insert(built, priority)

    def insert_custom(self, custom_hooks: list | None) -> None:
        """The user's extra hooks (``custom_hooks.<i>``)."""
        for i, hook in enumerate(custom_hooks or []):
            built, priority = build_hook(hook, f"custom_hooks.{i}")
            self.insert(built, priority)

    def info(self) -> str:
        """Each hook point with its hooks and their priorities, in calling order."""
        lines = []
        for stage in Hook.stages:
            names = [f"({get_priority(h.priority):<3}) {type(h).__name__}" for h in self.hooks
                     if stage in h.get_triggered_stages()]
            if names:
                lines.append(f"{stage}:\n  " + "\n  ".join(names))
        return "\n".join(lines)
