"""Running configs on Ray Train: the driver, the per-rank worker function, Ray reporting.

``raytrainer.launch.train(cfg, num_workers=2)`` trains on an embedded local Ray instance or on
the cluster named by ``address``/``RAY_ADDRESS``; ``val``/``test`` evaluate a checkpoint;
``tune(cfg, param_space=...)`` sweeps config keys with Ray Tune, one full run per trial.
"""
from .driver import LaunchResult, launch, test, train, val
from .report_hook import RayReportHook
from .run_spec import RunSpec, decide_run
from .settings import RaySettings
from .sweep import SweepResult, tune

__all__ = ["train", "val", "test", "launch", "LaunchResult", "RaySettings", "RunSpec",
           "decide_run", "RayReportHook", "tune", "SweepResult"]
