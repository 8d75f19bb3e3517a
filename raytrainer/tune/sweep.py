"""A Ray Tune sweep over config keys: ``raytrainer.tune.tune(cfg, param_space=...)``.

This module owns the sweep's driver: its settings (arguments over the config's ``tune``
section), the checks made before anything starts (space keys exist, the trials fit the
cluster), the ``Tuner`` (scheduler, searcher, concurrency; ``Tuner.restore`` when resuming) and
the results (table, CSV/JSON, the best trial's runnable config). What runs inside each trial
is :mod:`raytrainer.tune.trial`; the space file is :mod:`raytrainer.tune.space`.

Layout of a sweep directory (``work_dir``)::

    <work_dir>/<trial_id>_<key>=<value>.../  one raytrainer work_dir per trial
    <work_dir>/tune/                          Ray Tune's experiment (what --resume restores)
    <work_dir>/results.csv, results.json     the table of trials
    <work_dir>/best_config.py                 the best trial's full config
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import posixpath
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .. import checkpoint as ckpt
from .. import storage
from ..checkpoint.folder import checkpoint_dir_of
from ..config import Config, ConfigError
from ..config.ray_settings import RaySettings
from ..config.sections import from_section
from ..launch.driver.cluster import InfeasibleResourcesError, connect
from ..launch.driver.paths import import_roots, resolve_locations
from ..logging import print_log
from .metric_check import check_metric
from .space import apply_values, check_space, to_plain_space, trial_dirname
from .trial import TrialPlan, trial_trainable

SCHEDULERS = ("fifo", "asha", "pbt")
LR_KEY = "optim_wrapper.optimizer.lr"
TUNE_DIR = "tune"
PBT_KEEP = 4  # Tune checkpoints kept per trial (only PBT reports checkpoints to Tune)
TRIAL_MEMORY = 128 * 2**20  # what the trial function reserves when it holds no CPU


@dataclass
class SweepOptions:
    """How a sweep runs; the config's ``tune`` section, then arguments, set them.

    Attributes:
        space: Dotted config keys -> Ray Tune distributions or constants.
        num_samples: Trials to draw (each grid point is repeated this often).
        scheduler: ``fifo``, ``asha`` (early stopping) or ``pbt``.
        search: ``random``, ``grid`` (every ``tune.choice`` becomes a grid axis) or a Ray
            Tune searcher name (``optuna``, ``hyperopt`` ... when installed).
        metric: The key rank 0 reports, e.g. ``val/accuracy/top1``.
        mode: ``max`` or ``min``.
        workers_per_trial: Ray Train workers of each trial (default: ``ray.num_workers``).
        max_concurrent: Trials running at once (default: as many as fit the cluster).
        trial_cpus: CPUs the trial function holds besides its workers (it only waits on them).
        resume: Continue the sweep in ``work_dir`` (finished trials are not run again);
            ``'auto'``: continue it if there is one, else start it (for jobs that are retried
            or re-submitted, e.g. a KubeRay RayJob).
        resume_errored: With ``resume``, run errored trials again from their checkpoints.
        scheduler_options: More keyword arguments for the Ray Tune scheduler.
    """

    space: dict | None = None
    num_samples: int = 1
    scheduler: str = "fifo"
    search: str = "random"
    metric: str | None = None
    mode: str = "max"
    workers_per_trial: int | None = None
    max_concurrent: int | None = None
    trial_cpus: float = 0
    resume: bool | str = False
    resume_errored: bool = False
    scheduler_options: dict | None = None

    @classmethod
    def from_config(cls, section: Mapping | None, **overrides: Any) -> SweepOptions:
        """Build from the config's ``tune`` section, then apply non-None ``overrides``."""
        return from_section(cls, section, "tune", **overrides)

    def validate(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"tune.scheduler must be one of {SCHEDULERS}, got "
                              f"{self.scheduler!r}")
        if self.mode not in ("max", "min"):
            raise ConfigError(f"tune.mode must be 'max' or 'min', got {self.mode!r}")
        if not self.metric:
            raise ConfigError("tune.metric is not set; pass --metric, e.g. val/accuracy/top1")
        if not isinstance(self.num_samples, int) or self.num_samples < 1:
            raise ConfigError(f"tune.num_samples must be a positive integer, got "
                              f"{self.num_samples!r}")
        for name in ("workers_per_trial", "max_concurrent"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"tune.{name} must be a positive integer, got {value!r}")
        if self.resume not in (True, False, "auto"):
            raise ConfigError(f"tune.resume must be True, False or 'auto', got {self.resume!r}")
        if not self.space:
            raise ConfigError("the sweep has no search space; pass --space SPACE.py or set "
                              "tune.space in the config")


@dataclass
class SweepResult:
    """What a finished sweep returns.

    Attributes:
        sweep_dir: The sweep's location.
        rows: One dict per trial (id, work_dir, swept values, the metric's last reported
            value, the epoch/iter where it was best, the last epoch/iter, status,
            checkpoint), as in ``results.csv``.
        best: The best trial's row (None when no trial reported the metric).
        best_config: The best trial's full config (also dumped as ``best_config.py``).
        result_grid: Ray Tune's ``ResultGrid``.
    """

    sweep_dir: str
    rows: list[dict]
    best: dict | None
    best_config: Config | None
    result_grid: Any

    @property
    def best_checkpoint(self) -> str | None:
        return self.best.get("checkpoint") if self.best else None


def _time_attr(cfg: Config) -> tuple[str, int]:
    """The scheduler's time axis (the runner's epoch or iteration) and its length."""
    train_cfg = cfg.get("train_cfg") or {}
    if "max_epochs" in train_cfg or train_cfg.get("by_epoch"):
        return "epoch", int(train_cfg.get("max_epochs", 1))
    return "iter", int(train_cfg.get("max_iters", 1))


def _grid(space: dict) -> dict:
    from ray import tune
    from ray.tune.search.sample import Categorical, Domain

    grid = {}
    for key, value in space.items():
        if isinstance(value, Categorical):
            grid[key] = tune.grid_search(list(value.categories))
        elif isinstance(value, Domain):
            raise ConfigError(f"--search grid: space key {key!r} is a continuous "
                              f"distribution ({type(value).__name__}); use tune.choice([...]) "
                              "or tune.grid_search([...]) for a grid")
        else:
            grid[key] = value
    return grid


def _scheduler(options: SweepOptions, time_attr: str, length: int):
    from ray.tune.schedulers import create_scheduler

    extra = dict(options.scheduler_options or {})
    if options.scheduler == "asha":
        extra.setdefault("max_t", length)
        extra.setdefault("grace_period", 1)
        return create_scheduler("async_hyperband", time_attr=time_attr, **extra)
    if options.scheduler == "pbt":
        from ray.tune.search.sample import Domain

        mutations = {k: v["grid_search"] if isinstance(v, Mapping) and "grid_search" in v
                     else v for k, v in options.space.items()
                     if isinstance(v, Domain) or isinstance(v, Mapping) and "grid_search" in v}
        extra.setdefault("perturbation_interval", 1)
        extra.setdefault("hyperparam_mutations", mutations)
        if not extra["hyperparam_mutations"]:
            raise ConfigError("--scheduler pbt needs at least one space key with a "
                              "distribution to perturb")
        return create_scheduler("pbt", time_attr=time_attr, **extra)
    return create_scheduler("fifo")


def _searcher(options: SweepOptions):
    if options.search in ("random", "grid"):
        return None
    from ray.tune.search import ConcurrencyLimiter, create_searcher

    try:
        searcher = create_searcher(options.search)
    except (ImportError, ValueError) as exc:
        raise ConfigError(f"--search {options.search}: {exc}") from None
    if options.max_concurrent:
        searcher = ConcurrencyLimiter(searcher, max_concurrent=options.max_concurrent)
    return searcher


def fitting_trials(settings: RaySettings, trial_cpus: float, max_concurrent: int | None) -> int:
    """How many trials run at once: ``max_concurrent``, checked against the cluster's CPUs
    (and GPUs), or as many as fit when it is None.

    Raises:
        InfeasibleResourcesError: Not even one trial fits, or ``max_concurrent`` do not.
    """
    import ray

    per_worker = {"CPU": 1.0, **{k: float(v) for k, v in
                                 (settings.resources_per_worker or {}).items()}}
    if settings.use_gpu:
        per_worker.setdefault("GPU", 1.0)
    per_trial = {k: v * settings.num_workers for k, v in per_worker.items()}
    per_trial["CPU"] = per_trial.get("CPU", 0.0) + float(trial_cpus)
    has = ray.cluster_resources()
    fits = min((int(has.get(k, 0) // v) for k, v in per_trial.items() if v), default=1)
    wanted = max_concurrent or max(fits, 1)
    if fits >= wanted:
        return wanted
    shown = ", ".join(f"{v:g} {k}" for k, v in sorted(per_trial.items()))
    cluster = ", ".join(f"{has.get(k, 0):g} {k}" for k in sorted(per_trial))
    raise InfeasibleResourcesError(
        f"{wanted} concurrent trial(s) x ({trial_cpus:g} CPU for the trial function + "
        f"{settings.num_workers} worker(s) x {per_worker.get('CPU', 0):g} CPU) = {shown} per "
        f"trial do not fit: the cluster has {cluster}, room for {fits} trial(s) at once; lower "
        "--workers-per-trial or --max-concurrent, or join a bigger cluster with --address")


@contextlib.contextmanager
def _tune_output(verbose: bool) -> Iterator[None]:
    """Without ``verbose``, Tune prints nothing of its own: its console reporter (the
    'Configuration for experiment' box, 'View detailed results here', the TensorBoard hint)
    prints whatever ``RunConfig(verbose=0)`` says, so the sweep falls back to Tune's older
    reporter, which honours it (``RAY_AIR_NEW_OUTPUT=0``, Ray's own switch), while it runs."""
    if verbose or "RAY_AIR_NEW_OUTPUT" in os.environ:
        yield
        return
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    try:
        yield
    finally:
        os.environ.pop("RAY_AIR_NEW_OUTPUT", None)


def restores(resume: bool | str, found: bool, where: str) -> bool:
    """Whether a sweep with ``resume`` (True, False or ``'auto'``) continues the one at
    ``where``, given whether one was ``found`` there.

    Raises:
        ConfigError: ``resume=True`` and there is no sweep to continue.
    """
    if not resume or found:
        return bool(resume)
    if resume != "auto":
        raise ConfigError(f"--resume: {where} holds no sweep to resume (no tune/ experiment); "
                          "start it without --resume, or use --resume auto")
    print_log(f"--resume auto: no sweep in {where} yet; starting it", logger="current")
    return False


def _tuner(cfg: Config, options: SweepOptions, settings: RaySettings, sweep_dir: str,
           concurrent: int, scheduler, searcher):
    from ray import tune

    plan = TrialPlan(cfg=cfg.to_dict(), filename=cfg.filename, settings=settings,
                     sweep_dir=sweep_dir, metric=options.metric,
                     report_checkpoints=options.scheduler == "pbt",
                     lr_key=LR_KEY if LR_KEY in options.space else None,
                     import_roots=import_roots(cfg))
    # Tune needs the trial function to ask for something; without trial_cpus it asks only
    # for memory, so a 1-worker trial takes exactly one CPU.
    held = {"CPU": options.trial_cpus} if options.trial_cpus else {"memory": TRIAL_MEMORY}
    trainable = tune.with_resources(trial_trainable(plan), held)
    space = _grid(options.space) if options.search == "grid" else dict(options.space)
    filesystem, path = storage.to_pyarrow(sweep_dir)
    tune_path = posixpath.join(path, TUNE_DIR)
    if options.resume and restores(
            options.resume, tune.Tuner.can_restore(tune_path, storage_filesystem=filesystem),
            storage.describe(sweep_dir)):
        print_log(f"resuming the sweep in {storage.describe(sweep_dir)}", logger="current")
        return tune.Tuner.restore(tune_path, trainable=trainable, param_space=space,
                                  resume_unfinished=True, resume_errored=options.resume_errored,
                                  storage_filesystem=filesystem)
    return tune.Tuner(
        trainable, param_space=space,
        tune_config=tune.TuneConfig(
            metric=options.metric, mode=options.mode, num_samples=options.num_samples,
            scheduler=scheduler, search_alg=searcher,
            max_concurrent_trials=concurrent, reuse_actors=False,
            trial_dirname_creator=lambda trial: trial_dirname(
                trial.trial_id, {k: trial.config.get(k) for k in options.space})),
        run_config=tune.RunConfig(
            name=TUNE_DIR, storage_path=posixpath.dirname(tune_path),
            storage_filesystem=filesystem, verbose=0,
            # PBT restores a donor's checkpoint some reports after it was made: keep several
            checkpoint_config=tune.CheckpointConfig(num_to_keep=PBT_KEEP)))


def tune(cfg: Config, param_space: Mapping[str, Any] | None = None, *,
         work_dir: str | None = None, settings: RaySettings | None = None,
         verbose: bool = False, **options: Any) -> SweepResult:
    """Sweep ``cfg`` over ``param_space`` with Ray Tune; each trial is a full raytrainer run.

    Args:
        cfg: The config every trial starts from.
        param_space: Dotted config keys -> Ray Tune distributions or constants (else the
            config's ``tune.space``).
        work_dir: The sweep's location (else the config's ``work_dir``).
        settings: Ray settings (``address`` ...); ``num_workers`` is overridden by
            ``workers_per_trial``.
        verbose: Also print Ray's own output.
        options: :class:`SweepOptions` fields (``num_samples``, ``scheduler``, ``search``,
            ``metric``, ``mode``, ``workers_per_trial``, ``max_concurrent``, ``resume`` ...).

    Returns:
        The :class:`SweepResult` (table of trials, best trial, its config and checkpoint).

    Raises:
        ConfigError: A space key the config lacks, a bad option.
        InfeasibleResourcesError: The trials cannot fit the cluster.
    """
    section = dict(cfg.get("tune") or {})
    if param_space is not None:
        section["space"] = param_space
    if section.get("space") is not None:
        section["space"] = to_plain_space(section["space"], "tune.space")
    opts = SweepOptions.from_config(section, **options)
    base = Config({k: v for k, v in cfg.to_dict().items() if k != "tune"}, filename=cfg.filename)
    if work_dir:
        base["work_dir"] = work_dir
    if not base.get("work_dir"):
        raise ConfigError("the sweep has no work_dir; set it or pass --work-dir")
    check_space(base, opts.space)
    check_metric(base, opts.metric)
    base, _ = resolve_locations(base)
    sweep_dir = str(base["work_dir"]).rstrip("/")
    settings = settings or RaySettings.from_config(base.get("ray"))
    if opts.workers_per_trial:
        settings.num_workers = opts.workers_per_trial
    storage.set_storage_options(storage.resolved_storage_options(base.get("storage")))
    scheduler = _scheduler(opts, *_time_attr(base))  # bad options fail before Ray starts
    searcher = _searcher(opts)
    quiet = dict(logging_level=logging.INFO if verbose else logging.WARNING)
    with connect(settings, log_to_driver=verbose, init_kwargs=quiet):
        concurrent = fitting_trials(settings, opts.trial_cpus, opts.max_concurrent)
        print_log(f"sweep: {opts.num_samples} sample(s), scheduler={opts.scheduler}, "
                  f"search={opts.search}, {settings.num_workers} worker(s) per trial, "
                  f"{concurrent} at once; sweep dir {storage.describe(sweep_dir)}",
                  logger="current")
        with _tune_output(verbose):
            grid = _tuner(base, opts, settings, sweep_dir, concurrent, scheduler,
                          searcher).fit()
    return collect_results(base, opts, sweep_dir, grid, settings)


def _row(base: Config, opts: SweepOptions, sweep_dir: str, result) -> dict:
    values = {k: result.config.get(k) for k in opts.space}
    name = posixpath.basename(str(result.path).rstrip("/"))
    work_dir = storage.join(sweep_dir, name)
    history = result.metrics_dataframe
    metric, best_at = None, None
    time_attr, length = _time_attr(base)
    if history is not None and opts.metric in history:
        column = history[opts.metric].dropna()
        if len(column):
            index = column.idxmax() if opts.mode == "max" else column.idxmin()
            metric = float(column.iloc[-1])  # the trial's last report, as Tune ranks it
            best_at = int(history.loc[index, time_attr]) if time_attr in history else None
    if isinstance((result.metrics or {}).get(opts.metric), (int, float)):
        metric = float(result.metrics[opts.metric])
    last = int(history[time_attr].max()) if history is not None and time_attr in history \
        else None
    # The trial's own record of its newest run wins over Tune's history: a run that ended
    # while Tune's stop arrived (or before Tune took its last reports) finished further.
    outcome = _trial_outcome(work_dir)
    if outcome is not None and outcome.get("mode") == "train":
        position = outcome.get(time_attr)
        if isinstance(position, int) and (last is None or position >= last):
            last = position
            final = (outcome.get("metrics") or {}).get(opts.metric.split("/", 1)[-1]) \
                if opts.metric.startswith("val/") else None
            if isinstance(final, (int, float)):
                metric = float(final)
    status = "ERROR" if result.error else ("STOPPED" if last is None or last < length
                                           else "DONE")
    checkpoint_root = checkpoint_dir_of(base, work_dir)
    return {"trial_id": result.metrics.get("trial_id", name), "work_dir": work_dir, **values,
            opts.metric: metric, f"best_{time_attr}": best_at, f"last_{time_attr}": last,
            "status": status,
            "checkpoint": ckpt.latest_checkpoint(checkpoint_root)
            if storage.exists(checkpoint_root) else None}


def _raise_unreported_metric(metric: str, errors: list) -> None:
    """No trial reported ``metric``: say so, with the metrics the trials reported when a
    trial's check found them (:func:`raytrainer.tune.trial.check_metric_reported`).

    Raises:
        ConfigError: Always.
    """
    found = [line.strip() for error in errors for line in str(error).splitlines()
             if f"tune.metric {metric!r} is not" in line]
    detail = found[0].split("ConfigError: ")[-1] if found else (
        f"the first trial error: {errors[0]}" if errors else "no trial made a validation")
    raise ConfigError(f"no trial of the sweep reported tune.metric {metric!r}: {detail}")


def _trial_outcome(work_dir: str) -> dict | None:
    """What the trial's newest finished run wrote when it ended (rank 0's ``result.json``:
    final metrics, epoch, iter, seed); None when no run of it finished (Tune stopped it)."""
    runs = sorted(entry["path"] for entry in storage.listdir(work_dir)
                  if entry["type"] == "directory") if storage.exists(work_dir) else []
    for run in reversed(runs):
        location = storage.join(run, "result.json")
        if storage.exists(location):
            return json.loads(storage.read_text(location))
    return None


def _trial_seed(work_dir: str) -> int | None:
    """The seed the trial's newest run trained with."""
    outcome = _trial_outcome(work_dir)
    return None if outcome is None else outcome.get("seed")


def best_trial_config(base: Config, opts: SweepOptions, best: dict, sweep_dir: str,
                      settings: RaySettings | None) -> Config:
    """The config the best trial ran with, to train it again: the space's values, the
    trial's worker count and GPU use (``--workers-per-trial`` overrides the config's
    ``ray.num_workers``) and its seed, into a fresh work_dir ``<sweep>/best``."""
    config = apply_values(base, {k: best[k] for k in opts.space})
    if settings is not None:
        ray_section = dict(config.get("ray") or {})
        ray_section.update(num_workers=settings.num_workers, use_gpu=settings.use_gpu)
        config["ray"] = ray_section
    seed = _trial_seed(best["work_dir"])
    if seed is not None:
        config["randomness"] = {**dict(config.get("randomness") or {}), "seed": seed}
    config["work_dir"] = storage.join(sweep_dir, "best")
    config["resume"] = False
    return config


def collect_results(base: Config, opts: SweepOptions, sweep_dir: str, grid,
                    settings: RaySettings | None = None) -> SweepResult:
    """Build the table, write ``results.csv``/``results.json`` and ``best_config.py``, print
    the table."""
    rows = sorted((_row(base, opts, sweep_dir, result) for result in grid),
                  key=lambda row: row["trial_id"])

    scored = [row for row in rows if row[opts.metric] is not None]
    errors = [result.error for result in grid if result.error]
    if rows and not scored:
        _raise_unreported_metric(opts.metric, errors)
    best = (max if opts.mode == "max" else min)(
        scored, key=lambda row: row[opts.metric]) if scored else None
    best_config = None
    if best is not None:
        best_config = best_trial_config(base, opts, best, sweep_dir, settings)
        storage.write_text(storage.join(sweep_dir, "best_config.py"), best_config.pretty_text)
    storage.write_text(storage.join(sweep_dir, "results.json"),
                       json.dumps(rows, indent=1, default=str))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["trial_id"])
    writer.writeheader()
    writer.writerows(rows)
    storage.write_text(storage.join(sweep_dir, "results.csv"), buffer.getvalue())
    print(format_table(rows, best), flush=True)
    if rows and len(errors) == len(rows):
        raise RuntimeError(f"every trial of the sweep failed; the first: {errors[0]}")
    return SweepResult(sweep_dir=sweep_dir, rows=rows, best=best, best_config=best_config,
                       result_grid=grid)


def format_table(rows: list[dict], best: dict | None) -> str:
    """The table of trials as aligned text (the best trial marked with ``*``)."""
    if not rows:
        return "no trials"
    columns = [c for c in rows[0] if c != "work_dir"]
    cells = [[("*" if row is best else " ") + _cell(row[columns[0]])]
             + [_cell(row[c]) for c in columns[1:]] for row in rows]
    header = [" " + columns[0]] + columns[1:]
    widths = [max(len(x) for x in column) for column in zip(header, *cells)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)


__all__ = ["SweepOptions", "SweepResult", "collect_results", "fitting_trials", "format_table",
           "tune"]
