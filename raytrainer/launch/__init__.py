"""Running configs on Ray Train: the driver, the per-rank worker function, Ray reporting.

``raytrainer.launch.train(cfg, num_workers=2)`` trains on an embedded local Ray instance or on
the cluster named by ``address``/``RAY_ADDRESS``; ``val``/``test`` evaluate a checkpoint. Ray
Tune sweeps, whose trials are runs of this driver, are :mod:`raytrainer.tune`.

Two sides, each a subpackage, and what both share:

- :mod:`~raytrainer.launch.driver`, the driver (the process that runs the command): ``run``
  (prepare a run, build its ``TorchTrainer``, fit it), ``request`` (what a
  ``train``/``val``/``test`` command line asks for: its flags, its config with the overrides,
  its Ray settings, :class:`~raytrainer.config.ray_settings.RaySettings`), ``cluster`` and
  ``reaper`` (which Ray instance, and ending a private one), ``preflight`` and ``paths``
  (checks and locations before any worker starts), ``failures`` (what is never retried),
  ``ray_record`` (Ray's checkpoint bookkeeping), ``console`` and ``summary`` (what the
  terminal shows).
- :mod:`~raytrainer.launch.worker`, the workers (each Ray Train worker process, and the one
  process of ``--launcher none``): ``loop`` (one Runner per rank) and the hooks it adds,
  ``report_hook`` (reports to Ray), ``console_hook`` (rank 0's lines to the driver's console)
  and ``stop_hook`` (the driver's stop request).
- Shared by both, here: ``run_spec`` (the identity the driver fixes once and every rank
  shares) and ``shutdown`` (signals, and the stop flag the driver sets and the ranks poll).

The driver side imports the worker side only for the function it hands to Ray
(:func:`~raytrainer.launch.worker.loop.train_loop_per_worker`); the worker side never imports
the driver side.

The names below are imported on first use, so a Runner that only registers
:class:`RayReportHook` (every Runner does, through the hook registry) does not import Ray.
"""
from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"train": ".driver.run", "val": ".driver.run", "test": ".driver.run",
          "launch": ".driver.run", "LaunchResult": ".driver.run",
          "RayReportHook": ".worker.report_hook", "RunSpec": ".run_spec",
          "decide_run": ".run_spec", "RaySettings": "..config.ray_settings"}

__all__ = ["train", "val", "test", "launch", "LaunchResult", "RaySettings", "RunSpec",
           "decide_run", "RayReportHook"]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:  # a submodule, e.g. ``launch.shutdown``
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
