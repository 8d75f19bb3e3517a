"""A sweep's search space: dotted config keys mapped to Ray Tune distributions or constants.

This module owns reading the space (a Python file defining ``space``, or the config's ``tune``
section), checking every key against the config before anything starts (with the did-you-mean
message of ``--cfg-options``) and every value a key can take against the config validation
(each of a ``tune.choice``/``grid_search``, the bounds of a range), applying one trial's values
to the config, and naming a trial's work_dir from its id and values. It does not run trials
(:mod:`raytrainer.tune.trial`).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ray.tune.search.sample import Categorical, Float, Integer

from ..config import Config, ConfigError
from ..runner import validation


def load_space(location: str) -> dict[str, Any]:
    """The ``space`` dict of a space file (a Python file read like a config)."""
    loaded = Config.fromfile(location)
    if "space" not in loaded:
        raise ConfigError(f"{location} defines no 'space'; expected space = {{'dotted.key': "
                          "tune.loguniform(1e-3, 1e-1), ...}")
    return to_plain_space(loaded["space"], location)


def to_plain_space(space: Any, where: str) -> dict[str, Any]:
    """``space`` as a plain dict of dotted keys (config dicts unwrapped)."""
    if not isinstance(space, Mapping) or not space:
        raise ConfigError(f"{where}: 'space' must be a non-empty dict of dotted config keys, "
                          f"got {space!r}")
    return {str(key): (value.to_dict() if isinstance(value, Config) else value)
            for key, value in space.items()}


def check_space(cfg: Config, space: Mapping[str, Any]) -> None:
    """Fail unless every key of ``space`` names a key the config already has.

    Raises:
        ConfigError: Naming the key, with the did-you-mean hint ``--cfg-options`` gives.
    """
    values = cfg.to_dict()
    for key in space:
        try:
            Config(values).merge_from_dict({key: None})
        except ConfigError as exc:
            raise ConfigError(f"search space key {key!r}: {exc}") from None
        if _lookup(values, key) is _MISSING:
            raise ConfigError(f"search space key {key!r} is not a key of the config; a sweep "
                              "only varies keys the config sets")
    for key, domain in space.items():
        for value in _candidates(domain):
            trial = apply_values(cfg, {key: value})
            try:
                validation.check_ray_section(trial.get("ray"))
                validation.check_runner_args(trial)
            except ConfigError as exc:
                raise ConfigError(f"search space key {key!r} can take {value!r}, which the "
                                  f"config refuses: {exc}") from None


def _candidates(domain: Any) -> list[Any]:
    """Values of ``domain`` to check: every one of a choice or a grid search, the bounds of a
    range (an integer range's upper bound is exclusive), a constant itself."""
    if isinstance(domain, Categorical):
        return list(domain.categories)
    if isinstance(domain, Mapping) and set(domain) == {"grid_search"}:
        return list(domain["grid_search"])
    if isinstance(domain, Integer):
        return [domain.lower, domain.upper - 1]
    if isinstance(domain, Float):
        return [domain.lower, domain.upper]
    if callable(getattr(domain, "sample", None)):
        return []  # a sample_from: its values are known only when it runs
    return [domain]


_MISSING = object()


def _lookup(cfg: Any, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def apply_values(cfg: Config, values: Mapping[str, Any]) -> Config:
    """A copy of ``cfg`` with one trial's values set (dotted keys)."""
    trial = Config(cfg.to_dict(), filename=cfg.filename)
    trial.merge_from_dict(dict(values))
    return trial


def trial_dirname(trial_id: str, values: Mapping[str, Any], limit: int = 100) -> str:
    """``<trial_id>_lr=0.01_batch_size=32``: readable and safe in any storage path."""
    parts = [trial_id]
    for key, value in values.items():
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        parts.append(f"{key.rsplit('.', 1)[-1]}={shown}")
    name = re.sub(r"[^A-Za-z0-9_.=+-]", "-", "_".join(parts))
    return name[:limit]


__all__ = ["apply_values", "check_space", "load_space", "to_plain_space", "trial_dirname"]
