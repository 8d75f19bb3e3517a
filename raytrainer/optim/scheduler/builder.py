"""Build parameter schedulers from config dicts, converting epoch-based ones on request.

This module owns the ``convert_to_iter_based`` and ``epoch_length`` config keys MMEngine's
scheduler registry understands: with ``convert_to_iter_based=True`` the scheduler is built by its
``build_iter_from_epoch`` classmethod, otherwise by its constructor (``epoch_length``, which a
runner passes to every scheduler, is then dropped). Lookup and error reporting stay in
:func:`raytrainer.registry.build_from_cfg`.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from raytrainer.registry import PARAM_SCHEDULERS, Registry, build_from_cfg

__all__ = ["build_param_scheduler_from_cfg"]


def build_param_scheduler_from_cfg(cfg: Mapping[str, Any],
                                   registry: Registry = PARAM_SCHEDULERS,
                                   default_args: Mapping[str, Any] | None = None,
                                   key: str | None = None) -> Any:
    """Build a scheduler from ``cfg``; usable as the ``build_func`` of a scheduler registry.

    Args:
        cfg: ``dict(type=..., **kwargs)``, optionally with ``convert_to_iter_based=True``.
        registry: Where ``type`` is looked up.
        default_args: Arguments used where ``cfg`` does not set them (the runner passes
            ``optimizer`` and ``epoch_length``).
        key: The config key being built, for error messages (``'param_scheduler.1'``).

    Returns:
        The scheduler.

    Raises:
        ValueError: ``convert_to_iter_based`` is set without a positive ``epoch_length`` or with
            ``by_epoch=False``.
        raytrainer.registry.UnknownTypeError: ``type`` names no registered scheduler.
    """
    args = dict(cfg)
    for name, value in (default_args or {}).items():
        args.setdefault(name, value)
    if not args.pop("convert_to_iter_based", False):
        args.pop("epoch_length", None)
        return build_from_cfg(args, registry, key=key)
    scheduler_type = args.get("type")
    scheduler_cls = registry.get(scheduler_type) if isinstance(scheduler_type, str) \
        else scheduler_type
    if scheduler_cls is None:  # let build_from_cfg raise its error with close matches
        return build_from_cfg(args, registry, key=key)
    # ``type`` may be any callable: build through the converting classmethod instead.
    args["type"] = scheduler_cls.build_iter_from_epoch
    return build_from_cfg(args, registry, key=key)
