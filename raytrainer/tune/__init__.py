"""Ray Tune sweeps over config keys: every trial is a full raytrainer run.

``raytrainer.tune.tune(cfg, param_space=...)`` (and ``raytrainer tune``) sweeps a config with
Ray Tune. The package owns the sweep's driver (``sweep``: options, scheduler and searcher,
the ``Tuner``, results), what runs inside a trial (``trial``: the trial's work_dir, its run
through :mod:`raytrainer.launch.driver.run`, reports to Tune), the search space (``space``) and
the ``raytrainer tune`` command (``cli``). It sits above :mod:`raytrainer.launch`, which never
imports it.

The names below are imported on first use, so that ``raytrainer --help`` does not import Ray.
"""
from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"tune": "sweep", "SweepOptions": "sweep", "SweepResult": "sweep",
          "load_space": "space"}

__all__ = ["tune", "SweepOptions", "SweepResult", "load_space"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value
