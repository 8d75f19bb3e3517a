"""The driver: decides the run's identity once, then runs one Runner per rank on Ray Train.

``train(cfg)`` (and ``val``/``test``) joins the Ray cluster named by ``address``/``RAY_ADDRESS``
or starts a private local instance (:mod:`raytrainer.launch.driver.cluster`), builds a
``TorchTrainer`` whose workers each build a Runner from the config, and returns when the run
is finished. Ray's run directory and the runner's ``work_dir`` are the same storage location;
worker failures that a restart can fix restart the worker group, which resumes from the most
recently committed checkpoint; errors that would recur end the run at once
(:mod:`raytrainer.launch.driver.failures`). :func:`prepare_run` and :func:`build_trainer` are
the two halves of a launch that a Ray Tune trial reuses (:mod:`raytrainer.tune.trial`).

Retention: ``CheckpointConfig(num_to_keep=max_keep_ckpts)`` (the CheckpointHook's setting).
Every regular checkpoint committed in the run directory is registered with Ray in commit order
and Ray deletes the oldest registered ones beyond that number; the CheckpointHook keeps its
``max_keep_ckpts`` and deletes what Ray does not track (``best_*`` checkpoints, an ``out_dir``
outside the run directory, commits a killed run never reported). See
``raytrainer.launch.worker.report_hook``. Ray keeps its list of checkpoints in the run directory; a
run that does not continue the latest checkpoint (``resume=True``) starts that list afresh
(:func:`forget_earlier_ray_runs`), so Ray only ever deletes checkpoints this run registered.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ... import checkpoint as ckpt
from ... import storage
from ...checkpoint.folder import checkpoint_hook_cfg
from ...config import Config
from ...config.ray_settings import RaySettings
from ...logging import print_log
from ...runner.lease import WorkDirLease
from .. import shutdown
from ..run_spec import RunSpec, decide_run
from ..worker.loop import Secret, train_loop_per_worker
from .cluster import check_feasible, connect
from .console import RunConsole
from .failures import FailFastTorchTrainer
from .paths import import_roots, resolve_locations
from .preflight import preflight
from .ray_record import reconcile_ray_record, snapshot_location


@dataclass
class LaunchResult:
    """What a finished run returns.

    Attributes:
        spec: The run's identity (timestamp, seed, work_dir ...).
        metrics: Final metrics written by rank 0 (validation metrics after training).
        result: Ray Train's ``Result`` (checkpoint, metrics of the last checkpoint report).
        details: Rank 0's ``result.json`` (last checkpoint, iteration, log directory ...).
        stopped: Set when a signal ended the run early (:mod:`raytrainer.launch.shutdown`):
            ``signal``, ``signum``, ``iter``, ``checkpoint`` (the committed checkpoint it
            stopped at) and ``forced`` (a second signal: no new checkpoint). None otherwise.
    """

    spec: RunSpec
    metrics: dict
    result: Any
    details: dict
    stopped: dict | None = None


def _checkpoint_keep(cfg: Config) -> int | None:
    """Ray's ``num_to_keep``: the CheckpointHook's ``max_keep_ckpts`` (None keeps all)."""
    keep = checkpoint_hook_cfg(cfg).get("max_keep_ckpts", -1)
    return keep if keep and keep > 0 else None


def _run_config(cfg: Config, spec: RunSpec, settings: RaySettings, verbose: bool = False,
                callbacks: list | None = None):
    from ray.train import CheckpointConfig, FailureConfig, RunConfig
    from ray.train.v2.api.config import LoggingConfig

    parent = posixpath.dirname(spec.work_dir.rstrip("/"))
    name = posixpath.basename(spec.work_dir.rstrip("/"))
    filesystem, path = storage.to_pyarrow(parent)
    return RunConfig(
        name=name, storage_path=path, storage_filesystem=filesystem,
        failure_config=FailureConfig(max_failures=settings.max_failures,
                                     controller_failure_limit=settings.controller_failure_limit),
        checkpoint_config=CheckpointConfig(num_to_keep=_checkpoint_keep(cfg)),
        callbacks=list(callbacks or []),
        # Ray Train's own INFO lines ("Reporting training result ...") stay in Ray's log files
        logging_config=LoggingConfig(log_level="INFO" if verbose else "WARNING"))


def forget_earlier_ray_runs(cfg: Config, spec: RunSpec) -> None:
    """Start Ray's checkpoint bookkeeping afresh unless this run continues the work_dir's
    most recent checkpoint (``resume=True``/``'auto'``).

    Ray keeps the checkpoints it registered in the run directory (its checkpoint manager
    snapshot) and, when the same directory is used again, goes on counting and deleting them.
    A fresh run, or one resumed from an older checkpoint, writes checkpoint names that earlier
    ones used: Ray would delete the earlier run's checkpoints, and a delete that lags behind
    could remove a new checkpoint saved under an old name. Without the snapshot Ray only deletes
    what this launch registers; the CheckpointHook owns the rest (it never deletes another
    lineage's checkpoints). A continuing run keeps the record, less the checkpoints that are
    no longer on storage (:func:`~raytrainer.launch.driver.ray_record.reconcile_ray_record`).
    """
    if cfg.get("resume") in (True, "auto") and spec.resume:
        reconcile_ray_record(spec.work_dir)  # a checkpoint deleted by hand leaves the record
        return
    snapshot = snapshot_location(spec.work_dir)
    if storage.exists(snapshot):
        storage.remove(snapshot)
        print_log(f"{storage.describe(spec.work_dir)} held an earlier Ray run: Ray's record of "
                  "its checkpoints was reset, so Ray deletes only this run's checkpoints (the "
                  "earlier ones stay)", logger="current")


@dataclass
class PreparedRun:
    """A run whose identity is decided and whose inputs are checked, before Ray is involved.

    Attributes:
        cfg: The config with every location resolved against the driver's directory.
        mode: 'train', 'val' or 'test'.
        settings: The run's Ray settings.
        spec: The run's identity.
        loop_config: What every worker's ``train_loop_per_worker`` receives.
    """

    cfg: Config
    mode: str
    settings: RaySettings
    spec: RunSpec
    loop_config: dict


def prepare_run(cfg: Config, mode: str = "train", settings: RaySettings | None = None,
                checkpoint: str | None = None) -> PreparedRun:
    """Resolve locations and storage options, decide the run's identity and run every check
    that needs no workers (config types, storage reachable, checkpoints committed)."""
    settings = settings or RaySettings.from_config(cfg.get("ray"))
    cfg, checkpoint = resolve_locations(cfg, checkpoint)
    options = storage.resolved_storage_options(cfg.get("storage"))
    storage.set_storage_options(options)
    spec = decide_run(cfg) if mode == "train" else _eval_spec(cfg)
    preflight(cfg, spec.work_dir, mode, checkpoint)
    loop_config = dict(cfg=cfg.to_dict(), filename=cfg.filename, spec=spec.to_dict(), mode=mode,
                       checkpoint=checkpoint, storage=Secret(options),
                       import_roots=import_roots(cfg),
                       report_interval_s=settings.report_interval_s)
    return PreparedRun(cfg=cfg, mode=mode, settings=settings, spec=spec, loop_config=loop_config)


@contextlib.contextmanager
def hold_work_dir(run: PreparedRun,
                  on_lost: Callable[[str], None] | None = None) -> Iterator[WorkDirLease | None]:
    """One live training run per work_dir: hold its lease while the block runs (validation
    and test runs write no checkpoints and take none).

    Inside the lease Ray's record of an earlier run's checkpoints is reset
    (:func:`forget_earlier_ray_runs`), so a refused second run never touches it. When the
    block ends and another run took the lease over meanwhile, :class:`WorkDirInUseError` says
    so (``on_lost`` is called with the reason as soon as the heartbeat notices).
    """
    if run.mode != "train":
        yield None
        return
    spec = run.spec
    lease = WorkDirLease(spec.work_dir, spec.experiment_name, spec.lineage,
                         resuming=bool(spec.resume),
                         on_lost=None if on_lost is None else lambda: on_lost(lease.loss()))
    with lease:
        forget_earlier_ray_runs(run.cfg, spec)
        try:
            yield lease
        finally:
            lease.check()


class StoppableTrainer(FailFastTorchTrainer):
    """Leaves SIGINT to :mod:`raytrainer.launch.shutdown` while it handles the signals: Ray
    Train's own handler aborts the run on the first Ctrl-C, without a checkpoint or a
    summary. A stop that must happen at once (:meth:`abort`) aborts the controller, as
    Ray's handler does."""

    controller = None
    aborted = False

    def _register_sigint_handler(self, controller) -> None:
        self.controller = controller
        if not shutdown.active():
            super()._register_sigint_handler(controller)

    def abort(self, signum: int) -> None:
        """Abort the controller; before ``fit()`` has started one there is nothing to abort,
        so the process exits at once (:func:`shutdown.exit_at_once`), as while Ray starts."""
        import ray

        if self.controller is None:
            shutdown.exit_at_once(signum)
            return
        self.aborted = True
        ray.get(self.controller.abort.remote(), timeout=10)


def build_trainer(run: PreparedRun, verbose: bool = False, callbacks: list | None = None,
                  **loop_extras: Any) -> StoppableTrainer:
    """The ``TorchTrainer`` of a prepared run (Ray must be connected).

    Args:
        run: From :func:`prepare_run`.
        verbose: Ray Train's INFO lines are logged too.
        callbacks: Ray Train ``UserCallback``s for the run's ``RunConfig``.
        loop_extras: More entries for the workers' loop config (the console feed ...).
    """
    from ray.train import ScalingConfig
    from ray.train.torch import TorchConfig

    settings = run.settings
    if settings.worker_group_start_timeout_s is not None:
        os.environ["RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"] = \
            str(settings.worker_group_start_timeout_s)
    return StoppableTrainer(
        train_loop_per_worker, train_loop_config={**run.loop_config, **loop_extras},
        scaling_config=ScalingConfig(num_workers=settings.num_workers,
                                     use_gpu=settings.use_gpu,
                                     resources_per_worker=settings.resources_per_worker,
                                     placement_strategy=settings.placement_strategy),
        torch_config=TorchConfig(backend=settings.torch_backend),
        run_config=_run_config(run.cfg, run.spec, settings, verbose, callbacks))


def launch(cfg: Config, mode: str = "train", settings: RaySettings | None = None,
           checkpoint: str | None = None, verbose: bool = False) -> LaunchResult:
    """Run ``mode`` ('train', 'val' or 'test') of ``cfg`` on Ray Train.

    Every check that needs no workers runs first (locations resolved against this process's
    working directory, config types, storage reachable with the config's storage options,
    checkpoints committed); then Ray is connected (a private local instance unless a cluster
    is named) and the cluster's room for the workers is checked before any worker starts.

    ``verbose`` also prints Ray's own output (every worker's, Ray Train's INFO lines); by
    default the console shows rank 0's log lines and, on a terminal, a progress bar
    (:mod:`raytrainer.launch.driver.console`).

    SIGTERM and SIGINT (Ctrl-C) stop a training run at the next iteration boundary with a
    committed checkpoint (a second one stops it at once); the result's ``stopped`` says so
    (:mod:`raytrainer.launch.shutdown`).
    """
    with shutdown.handle_signals(graceful=mode == "train"):
        run = prepare_run(cfg, mode, settings, checkpoint)
        try:
            return _launch(run, verbose)
        except shutdown.ForcedStop as stop:
            newest = _newest_committed(run.spec) if mode == "train" else None
            return LaunchResult(spec=run.spec, metrics={}, result=None,
                                details={"last_checkpoint": newest},
                                stopped=_stop_record(stop.signum, newest, forced=True))


def _launch(run: PreparedRun, verbose: bool) -> LaunchResult:
    settings, spec, mode = run.settings, run.spec, run.mode
    quiet = dict(logging_level=logging.INFO if verbose else logging.WARNING)
    # A lease taken over by another run (or not renewed) ends the run at once, no checkpoint
    # into its work_dir: during fit() the controller aborts, outside it the driver exits 1.
    def lost(reason: str) -> None:
        shutdown.interrupt_now(f"{reason}; stopping now")
    # A second signal exits at once while Ray starts and stops (raising inside Ray's C code
    # fails), and aborts Ray Train's controller during fit().
    with shutdown.on_force(shutdown.exit_at_once), hold_work_dir(run, on_lost=lost), \
            connect(settings, log_to_driver=verbose, init_kwargs=quiet) as connection, \
            _stop_flag(mode) as flag:
        shutdown.install()  # ray.init replaced the SIGTERM handler
        check_feasible(settings, connection, settings.worker_group_start_timeout_s)
        run_console = RunConsole(verbose)
        trainer = build_trainer(run, verbose, console=run_console.open(), stop_flag=flag)
        print_log(f"{mode}: run {spec.experiment_name} on {settings.num_workers} Ray worker(s) "
                  f"({settings.torch_backend}); work_dir={storage.describe(spec.work_dir)} "
                  f"seed={spec.seed} resume={spec.resume!r}", logger="current")
        if shutdown.requested():  # stopped while Ray started: no worker needs to start
            newest = _newest_committed(spec)
            return LaunchResult(spec=spec, metrics={}, result=None,
                                details={"last_checkpoint": newest},
                                stopped=_stop_record(shutdown.requested(), newest))
        with run_console, shutdown.on_force(trainer.abort):
            try:
                result = trainer.fit()
            except Exception:
                if not trainer.aborted:  # an error of the run, not of the abort
                    raise
                result = None  # the controller was aborted
        if result is None:
            raise shutdown.ForcedStop(shutdown.requested())
    details = read_result(spec)
    return LaunchResult(spec=spec, metrics=details.get("metrics", {}), result=result,
                        details=details, stopped=details.get("stopped"))


def _stop_flag(mode: str):
    """The driver's stop request, for the workers of a training run."""
    return shutdown.ray_stop_flag() if mode == "train" else contextlib.nullcontext()


def _newest_committed(spec: RunSpec) -> str | None:
    """The newest committed checkpoint of the run's lineage (None if there is none)."""
    found = ckpt.list_checkpoints(spec.checkpoint_dir, warn=False, lineage=spec.lineage)
    return found[-1] if found else None


def _stop_record(signum: int, checkpoint: str | None, forced: bool = False) -> dict:
    return {"signal": shutdown.signal_name(signum), "signum": signum, "iter": None,
            "checkpoint": checkpoint, "forced": forced}


def _eval_spec(cfg: Config) -> RunSpec:
    """Validation/test runs never resume: a fresh identity, weights from ``--checkpoint``."""
    return decide_run(Config({**cfg.to_dict(), "resume": False}, filename=cfg.filename))


def read_result(spec: RunSpec) -> dict:
    """Rank 0's ``result.json`` of a finished run ({} when there is none)."""
    location = storage.join(spec.work_dir, spec.timestamp, "result.json")
    try:
        return json.loads(storage.read_text(location))
    except (FileNotFoundError, OSError, ValueError) as exc:
        print_log(f"no result from rank 0 at {storage.describe(location)}: {exc}",
                  logger="current", level=logging.WARNING)
        return {}


def train(cfg: Config, **overrides: Any) -> LaunchResult:
    """Train ``cfg`` on Ray; ``overrides`` are ``ray`` settings (``num_workers=2`` ...)."""
    return launch(cfg, "train", RaySettings.from_config(cfg.get("ray"), **overrides))


def val(cfg: Config, checkpoint: str, **overrides: Any) -> LaunchResult:
    """Validate a checkpoint's weights on Ray."""
    return launch(cfg, "val", RaySettings.from_config(cfg.get("ray"), **overrides), checkpoint)


def test(cfg: Config, checkpoint: str, **overrides: Any) -> LaunchResult:
    """Test a checkpoint's weights on Ray."""
    return launch(cfg, "test", RaySettings.from_config(cfg.get("ray"), **overrides), checkpoint)
