"""One Ray Tune trial: a full raytrainer run with its own TorchTrainer, reporting to Tune.

This module owns what happens inside a trial actor: applying the trial's values to the sweep's
config, giving the run its own work_dir under the sweep directory (so an interrupted trial
continues its own newest committed checkpoint), building the run's trainer with the driver's
own code (:func:`raytrainer.launch.driver.run.prepare_run`/:func:`build_trainer`), forwarding rank
0's reports to Tune (with the committed checkpoint when the scheduler exploits checkpoints),
and ending the inner run when Tune stops the trial. It does not choose trials nor collect
results (:mod:`raytrainer.tune.sweep`).

How reports travel: Ray Train calls :class:`TrialLinkCallback` in the run's controller after
each report of rank 0; it pushes the metrics, the registered checkpoint and the controller's
handle to a mailbox actor (:class:`~raytrainer.launch.driver.console.ConsoleFeed`) without waiting,
so the controller never falls behind the workers, and the trial function drains the mailbox
and hands each report to ``ray.tune.report``. A report made after a validation that lacks
the sweep's metric fails the trial (:func:`check_metric_reported`): a typo in ``--metric``
stops each trial at its first validation instead of ending the sweep with no result. Rank 0
also pushes its placement group there when it starts
(:func:`raytrainer.launch.worker.loop.announce_placement_group`).

Why a trial ends its run itself: the controller and the workers' placement group outlive a
trial actor that Tune stops (an early-stopped ASHA trial, a PBT exploit); Ray Train's cleaner
finds them only by polling Ray's state API, and meanwhile the next trial waits for the
resources. :class:`SweepTrial` kills the controller and removes the placement group in its
``cleanup``, which Tune calls before it stops the actor.
"""
from __future__ import annotations

import functools
import logging
import posixpath
import threading
import time
from dataclasses import dataclass
from typing import Any

from .. import storage
from ..config import Config, ConfigError
from ..config.ray_settings import RaySettings
from ..launch.driver.console import ConsoleFeed
from ..launch.driver.run import build_trainer, forget_earlier_ray_runs, prepare_run
from ..logging import print_log
from .space import apply_values

POLL_S = 0.5


@dataclass
class TrialPlan:
    """What every trial of a sweep shares.

    Attributes:
        cfg: The sweep's config (locations resolved), as a dict.
        filename: The config's file name.
        settings: The Ray settings of each trial's run (``num_workers`` = workers per trial).
        sweep_dir: The sweep's location; trial work_dirs are directly under it.
        metric: The metric Tune optimises (a key rank 0 reports, e.g. ``val/accuracy/top1``).
        report_checkpoints: Hand committed checkpoints to Tune (PBT exploits them).
        lr_key: The swept learning-rate key, set in the live optimizer after an exploit.
        import_roots: The sweep driver's directories for ``custom_imports`` (a trial actor
            runs in another working directory).
    """

    cfg: dict
    filename: str | None
    settings: RaySettings
    sweep_dir: str
    metric: str
    report_checkpoints: bool = False
    lr_key: str | None = None
    import_roots: list | None = None


class TrialLinkCallback:
    """Ray Train callback (in the run's controller): forwards each report to the trial."""

    def __init__(self, link):
        self.link = link

    def after_report(self, run_context, metrics: list[dict], checkpoint) -> None:
        import ray

        self.link.push.remote({"metrics": dict(metrics[0]), "checkpoint": checkpoint,
                               "controller": ray.get_runtime_context().current_actor})

    def after_exception(self, run_context, worker_exceptions) -> None:
        return None


def _as_user_callback(link) -> Any:
    from ray.train import UserCallback

    class _Callback(TrialLinkCallback, UserCallback):
        pass

    return _Callback(link)


@dataclass
class _InnerRun:
    controller: Any = None
    placement_group: str | None = None
    thread: threading.Thread | None = None
    error: BaseException | None = None
    ended: bool = False

    def note(self, item: dict) -> None:
        self.controller = item.get("controller", self.controller)
        self.placement_group = item.get("placement_group", self.placement_group)

    def end(self) -> None:
        """Kill the controller (so it cannot restart workers), then free the workers'
        resources. A finished run is left alone."""
        import ray
        from ray._raylet import PlacementGroupID
        from ray.util.placement_group import PlacementGroup, remove_placement_group

        if self.ended or self.thread is None or not self.thread.is_alive():
            return
        self.ended = True
        if self.controller is not None:
            ray.kill(self.controller, no_restart=True)
        if self.placement_group:
            group = PlacementGroup(PlacementGroupID(bytes.fromhex(self.placement_group)))
            try:
                remove_placement_group(group)
            except Exception as exc:  # already removed by Ray Train's cleaner
                print_log(f"placement group {self.placement_group}: {exc}", logger="current",
                          level=logging.DEBUG)


_ACTIVE = _InnerRun()  # the run of this trial actor (one trial per actor: reuse_actors=False)


def _resume_point(plan: TrialPlan, own_dir: str) -> bool | str:
    """An exploit (PBT) continues the donor trial's checkpoint; everything else continues this
    trial's own newest committed checkpoint, if any (``resume='auto'``)."""
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return "auto"
    donor = posixpath.basename(posixpath.dirname(checkpoint.path.rstrip("/")))
    if donor == own_dir:
        return "auto"
    if storage.is_url(plan.sweep_dir):  # Tune names it by its path in the filesystem
        return f"{plan.sweep_dir.split('://', 1)[0]}://{checkpoint.path.lstrip('/')}"
    return checkpoint.path


def _trial_config(plan: TrialPlan, values: dict) -> tuple[Config, str]:
    from ray import tune

    cfg = apply_values(Config(plan.cfg, filename=plan.filename), values)
    # Tune's trial directory is named once, at the trial's start (trial id + values); the
    # work_dir keeps that name when PBT later changes the trial's values.
    name = posixpath.basename(tune.get_context().get_trial_dir().rstrip("/"))
    cfg["work_dir"] = storage.join(plan.sweep_dir, name)
    cfg["resume"] = _resume_point(plan, name)
    hooks = list(cfg.get("custom_hooks") or [])
    if plan.lr_key and isinstance(cfg["resume"], str) and cfg["resume"] != "auto":
        hooks.append(dict(type="LiveLrHook", lr=values[plan.lr_key]))
    cfg["custom_hooks"] = hooks
    return cfg, name


def check_metric_reported(metric: str, metrics: dict) -> None:
    """Fail the trial when a report made after a validation lacks the sweep's metric: every
    metric the run reports is known by then, so the metric will never come.

    Raises:
        ConfigError: Naming the metric and the metrics the run reports.
    """
    if any(key.startswith("val/") for key in metrics):
        names = ", ".join(sorted(key for key in metrics if key not in ("epoch", "iter")))
        raise ConfigError(f"tune.metric {metric!r} is not a metric the trials report; they "
                          f"report: {names}; pass --metric with one of them")


class _Forwarder:
    """Hands the run's reports to Tune, each position (epoch, iter) once and in order.

    A checkpoint is registered with the metrics of its own position, which are older than the
    newest when a background save committed after the next validation; the run then reports
    the newest metrics again right after. Tune gets such a report only when it takes
    checkpoints (PBT), so its history stays one result per position, the last one the newest.
    """

    def __init__(self, plan: TrialPlan):
        self.plan = plan
        self.last: tuple | None = None

    def __call__(self, item: dict) -> None:
        from ray import tune

        metrics = item.get("metrics")
        if not metrics:
            return
        if self.plan.metric not in metrics:
            check_metric_reported(self.plan.metric, metrics)
            return
        checkpoint = item.get("checkpoint") if self.plan.report_checkpoints else None
        position = (metrics.get("epoch", 0), metrics.get("iter", 0))
        if checkpoint is None and self.last is not None and position <= self.last:
            return
        tune.report(metrics, checkpoint=checkpoint)
        self.last = position if self.last is None else max(self.last, position)


def run_trial(values: dict, plan: TrialPlan) -> None:
    """The Tune function trainable: run one raytrainer training with ``values`` applied."""
    import ray

    cfg, _ = _trial_config(plan, values)
    run = prepare_run(cfg, "train", plan.settings)
    forget_earlier_ray_runs(run.cfg, run.spec)  # the sweep owns its trials' directories
    link = ray.remote(num_cpus=0)(ConsoleFeed).remote()
    trainer = build_trainer(run, callbacks=[_as_user_callback(link)], trial_link=link,
                            import_roots=plan.import_roots)
    inner = _ACTIVE

    def fit() -> None:
        try:
            trainer.fit()
        except BaseException as exc:  # handed to the trial function below
            inner.error = exc

    inner.thread = threading.Thread(target=fit, name="raytrainer-trial-run", daemon=True)
    inner.thread.start()
    forward = _Forwarder(plan)
    try:
        while True:
            finished = not inner.thread.is_alive()  # before draining: nothing comes after it
            for item in ray.get(link.drain.remote()):
                inner.note(item)
                forward(item)
            if finished:
                break
            time.sleep(POLL_S)
    except BaseException:
        inner.end()  # Tune stopped the trial while it reported
        raise
    finally:
        ray.kill(link, no_restart=True)
    if inner.error is not None:
        raise inner.error


def trial_trainable(plan: TrialPlan) -> type:
    """The Tune trainable of a sweep: :func:`run_trial` bound to ``plan``, ending its inner
    run in ``cleanup`` (called by Tune before it stops the trial's actor)."""
    from ray.tune.trainable.function_trainable import wrap_function

    base = wrap_function(functools.partial(run_trial, plan=plan))

    class SweepTrial(base):
        def cleanup(self):
            _ACTIVE.end()
            super().cleanup()

    SweepTrial.__name__ = SweepTrial.__qualname__ = "raytrainer_trial"
    return SweepTrial


__all__ = ["TrialPlan", "check_metric_reported", "run_trial", "trial_trainable"]
