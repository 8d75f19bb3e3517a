"""Runner overhead: the same training workload through a hand-written PyTorch loop and through
raytrainer's ``Runner`` with its default hooks, interleaved in one process.

Both sides train the same MLP (same initial weights) with the same SGD optimizer on the same
DataLoader (one config, built by ``raytrainer.dataset.build_dataloader``: an in-memory synthetic
dataset, ``InfiniteSampler``, ``default_collate``), one torch thread. The only difference is
the framework: ``IterBasedTrainLoop``, the default hooks (RuntimeInfoHook, IterTimerHook,
DistSamplerSeedHook, LoggerHook(interval=10), ParamSchedulerHook, CheckpointHook), the message
hub, log processor, visualizer, ``BaseModel.train_step`` and ``OptimWrapper``.

Each side is timed from the end of iteration ``--warmup`` to the end of iteration ``--iters``.
The Runner side is timed by :class:`_WindowTimerHook`, registered with the LOWEST priority so it
runs after every default hook; it costs one method call, one comparison and one list append
per iteration (the raw loop appends its timestamps too).

Usage::

    python benchmarks/overhead.py                 # 5 interleaved repeats, ~20-30 s
    python benchmarks/overhead.py --repeats 15 --iters 1100
    python benchmarks/overhead.py --profile       # cProfile the Runner on the tiny workload
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import logging
import os
import pstats
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from raytrainer.dataset import build_dataloader
from raytrainer.hooks import Hook
from raytrainer.logging import MessageHub, MMLogger
from raytrainer.model import BaseModel
from raytrainer.runner import Runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as `python benchmarks/overhead.py`
    sys.path.insert(0, ROOT)

from benchmarks.workloads import SyntheticDataset, make_mlp  # noqa: E402


@dataclass(frozen=True)
class Workload:
    name: str
    hidden: tuple[int, ...]
    batch_size: int


WORKLOADS = (Workload("standard", (256, 256), 64), Workload("tiny", (32,), 16))


class BenchMLP(BaseModel):
    """The Runner side's model: the same MLP behind ``forward(..., mode='loss')``."""

    def __init__(self, hidden: tuple[int, ...]):
        super().__init__()
        self.net = make_mlp(hidden)

    def forward(self, inputs, data_samples=None, mode: str = "tensor"):
        logits = self.net(inputs)
        if mode == "loss":
            return dict(loss=F.cross_entropy(logits, data_samples))
        return logits


def dataloader_cfg(dataset: Dataset, batch_size: int) -> dict:
    return dict(dataset=dataset, batch_size=batch_size, num_workers=0,
                sampler=dict(type="InfiniteSampler", shuffle=True, seed=0),
                collate_fn=dict(type="default_collate"))


def optimizer_cfg() -> dict:
    return dict(type="SGD", lr=0.01, momentum=0.9)


class _WindowTimerHook(Hook):
    """Records ``perf_counter()`` after every iteration from ``start`` to ``end`` (1-based
    counts), and profiles the iterations in between when given a profiler."""

    priority = "LOWEST"  # after every default hook, so their work is inside the window

    def __init__(self, start: int, end: int, profiler: cProfile.Profile | None = None):
        self._start, self._end = start, end
        self._profiler = profiler
        self.stamps: list[float] = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        done = runner.iter + 1
        if done < self._start:
            return
        self.stamps.append(time.perf_counter())
        if self._profiler is not None and done in (self._start, self._end):
            if done == self._start:
                self._profiler.enable()
            else:
                self._profiler.disable()


def run_raw(workload: Workload, dataset: Dataset, iters: int, warmup: int) -> list[float]:
    """``perf_counter()`` after iterations ``warmup``..``iters`` of a hand-written loop over
    the same DataLoader."""
    torch.manual_seed(0)
    model = make_mlp(workload.hidden)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = build_dataloader(dataloader_cfg(dataset, workload.batch_size), seed=0)
    batches = iter(loader)
    model.train()
    stamps: list[float] = []
    for i in range(1, iters + 1):
        batch = next(batches)
        loss = F.cross_entropy(model(batch["inputs"]), batch["data_samples"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i >= warmup:
            stamps.append(time.perf_counter())
    return stamps


# --ablate: which default hooks each variant switches off (None disables a default hook).
_NO_DEFAULT_HOOKS = dict(runtime_info=None, timer=None, sampler_seed=None, logger=None,
                         param_scheduler=None, checkpoint=None)
ABLATIONS = {"default hooks": None, "without LoggerHook": dict(logger=None),
             "without default hooks": _NO_DEFAULT_HOOKS}


def build_runner(workload: Workload, dataset: Dataset, iters: int, work_dir: str,
                 name: str, timer: Hook, default_hooks: dict | None = None) -> Runner:
    # Same seed as the raw loop: the MLP starts from the same weights.
    torch.manual_seed(0)
    model = BenchMLP(workload.hidden)
    # The default hooks, unchanged. CheckpointHook's default (interval=1, by_epoch=True) saves
    # once, in after_train_epoch, which an IterBasedTrainLoop calls after the last iteration:
    # outside the timed window.
    return Runner(model=model, work_dir=work_dir,
                  train_dataloader=dataloader_cfg(dataset, workload.batch_size),
                  train_cfg=dict(by_epoch=False, max_iters=iters),
                  optim_wrapper=dict(optimizer=optimizer_cfg()),
                  custom_hooks=[timer], randomness=dict(seed=0),
                  log_processor=dict(by_epoch=False), experiment_name=name,
                  default_hooks=default_hooks)


def run_runner(workload: Workload, dataset: Dataset, iters: int, warmup: int, name: str,
               profiler: cProfile.Profile | None = None,
               default_hooks: dict | None = None) -> list[float]:
    """``perf_counter()`` after iterations ``warmup``..``iters`` of ``Runner.train()``."""
    timer = _WindowTimerHook(warmup, iters, profiler)
    # The log lines still get formatted and written (to the run's log file and to this
    # stream); they just do not flood the benchmark's own output.
    console = io.StringIO()
    with tempfile.TemporaryDirectory() as work_dir, contextlib.redirect_stdout(console):
        runner = build_runner(workload, dataset, iters, work_dir, name, timer, default_hooks)
        try:
            runner.train()
        finally:
            _release(runner)
    return timer.stamps


def _release(runner: Runner) -> None:
    """Drop the run's process-global logger and message hub (several runs share a process)."""
    name = runner.experiment_name
    if MMLogger.check_instance_created(name):
        MMLogger.get_instance(name).close()
        MMLogger.drop_instance(name)
    MessageHub.drop_instance(name)


def seconds_per_iter(stamps: list[float]) -> float:
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1)


def robust_seconds_per_iter(runs: list[list[float]]) -> float:
    """Mean over the timed iterations of each iteration's median duration across repeats.

    Iteration k does the same work in every repeat (a log line every 10th, say), while another
    process stealing the CPU hits random iterations of random repeats; the median across
    repeats drops those stalls and keeps the framework's own periodic costs.
    """
    durations = [[b - a for a, b in zip(stamps, stamps[1:])] for stamps in runs]
    return statistics.fmean(statistics.median(column) for column in zip(*durations))


Results = dict[str, dict[str, list[list[float]]]]


def benchmark(repeats: int, iters: int, warmup: int) -> Results:
    """Interleave raw and Runner runs; alternate which goes first to cancel slow drifts."""
    datasets = {w.name: SyntheticDataset() for w in WORKLOADS}
    results: Results = {w.name: {"raw": [], "runner": []} for w in WORKLOADS}
    for rep in range(repeats):
        for workload in WORKLOADS:
            order = ("raw", "runner") if rep % 2 == 0 else ("runner", "raw")
            for side in order:
                dataset = datasets[workload.name]
                if side == "raw":
                    stamps = run_raw(workload, dataset, iters, warmup)
                else:
                    stamps = run_runner(workload, dataset, iters, warmup,
                                        f"overhead_{workload.name}_{rep}")
                results[workload.name][side].append(stamps)
            raw = seconds_per_iter(results[workload.name]["raw"][-1])
            runner = seconds_per_iter(results[workload.name]["runner"][-1])
            print(f"  repeat {rep + 1}/{repeats} {workload.name:8s} raw {raw * 1e6:8.1f} us/it"
                  f"  runner {runner * 1e6:8.1f} us/it  ratio {runner / raw:.3f}", flush=True)
    return results


def print_table(results: Results, repeats: int, iters: int, warmup: int) -> None:
    print(f"\nmedian of {repeats} repeats, iterations {warmup + 1}-{iters} "
          f"(torch {torch.__version__}, {torch.get_num_threads()} thread)")
    header = (f"{'workload':10s} {'raw s/it':>10s} {'runner s/it':>12s} {'overhead/it':>12s} "
              f"{'ratio':>7s} {'paired':>7s} {'per-iter':>9s}")
    print(header)
    print("-" * len(header))
    for workload in WORKLOADS:
        raw_runs = results[workload.name]["raw"]
        runner_runs = results[workload.name]["runner"]
        raw_times = [seconds_per_iter(s) for s in raw_runs]
        runner_times = [seconds_per_iter(s) for s in runner_runs]
        raw, runner = statistics.median(raw_times), statistics.median(runner_times)
        paired = statistics.median(r / w for r, w in zip(runner_times, raw_times))
        robust = robust_seconds_per_iter(runner_runs) / robust_seconds_per_iter(raw_runs)
        print(f"{workload.name:10s} {raw:10.3e} {runner:12.3e} "
              f"{(runner - raw) * 1e6:9.1f} us {runner / raw:7.3f} {paired:7.3f} {robust:9.3f}")
    print("ratio = median(runner s/it) / median(raw s/it); paired = median over repeats of "
          "runner/raw of the same repeat;\nper-iter = the same ratio from per-iteration "
          "medians across repeats (least disturbed by other processes on a shared machine)")


def ablate(repeats: int, iters: int, warmup: int) -> None:
    """Where the Runner's overhead goes: the raw loop and the Runner with all default hooks,
    without LoggerHook, and without any default hook, interleaved (order rotates per repeat)."""
    sides = ["raw", *ABLATIONS]
    for workload in WORKLOADS:
        dataset = SyntheticDataset()
        times: dict[str, list[float]] = {side: [] for side in sides}
        for rep in range(repeats):
            for side in sides[rep % len(sides):] + sides[:rep % len(sides)]:
                if side == "raw":
                    stamps = run_raw(workload, dataset, iters, warmup)
                else:
                    stamps = run_runner(workload, dataset, iters, warmup,
                                        f"ablate_{workload.name}_{rep}_{len(times[side])}",
                                        default_hooks=ABLATIONS[side])
                times[side].append(seconds_per_iter(stamps))
        raw = statistics.median(times["raw"])
        print(f"\n{workload.name}: median of {repeats} repeats, iterations {warmup + 1}-{iters}")
        for side in sides:
            median = statistics.median(times[side])
            paired = statistics.median(t / r for t, r in zip(times[side], times["raw"]))
            print(f"  {side:22s} {median:10.3e} s/it  overhead {(median - raw) * 1e6:7.1f} us"
                  f"  ratio {median / raw:6.3f}  paired {paired:6.3f}", flush=True)


def profile_tiny(iters: int, warmup: int, top: int = 30) -> None:
    """cProfile the Runner's timed iterations on the tiny workload; print the top entries."""
    workload = next(w for w in WORKLOADS if w.name == "tiny")
    dataset = SyntheticDataset()
    profiler = cProfile.Profile()
    seconds = seconds_per_iter(
        run_runner(workload, dataset, iters, warmup, "overhead_profile", profiler))
    print(f"Runner on the tiny workload, iterations {warmup + 1}-{iters} under cProfile "
          f"({seconds * 1e6:.1f} us/it with the profiler on; cProfile inflates Python-heavy "
          "code, so read the shares, not the absolute times)")
    for key, title in (("cumulative", "cumulative time"), ("tottime", "own time")):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(key).print_stats(top)
        table = out.getvalue()
        print(f"\n--- top {top} by {title} ---")
        print(table[table.index("   ncalls"):].rstrip())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5,
                        help="interleaved raw/Runner pairs per workload (default 5)")
    parser.add_argument("--iters", type=int, default=600,
                        help="iterations per run (default 600)")
    parser.add_argument("--warmup", type=int, default=100,
                        help="iterations before the timed window starts (default 100)")
    parser.add_argument("--profile", action="store_true",
                        help="instead of the comparison, cProfile the Runner's timed "
                             "iterations on the tiny workload")
    parser.add_argument("--ablate", action="store_true",
                        help="instead of the comparison, time the Runner with all default "
                             "hooks, without LoggerHook and without any default hook")
    args = parser.parse_args(argv)
    if not 0 < args.warmup < args.iters:
        parser.error("need 0 < --warmup < --iters")
    torch.set_num_threads(1)
    # Runner construction logs at INFO through its own logger; keep library loggers quiet.
    logging.getLogger().setLevel(logging.WARNING)
    if args.profile:
        profile_tiny(args.iters, args.warmup)
        return
    if args.ablate:
        ablate(args.repeats, args.iters, args.warmup)
        return
    print(f"raw PyTorch loop vs raytrainer Runner, {args.repeats} interleaved repeats, "
          f"{args.iters} iterations each, timed {args.warmup + 1}-{args.iters} "
          f"(cpu count {os.cpu_count()}, python {sys.version.split()[0]})", flush=True)
    results = benchmark(args.repeats, args.iters, args.warmup)
    print_table(results, args.repeats, args.iters, args.warmup)


if __name__ == "__main__":
    main()
