"""Running configs on Ray Train: the driver, the per-rank worker function, Ray reporting.

``raytrainer.launch.train(cfg, num_workers=2)`` trains on an embedded local Ray instance or on
the cluster named by ``address``/``RAY_ADDRESS``; ``val``/``test`` evaluate a checkpoint. Ray
Tune sweeps, whose trials are runs of this driver, are :mod:`raytrainer.tune`.

The driver (this process): ``driver`` (prepare a run, build its ``TorchTrainer``, fit it),
``request`` (what a ``train``/``val``/``test`` command line asks for: its flags, its config
with the overrides, its Ray settings, :class:`~raytrainer.config.ray_settings.RaySettings`),
``run_spec`` (the identity the driver fixes once), ``cluster`` and ``reaper`` (which Ray
instance, and ending a private one), ``preflight`` and ``paths`` (checks and locations before
any worker starts), ``failures`` (what is never retried), ``ray_record`` (Ray's checkpoint
bookkeeping), ``shutdown`` (signals), ``console`` and ``summary`` (what the terminal shows).
The workers (each Ray Train worker process): ``worker`` (one Runner per rank) and the hooks it
adds, ``report_hook`` (reports to Ray), ``console_hook`` (rank 0's lines to the driver's
console) and ``stop_hook`` (the driver's stop request).

The names below are imported on first use, so a Runner that only registers
:class:`RayReportHook` (every Runner does, through the hook registry) does not import Ray.
"""
from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"train": "driver", "val": "driver", "test": "driver", "launch": "driver",
          "LaunchResult": "driver", "RayReportHook": "report_hook", "RunSpec": "run_spec",
          "decide_run": "run_spec", "RaySettings": "..config.ray_settings"}

__all__ = ["train", "val", "test", "launch", "LaunchResult", "RaySettings", "RunSpec",
           "decide_run", "RayReportHook"]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:  # a submodule, e.g. ``launch.driver``
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module if module.startswith(".") else f".{module}",
                                            __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
