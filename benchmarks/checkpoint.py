"""Checkpoint cost: save/load throughput against the raw floor, the training stall of a save
(asynchronous vs synchronous), and the time to resume early vs late in a run.

One invocation runs the three parts in one process (part 3 also starts resume subprocesses);
within each part both sides are interleaved, alternating which goes first, and every table
reports medians over ``--repeats``.

1. Throughput. An MLP whose weights plus SGD-momentum state are ``--size-mb`` (one training
   step so the momentum buffers exist) is saved with ``Runner.save_checkpoint`` (the Runner
   path: gather the state, split it into per-rank files, CRC-32s, ``commit.json``) and read with
   ``checkpoint.load_checkpoint`` (the reader, without copying into the model, so that it does
   what ``torch.load`` does). The raw floor is the same state dict through ``torch.save(state,
   path)`` / ``torch.load(path)`` on local disk, and on S3 one PUT (fsspec ``pipe_file``) / one
   ``cat_file`` of its ``torch.save`` bytes, also shown with ``torch.save``/``torch.load``.
   S3 is moto's server on 127.0.0.1, started by this script in a child process so that it does
   not share the benchmark's GIL (in-process it measures moto's contention with the client).
   ``os.sync()`` runs before every timed operation so no write-back of the previous one is
   pending; outputs are deleted between repeats. Local reads come from the page cache (both
   sides alike).
2. Training stall. The overhead benchmark's workload shape (MLP, SGD momentum, synthetic
   in-memory data, ``IterBasedTrainLoop``, ``InfiniteSampler``, default hooks, one torch thread)
   with the same ``--size-mb`` model, and ``CheckpointHook(by_epoch=False, interval=K)`` with
   ``async_save`` False and True, saving to local disk. K is calibrated so that K iterations
   take 3x a synchronous save (writes finish between saves; the table shows whether one had
   to wait). The stall of a save is the duration of the iteration that saved minus the plain
   iteration (median of the synchronous run's iterations that did not save, same repeat); the
   drag is what the following K-1 iterations lose while the background write competes for the
   CPU and the GIL. A third run saves every iteration, so each asynchronous save first waits
   for the previous write.
3. Resume cost. A cheap MLP trains 5,001 iterations (a 4,096-sample dataset: ~20 epochs),
   saving at iterations 50 and 5,000; a fresh ``python`` process then resumes from each. Timed
   from just before ``subprocess.Popen`` to ``before_train_iter`` of the first resumed
   iteration, for an ``IterBasedTrainLoop`` + ``InfiniteSampler`` and an
   ``EpochBasedTrainLoop`` + ``DefaultSampler`` (both positions are mid-epoch). The child also
   reports how many samples it loaded before that iteration (a replaying resume would load
   every earlier batch) and whether its first batch is the one the uninterrupted run had.

Usage::

    python benchmarks/checkpoint.py                      # all parts, 5 repeats, 6-8 minutes
    python benchmarks/checkpoint.py --parts 1 --size-mb 400
    python benchmarks/checkpoint.py --quick              # 2 repeats, 50 MB, 50 vs 1,000
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import logging
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch.utils.data import Dataset

from raytrainer import checkpoint as ckpt
from raytrainer import storage
from raytrainer.checkpoint.async_save import copy_to_cpu
from raytrainer.dataset import build_dataloader
from raytrainer.hooks import Hook
from raytrainer.logging import MessageHub, MMLogger
from raytrainer.runner import Runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as `python benchmarks/checkpoint.py`
    sys.path.insert(0, ROOT)

from benchmarks.overhead import BenchMLP  # noqa: E402
from benchmarks.workloads import (  # noqa: E402
    IN_FEATURES,
    NUM_CLASSES,
    NUM_SAMPLES,
    SyntheticDataset,
)

BIG_LAYERS = 4  # hidden layers of the large MLP: 64 -> W -> W -> W -> W -> 10
MB = 1e6


# --------------------------------------------------------------------------- shared workload
def hidden_for_size(size_mb: float) -> tuple[int, ...]:
    """Hidden widths of the large MLP whose fp32 weights plus momentum are ``size_mb`` MB.

    Parameters: 64W + W + (BIG_LAYERS-1)(W^2 + W) + 10W + 10; bytes = 2 * 4 * parameters.
    """
    a, b = BIG_LAYERS - 1, IN_FEATURES + BIG_LAYERS + NUM_CLASSES
    params = size_mb * MB / 8
    width = (-b + (b * b + 4 * a * params) ** 0.5) / (2 * a)
    return (max(8, round(width)),) * BIG_LAYERS


def dataloader_cfg(dataset: Dataset, batch_size: int, sampler: str = "InfiniteSampler") -> dict:
    return dict(dataset=dataset, batch_size=batch_size, num_workers=0,
                sampler=dict(type=sampler, shuffle=True, seed=0),
                collate_fn=dict(type="default_collate"))


def build_runner(hidden: tuple[int, ...], dataset: Dataset, batch_size: int, work_dir: str,
                 name: str, train_cfg: dict, hooks: list[Hook], checkpoint: dict | None = None,
                 sampler: str = "InfiniteSampler", resume: bool | str = False) -> Runner:
    torch.manual_seed(0)
    return Runner(model=BenchMLP(hidden), work_dir=work_dir,
                  train_dataloader=dataloader_cfg(dataset, batch_size, sampler),
                  train_cfg=train_cfg,
                  optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.01, momentum=0.9)),
                  default_hooks=dict(checkpoint=checkpoint), custom_hooks=hooks,
                  randomness=dict(seed=0),
                  log_processor=dict(by_epoch=train_cfg.get("by_epoch", True)),
                  experiment_name=name, resume=resume)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """The runs' log lines still get formatted and written, just not to this output."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def release(runner: Runner) -> None:
    """Drop the run's process-global logger and message hub (several runs share a process)."""
    name = runner.experiment_name
    if MMLogger.check_instance_created(name):
        MMLogger.get_instance(name).close()
        MMLogger.drop_instance(name)
    MessageHub.drop_instance(name)


def timed(fn: Callable[[], object]) -> float:
    """Seconds ``fn`` takes, starting with no dirty pages pending and no garbage to collect."""
    gc.collect()
    os.sync()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def target_mark(ok: bool) -> str:
    return "met" if ok else "MISSED"


# --------------------------------------------------------------------------- part 1: throughput
class S3Endpoint:
    """moto's S3 server on 127.0.0.1 in a child process and one bucket; ``storage`` points at
    it, and fake credentials are in the environment while it runs (as in tests/conftest.py)."""

    _SERVER = ("import logging, sys\n"
               "from moto.server import ThreadedMotoServer\n"
               "logging.getLogger('werkzeug').setLevel(logging.WARNING)\n"
               "server = ThreadedMotoServer(ip_address='127.0.0.1', port=0, verbose=False)\n"
               "server.start()\n"
               "print('%s:%s' % server.get_host_and_port(), flush=True)\n"
               "sys.stdin.read()\n"
               "server.stop()\n")
    _ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}

    _UNSET = ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")

    def __enter__(self) -> S3Endpoint:
        self._saved_env = {name: os.environ.get(name) for name in (*self._ENV, *self._UNSET)}
        for name in self._UNSET:
            os.environ.pop(name, None)
        os.environ.update(self._ENV)
        self._process = subprocess.Popen([sys.executable, "-c", self._SERVER],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         text=True)
        self.url = "http://" + self._process.stdout.readline().strip()
        storage.set_storage_options({"endpoint_url": self.url}, protocol="s3")
        self.bucket = "s3://raytrainer-bench"
        self.fs, _ = storage.get_filesystem(self.bucket)
        self.fs.mkdir("raytrainer-bench")
        return self

    def __exit__(self, *exc) -> None:
        storage.reset_storage_options()
        self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@dataclass
class Throughput:
    """Seconds per repeat of each operation; ``nbytes`` is the raw ``torch.save`` size."""

    nbytes: int = 0
    ours_bytes: int = 0
    times: dict[str, list[float]] = field(default_factory=dict)

    def add(self, key: str, seconds: float) -> None:
        self.times.setdefault(key, []).append(seconds)

    def mbps(self, key: str) -> float:
        return self.nbytes / MB / median(self.times[key])


def _trained_runner(size_mb: float, work_dir: str) -> Runner:
    """A Runner around the large MLP after one SGD step (so the momentum buffers exist)."""
    with quiet():
        runner = build_runner(hidden_for_size(size_mb), SyntheticDataset(), 8, work_dir,
                              "ckpt_throughput", dict(by_epoch=False, max_iters=1), [])
        runner.train()
    return runner


def bench_throughput(size_mb: float, repeats: int, work_dir: str) -> Throughput:
    """Interleave ours and raw, local disk then S3, ``repeats`` times."""
    runner = _trained_runner(size_mb, work_dir)
    state = runner.checkpoints.state()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    del buffer
    result = Throughput(nbytes=len(payload))
    raw_path = os.path.join(work_dir, "raw.pt")
    try:
        with S3Endpoint() as s3:
            s3_raw = f"{s3.bucket.removeprefix('s3://')}/raw.pt"

            def ours(kind: str, root: str) -> None:
                saved: list[str] = []
                with quiet():
                    result.add(f"{kind} save ours",
                               timed(lambda: saved.append(runner.save_checkpoint(root, "iter_1"))))
                location = saved[0]
                result.add(f"{kind} load ours", timed(lambda: ckpt.load_checkpoint(location)))
                result.ours_bytes = sum(info["size"] for info in
                                        ckpt.read_commit(location)["files"].values())
                storage.remove(location, recursive=True)

            def raw_local() -> None:
                result.add("local save raw", timed(lambda: torch.save(state, raw_path)))
                result.add("local load raw",
                           timed(lambda: torch.load(raw_path, weights_only=True)))
                os.remove(raw_path)

            def raw_s3() -> None:
                serialize = timed(lambda: torch.save(state, io.BytesIO()))
                # one PUT: for 200 MB s3fs would otherwise upload 50 MB parts, which moto
                # reassembles more slowly than it takes one object
                upload = timed(lambda: s3.fs.pipe_file(s3_raw, payload, chunksize=len(payload)))
                result.add("s3 save raw", upload)
                result.add("s3 save raw+torch", serialize + upload)
                read: list[bytes] = []
                download = timed(lambda: read.append(s3.fs.cat_file(s3_raw)))
                data = read.pop()
                deserialize = timed(lambda: torch.load(io.BytesIO(data), weights_only=True))
                result.add("s3 load raw", download)
                result.add("s3 load raw+torch", download + deserialize)
                s3.fs.rm(s3_raw)

            sides = {"local": (lambda: ours("local", os.path.join(work_dir, "throughput")),
                               raw_local),
                     "s3": (lambda: ours("s3", storage.join(s3.bucket, "throughput")), raw_s3)}
            for rep in range(repeats):
                for kind, pair in sides.items():
                    for run in (pair if rep % 2 == 0 else pair[::-1]):
                        run()
                    speeds = "  ".join(f"{key.split(' ', 1)[1]} {result.nbytes / MB / t[-1]:5.0f}"
                                       for key, t in result.times.items()
                                       if key.startswith(kind + " "))
                    print(f"  repeat {rep + 1}/{repeats} {kind:5s} MB/s: {speeds}", flush=True)
    finally:
        release(runner)
    return result


def print_throughput(result: Throughput, repeats: int, target: float) -> list[str]:
    """Print the table; return one summary line per (storage, operation)."""
    print(f"\nPART 1: save/load throughput, median of {repeats} interleaved repeats "
          f"(state {result.nbytes / MB:.1f} MB as one torch.save; our files "
          f"{result.ours_bytes / MB:.1f} MB)")
    header = (f"{'storage':7s} {'op':4s} {'raw floor':27s} {'ours s':>7s} {'raw s':>7s} "
              f"{'ours MB/s':>9s} {'raw MB/s':>9s} {'ours/raw':>8s} {'paired':>7s}  target")
    print(header)
    print("-" * len(header))
    rows = (("local", "save", "raw", "torch.save(state, path)"),
            ("local", "load", "raw", "torch.load(path)"),
            ("s3", "save", "raw", "one PUT of torch.save bytes"),
            ("s3", "save", "raw+torch", "torch.save + one PUT"),
            ("s3", "load", "raw", "cat_file"),
            ("s3", "load", "raw+torch", "cat_file + torch.load"))
    summary = []
    for kind, op, raw_key, label in rows:
        ours_t = result.times[f"{kind} {op} ours"]
        raw_t = result.times[f"{kind} {op} {raw_key}"]
        ratio = median(raw_t) / median(ours_t)
        paired = median([r / o for r, o in zip(raw_t, ours_t)])
        mark = f">= {target} {target_mark(ratio >= target)}"
        ours_mbps = result.mbps(f"{kind} {op} ours")
        raw_mbps = result.mbps(f"{kind} {op} {raw_key}")
        print(f"{kind:7s} {op:4s} {label:27s} {median(ours_t):7.3f} {median(raw_t):7.3f} "
              f"{ours_mbps:9.0f} {raw_mbps:9.0f} {ratio:8.2f} {paired:7.2f}  {mark}")
        summary.append(f"{kind} {op} ours/raw ({label}) {ratio:.2f} (target >= {target}: "
                       f"{target_mark(ratio >= target)})")
    print("ours = Runner.save_checkpoint / checkpoint.load_checkpoint; MB/s = state bytes / "
          "seconds; ours/raw = ratio of medians\n(= ours MB/s / raw MB/s); paired = median "
          "over repeats of raw s / ours s of the same repeat")
    return summary


# --------------------------------------------------------------------------- part 2: stall
class _IterClock(Hook):
    """``perf_counter()`` at ``before_train`` and after every iteration (after every other
    hook, CheckpointHook included)."""

    priority = "LOWEST"

    def __init__(self):
        self.stamps: list[float] = []

    def before_train(self, runner) -> None:
        self.stamps.append(time.perf_counter())

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.stamps.append(time.perf_counter())


class _BeforeSaveClock(Hook):
    """``time.time()`` at ``after_train_iter`` just before CheckpointHook (VERY_LOW = 90)."""

    priority = 89

    def __init__(self):
        self.stamps: dict[int, float] = {}

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.stamps[runner.iter + 1] = time.time()


@dataclass
class StallRun:
    """One training run: iteration durations (index n-1 is iteration n), the iterations that
    saved, and each save's write time (from CheckpointHook's call to its ``commit.json``)."""

    durations: list[float]
    saves: list[int]
    writes: list[float]
    interval: int
    save_starts: list[float]

    def plain_median(self, first: int = 4) -> float:
        """Median duration of iterations ``first``.. that did not save (warm-up excluded)."""
        saved = set(self.saves)
        return median([d for n, d in enumerate(self.durations, 1)
                       if n >= first and n not in saved])

    def stalls(self, baseline: float) -> list[float]:
        return [self.durations[n - 1] - baseline for n in self.saves]

    def waited(self) -> int:
        """Saves that started while the previous save's write was still running."""
        ends = [start + write for start, write in zip(self.save_starts, self.writes)]
        return sum(start < end for start, end in zip(self.save_starts[1:], ends))

    def drags(self, baseline: float) -> list[float]:
        """Extra time of the ``interval - 1`` iterations after each save."""
        return [sum(self.durations[m - 1] - baseline for m in range(n + 1, n + self.interval)
                    if m <= len(self.durations)) for n in self.saves]


def run_stall(hidden: tuple[int, ...], dataset: Dataset, batch_size: int, work_dir: str,
              name: str, async_save: bool, saves: list[int], interval: int,
              max_iters: int) -> StallRun:
    clock, before_save = _IterClock(), _BeforeSaveClock()
    checkpoint = dict(type="CheckpointHook", by_epoch=False, interval=interval,
                      save_begin=saves[0], save_last=False, async_save=async_save)
    with quiet():
        runner = build_runner(hidden, dataset, batch_size, work_dir, name,
                              dict(by_epoch=False, max_iters=max_iters), [clock, before_save],
                              checkpoint)
        try:
            runner.train()
            root = runner.checkpoints.directory
        finally:
            release(runner)
    writes = [os.stat(os.path.join(root, f"iter_{n}", ckpt.COMMIT_FILE)).st_mtime_ns / 1e9
              - before_save.stamps[n] for n in saves]
    durations = [b - a for a, b in zip(clock.stamps, clock.stamps[1:])]
    return StallRun(durations, saves, writes, interval, [before_save.stamps[n] for n in saves])


STALL_MODES = ("sync", "async", "async back-to-back")


@dataclass
class StallResult:
    interval: int
    runs: dict[str, list[StallRun]] = field(default_factory=lambda: {m: [] for m in STALL_MODES})
    save_call: list[float] = field(default_factory=list)
    snapshot: list[float] = field(default_factory=list)

    def baselines(self) -> list[float]:
        """Per repeat: the median plain iteration of the synchronous run (nothing in the
        background), the reference for every mode of that repeat."""
        return [run.plain_median() for run in self.runs["sync"]]


def choose_interval(hidden: tuple[int, ...], dataset: Dataset, batch_size: int,
                    work_dir: str) -> int:
    """K such that K plain iterations take 3x a synchronous save (a background write runs
    1.5-2x as long as a synchronous one here), from a short synchronous run."""
    run_dir = os.path.join(work_dir, "stall_calibration")
    run = run_stall(hidden, dataset, batch_size, run_dir, "ckpt_stall_calibration", False,
                    [5, 10], 5, 11)
    shutil.rmtree(run_dir, ignore_errors=True)
    interval = min(20, max(5, math.ceil(3 * median(run.writes) / run.plain_median())))
    print(f"  calibration: plain iteration {run.plain_median():.3f} s, synchronous save "
          f"{median(run.writes):.3f} s -> K = {interval}", flush=True)
    return interval


def bench_stall(size_mb: float, repeats: int, work_dir: str, num_saves: int,
                batch_size: int = 32) -> StallResult:
    hidden = hidden_for_size(size_mb)
    dataset = SyntheticDataset()
    interval = choose_interval(hidden, dataset, batch_size, work_dir)
    result = StallResult(interval)
    warmup = 8
    regular = [interval * (j + 1) for j in range(num_saves)]
    last_regular = interval * (num_saves + 1) - 1
    plans = {"sync": (False, regular, interval, last_regular),
             "async": (True, regular, interval, last_regular),
             "async back-to-back": (True, list(range(warmup + 1, warmup + num_saves + 2)), 1,
                                    warmup + num_saves + 1)}
    for rep in range(repeats):
        for mode in (STALL_MODES if rep % 2 == 0 else STALL_MODES[::-1]):
            async_save, saves, every, max_iters = plans[mode]
            run_dir = os.path.join(work_dir, f"stall_{rep}_{mode.replace(' ', '_')}")
            run = run_stall(hidden, dataset, batch_size, run_dir, f"ckpt_stall_{rep}_{mode}",
                            async_save, saves, every, max_iters)
            shutil.rmtree(run_dir, ignore_errors=True)
            result.runs[mode].append(run)
            print(f"  repeat {rep + 1}/{repeats} {mode:18s} plain iter {run.plain_median():.3f} s"
                  f"  save iter {median([run.durations[n - 1] for n in saves]):.3f} s  write "
                  f"{median(run.writes):.3f} s", flush=True)
    # What the training thread itself spends in an asynchronous save.
    runner = _trained_runner(size_mb, os.path.join(work_dir, "save_call"))
    try:
        state = runner.checkpoints.state()
        for rep in range(repeats):
            with quiet():
                result.save_call.append(timed(lambda name=f"iter_{rep}": runner.save_checkpoint(
                    os.path.join(work_dir, "save_call"), name, asynchronous=True)))
                runner.wait_for_checkpoint()
            result.snapshot.append(timed(lambda: copy_to_cpu(state)))
    finally:
        release(runner)
        shutil.rmtree(os.path.join(work_dir, "save_call"), ignore_errors=True)
    return result


def print_stall(result: StallResult, repeats: int, target: float) -> list[str]:
    print(f"\nPART 2: training stall per checkpoint on local disk, median over {repeats} "
          "interleaved repeats")
    header = (f"{'mode':19s} {'K':>3s} {'saves':>5s} {'waited':>6s} {'stall s':>8s} {'drag s':>7s} "
              f"{'stall+drag':>10s} {'write s':>8s} {'stall/sync':>10s} {'paired':>7s}  target")
    print(header)
    print("-" * len(header))
    baselines = result.baselines()
    per_mode: dict[str, tuple[list[float], list[float]]] = {}
    for mode in STALL_MODES:
        stalls, drags = [], []
        for run, base in zip(result.runs[mode], baselines):
            # back-to-back: the first save has no write in flight to wait for
            steady = run.stalls(base)[1:] if run.interval == 1 else run.stalls(base)
            stalls.append(median(steady))
            drags.append(median(run.drags(base)) if run.interval > 1 else 0.0)
        per_mode[mode] = stalls, drags
    sync_stalls = per_mode["sync"][0]
    sync = median(sync_stalls)
    summary = []
    for mode in STALL_MODES:
        runs = result.runs[mode]
        stalls, drags = per_mode[mode]
        stall = median(stalls)
        ratio = stall / sync
        paired = median([a / s for a, s in zip(stalls, sync_stalls)])
        total = median([a + d for a, d in zip(stalls, drags)])
        mark = {"sync": "", "async": f"<= {target} {target_mark(ratio <= target)}"}.get(
            mode, "(no target)")
        drag = f"{median(drags):7.3f}" if runs[0].interval > 1 else f"{'-':>7s}"
        waited = f"{sum(r.waited() for r in runs)}/{sum(len(r.saves) - 1 for r in runs)}"
        print(f"{mode:19s} {runs[0].interval:3d} {len(runs[0].saves):5d} {waited:>6s} "
              f"{stall:8.3f} {drag} "
              f"{total:10.3f} {median([median(r.writes) for r in runs]):8.3f} {ratio:10.3f} "
              f"{paired:7.3f}  {mark}")
        if mode != "sync":
            summary.append(f"{mode} stall / sync save {ratio:.3f} ({stall:.3f} s vs {sync:.3f} s"
                           f"; stall + drag {total:.3f} s)" +
                           (f" (target <= {target}: {target_mark(ratio <= target)})"
                            if mode == "async" else ""))
    interval = result.interval
    print(f"plain iteration (sync run, no save) {median(baselines):.3f} s; K={interval} leaves "
          f"{interval * median(baselines):.2f} s between saves\n"
          "stall = duration of the iteration that saved - plain iteration; drag = extra time of "
          f"the {interval - 1} iterations after\na save (the background write competing for "
          "the CPU and the GIL); write = CheckpointHook's call to commit.json;\nwaited = saves "
          "that started while the previous write was still running; back-to-back saves every\n"
          "iteration (K=1), so each save first waits for the previous write (its first save is "
          "excluded)")
    call, snapshot = median(result.save_call), median(result.snapshot)
    print(f"on an idle training thread, save_checkpoint(asynchronous=True) returns after "
          f"{call:.3f} s, of which copy_to_cpu {snapshot:.3f} s")
    summary.append(f"async save call {call:.3f} s (copy_to_cpu {snapshot:.3f} s)")
    return summary


# --------------------------------------------------------------------------- part 3: resume
RESUME_LOOPS = {"iter": ("IterBasedTrainLoop + InfiniteSampler", "InfiniteSampler"),
                "epoch": ("EpochBasedTrainLoop + DefaultSampler", "DefaultSampler")}
RESUME_HIDDEN = (32,)
RESUME_BATCH = 16


def resume_train_cfg(loop: str, last: int) -> dict:
    """Long enough for ``last + 1`` iterations (the run stops itself there)."""
    if loop == "iter":
        return dict(by_epoch=False, max_iters=last + 1)
    per_epoch = -(-NUM_SAMPLES // RESUME_BATCH)
    return dict(by_epoch=True, max_epochs=(last + 1) // per_epoch + 2)


def batch_fingerprint(data_batch: dict) -> str:
    crc = zlib.crc32(data_batch["inputs"].numpy().tobytes())
    return f"{zlib.crc32(data_batch['data_samples'].numpy().tobytes(), crc):08x}"


class _SaveAt(Hook):
    """Saves ``iter_<n>`` after iteration n for n in ``positions``, records the fingerprint of
    the batch that follows each, and stops the run after iteration ``max(positions) + 1``."""

    priority = "VERY_LOW"

    def __init__(self, positions: tuple[int, ...], by_epoch: bool):
        self.positions = positions
        self.by_epoch = by_epoch
        self.fingerprints: dict[int, str] = {}
        self.locations: dict[int, str] = {}

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if runner.iter in self.positions:
            self.fingerprints[runner.iter] = batch_fingerprint(data_batch)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        done = runner.iter + 1
        if done in self.positions:
            self.locations[done] = runner.save_checkpoint(
                runner.checkpoints.directory, f"iter_{done}", by_epoch=self.by_epoch)
        if done == max(self.positions) + 1:
            runner.train_loop.stop_training = True


class _FirstIterMarker(Hook):
    """In the resume child: report the phases and the first resumed batch, then exit."""

    priority = "HIGHEST"

    def __init__(self, dataset: SyntheticDataset, started: float):
        self.dataset = dataset
        self.times = {"main": started}

    def before_run(self, runner) -> None:
        self.times["set_up"] = time.monotonic()

    def before_train(self, runner) -> None:
        self.times["resumed"] = time.monotonic()

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self.times["first_iter"] = time.monotonic()
        report = json.dumps({"marker": "first_iter", "times": self.times, "iter": runner.iter,
                             "loaded": self.dataset.loaded,
                             "fingerprint": batch_fingerprint(data_batch)})
        sys.__stdout__.write(report + "\n")  # the run's own output is redirected
        sys.__stdout__.flush()
        os._exit(0)


def resume_child(loop: str, last: int, location: str, work_dir: str) -> None:
    """The resumed process: build the same run with ``resume=location``, train."""
    started = time.monotonic()
    torch.set_num_threads(1)
    logging.getLogger().setLevel(logging.WARNING)
    dataset = SyntheticDataset()
    marker = _FirstIterMarker(dataset, started)
    with quiet():
        runner = build_runner(RESUME_HIDDEN, dataset, RESUME_BATCH, work_dir, "ckpt_resume_child",
                              resume_train_cfg(loop, last), [marker],
                              sampler=RESUME_LOOPS[loop][1], resume=location)
        marker.times["built"] = time.monotonic()
        runner.train()
    raise SystemExit("the resumed run ended without reaching an iteration")


@dataclass
class ResumeResult:
    positions: tuple[int, ...]
    # (loop, position) -> one dict per repeat: total and phase seconds, loaded, same_batch
    samples: dict[tuple[str, int], list[dict]] = field(default_factory=dict)
    train_seconds: dict[str, float] = field(default_factory=dict)
    replay_seconds: dict[tuple[str, int], float] = field(default_factory=dict)
    state_costs: dict[tuple[str, int], dict] = field(default_factory=dict)


def _resume_once(loop: str, last: int, location: str, work_dir: str) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--resume-child", loop, str(last),
               location, work_dir]
    start = time.monotonic()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    report = None
    for line in child.stdout:
        if line.startswith('{"marker": "first_iter"'):
            reached = time.monotonic()
            report = json.loads(line)
            break
    _, stderr = child.communicate()
    if report is None:
        raise RuntimeError(f"resume child failed (exit {child.returncode}):\n{stderr[-3000:]}")
    times = report["times"]
    return {"total": reached - start, "start": times["main"] - start,
            "build": times["built"] - times["main"], "setup": times["set_up"] - times["built"],
            "restore": times["resumed"] - times["set_up"],
            "position": times["first_iter"] - times["resumed"], "loaded": report["loaded"],
            "iter": report["iter"], "fingerprint": report["fingerprint"]}


def _replay_seconds(loop: str, dataset: SyntheticDataset, batches: int) -> float:
    """What reaching the position by iterating the dataloader (replay) would cost."""
    loader = build_dataloader(dataloader_cfg(dataset, RESUME_BATCH, RESUME_LOOPS[loop][1]),
                              seed=0)

    def replay() -> None:
        iterator = iter(loader)
        for _ in range(batches):
            try:
                next(iterator)
            except StopIteration:
                iterator = iter(loader)
                next(iterator)

    return timed(replay)


def _state_costs(location: str) -> dict:
    """Position-dependent parts of a checkpoint: the message hub's scalar histories."""
    files = ckpt.read_commit(location)["files"]
    data = storage.read_bytes(storage.join(location, ckpt.STATE_FILE))
    state = torch.load(io.BytesIO(data), weights_only=True)
    hub = state["message_hub"]
    return {"state_bytes": files[ckpt.STATE_FILE]["size"],
            "history": sum(len(s["log_history"]) for s in hub["log_scalars"].values()),
            "load": min(timed(lambda: torch.load(io.BytesIO(data), weights_only=True))
                        for _ in range(3)),
            "snapshot": min(timed(lambda: copy_to_cpu(hub)) for _ in range(3))}


def bench_resume(repeats: int, work_dir: str, positions: tuple[int, int]) -> ResumeResult:
    result = ResumeResult(positions)
    last = max(positions)
    locations: dict[tuple[str, int], str] = {}
    fingerprints: dict[tuple[str, int], str] = {}
    dataset = SyntheticDataset()
    for loop, (title, sampler) in RESUME_LOOPS.items():
        saver = _SaveAt(positions, by_epoch=loop == "epoch")
        start = time.perf_counter()
        with quiet():
            runner = build_runner(RESUME_HIDDEN, dataset, RESUME_BATCH,
                                  os.path.join(work_dir, f"train_{loop}"), f"ckpt_train_{loop}",
                                  resume_train_cfg(loop, last), [saver], sampler=sampler)
            try:
                runner.train()
            finally:
                release(runner)
        result.train_seconds[loop] = time.perf_counter() - start
        for position in positions:
            locations[loop, position] = saver.locations[position]
            fingerprints[loop, position] = saver.fingerprints[position]
            result.replay_seconds[loop, position] = _replay_seconds(loop, dataset, position)
            result.state_costs[loop, position] = _state_costs(saver.locations[position])
        print(f"  trained {title}: {last + 1} iterations in {result.train_seconds[loop]:.1f} s",
              flush=True)
    for rep in range(repeats):
        for loop in RESUME_LOOPS:
            order = positions if rep % 2 == 0 else positions[::-1]
            for position in order:
                child_dir = os.path.join(work_dir, f"child_{loop}_{position}_{rep}")
                sample = _resume_once(loop, last, locations[loop, position], child_dir)
                shutil.rmtree(child_dir, ignore_errors=True)
                sample["same_batch"] = sample["fingerprint"] == fingerprints[loop, position]
                result.samples.setdefault((loop, position), []).append(sample)
            early, late = (result.samples[loop, p][-1]["total"] for p in positions)
            print(f"  repeat {rep + 1}/{repeats} {loop:5s} resume at {positions[0]}: "
                  f"{early:.2f} s, at {positions[1]}: {late:.2f} s", flush=True)
    return result


def print_resume(result: ResumeResult, repeats: int, target: float) -> list[str]:
    early, late = result.positions
    print(f"\nPART 3: resume cost vs position, process start to the first resumed "
          f"iteration, median of {repeats} interleaved repeats")
    header = (f"{'loop':38s} {'at iter':>7s} {'total s':>8s} {'start':>6s} {'build':>6s} "
              f"{'setup':>6s} {'restore':>7s} {'to 1st':>6s} {'samples':>7s} {'same':>5s} "
              f"{'replay s':>8s}")
    print(header)
    print("-" * len(header))
    summary = []
    for loop, (title, _) in RESUME_LOOPS.items():
        for position in result.positions:
            samples = result.samples[loop, position]
            phases = {key: median([s[key] for s in samples])
                      for key in ("total", "start", "build", "setup", "restore", "position")}
            loaded = max(s["loaded"] for s in samples)
            same = all(s["same_batch"] and s["iter"] == position for s in samples)
            print(f"{title:38s} {position:7d} {phases['total']:8.3f} {phases['start']:6.3f} "
                  f"{phases['build']:6.3f} {phases['setup']:6.3f} {phases['restore']:7.3f} "
                  f"{phases['position']:6.3f} "
                  f"{loaded:7d} {'yes' if same else 'NO':>5s} "
                  f"{result.replay_seconds[loop, position]:8.3f}")
        totals = {p: [s["total"] for s in result.samples[loop, p]] for p in result.positions}
        ratio = median(totals[late]) / median(totals[early])
        paired = median([b / a for a, b in zip(totals[early], totals[late])])
        line = (f"{title}: resume at {late} / at {early} = {ratio:.3f} (paired {paired:.3f}); "
                f"target <= {target}: {target_mark(ratio <= target)}")
        print("  " + line)
        summary.append(line)
    print(f"start = Popen to the child's main() (interpreter, imports); build = Runner(...); "
          f"setup = train() building the\nloop and optimizer (the first torch optimizer "
          f"imports torch._dynamo); restore = reading the checkpoint and\nrestoring the state; "
          f"to 1st = sampler positioning and the first batch; samples = dataset items loaded\n"
          f"before the first resumed iteration (a batch is {RESUME_BATCH}); same = that batch "
          f"is the uninterrupted run's; replay s = what\ndrawing the batches up to the "
          f"position from the dataloader would take (a replaying resume)")
    print("position-dependent checkpoint content (message hub scalar histories):")
    for loop, (title, _) in RESUME_LOOPS.items():
        for position in result.positions:
            cost = result.state_costs[loop, position]
            print(f"  {title:38s} at {position:5d}: state.pt {cost['state_bytes'] / 1e3:7.1f} "
                  f"kB, {cost['history']:6d} history entries, torch.load(weights_only) "
                  f"{cost['load'] * 1e3:6.1f} ms, copy_to_cpu {cost['snapshot'] * 1e3:5.1f} ms")
    return summary


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=None,
                        help="interleaved repeats of every measurement (default 5; --quick 2)")
    parser.add_argument("--size-mb", type=float, default=None,
                        help="model + optimizer state of parts 1 and 2 (default 200; --quick 50)")
    parser.add_argument("--parts", default="1,2,3", help="which parts to run (default 1,2,3)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 2 repeats, 50 MB, 2 saves, resume at 50 vs 1,000")
    parser.add_argument("--resume-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.resume_child:
        loop, last, location, work_dir = args.resume_child
        resume_child(loop, int(last), location, work_dir)
        return
    repeats = args.repeats or (2 if args.quick else 5)
    size_mb = args.size_mb or (50.0 if args.quick else 200.0)
    parts = {int(p) for p in args.parts.split(",") if p.strip()}
    if not parts <= {1, 2, 3} or repeats < 1 or size_mb <= 0:
        parser.error("--parts takes 1, 2 and/or 3; --repeats and --size-mb must be positive")
    torch.set_num_threads(1)
    logging.getLogger().setLevel(logging.WARNING)
    work_dir = tempfile.mkdtemp(prefix="raytrainer-ckpt-bench-")
    print(f"checkpoint benchmark: parts {sorted(parts)}, {repeats} repeats, {size_mb:.0f} MB "
          f"state, work dir {work_dir} (cpu count {os.cpu_count()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread, python {sys.version.split()[0]})", flush=True)
    summary: list[str] = []
    started = time.perf_counter()
    try:
        if 1 in parts:
            print("part 1: save/load throughput", flush=True)
            result = bench_throughput(size_mb, repeats, work_dir)
            summary += print_throughput(result, repeats, target=0.8)
        if 2 in parts:
            print("\npart 2: training stall, sync vs async", flush=True)
            result = bench_stall(size_mb, repeats, work_dir, num_saves=2 if args.quick else 3)
            summary += print_stall(result, repeats, target=0.1)
        if 3 in parts:
            print("\npart 3: resume cost vs position", flush=True)
            result = bench_resume(repeats, work_dir, (50, 1000 if args.quick else 5000))
            summary += print_resume(result, repeats, target=1.2)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    print(f"\nSUMMARY ({time.perf_counter() - started:.0f} s)")
    for line in summary:
        print("  " + line)


if __name__ == "__main__":
    main()
