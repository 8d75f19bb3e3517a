"""Ray overhead: the same 2-worker DDP training through a bare Ray Train ``TorchTrainer`` with a
hand-written loop and through ``raytrainer.launch.train``, interleaved in one invocation.

Both sides train the same MLP (64-1024-1024-10, "large", and 64-256-256-10, "standard") with
SGD (lr 0.01, momentum 0.9) on 2 CPU workers over gloo, batch 64 per worker, on the same
in-memory synthetic dataset (4096 samples of 64 features; each rank takes its share through a
distributed sampler). The bare side is ``ray_bench_lib.bare_train_loop_per_worker``
(``DistributedDataParallel``, ``DistributedSampler``, a ``DataLoader``; it reports to Ray once,
at the end). The raytrainer side is a config with an ``IterBasedTrainLoop``, the default hooks
(the default CheckpointHook saves once, after the last iteration) and :class:`ProbeHook`.
Inside the workers ``ray_bench_lib.Probe`` records ``time.perf_counter()`` after every
iteration and ``time.time()`` after the first; the driver reads the files it writes.

Parts:

- (a) steady state, seconds/iteration after ``--warmup`` iterations, on a local cluster
  (``ray start --head --num-cpus=2``) that this script starts and stops, two ways:
  *same workers*: one ``TorchTrainer`` whose 2 workers run the two sides in alternating blocks
  (ABBA), the raytrainer blocks through raytrainer's own worker function with the exact
  ``train_loop_config`` that ``launch.train`` builds; blocks a few seconds apart see the same
  machine load, so this resolves a few percent even on a shared machine;
  *separate runs* (first workload only): ``launch.train(cfg, num_workers=2)`` and a bare
  ``TorchTrainer.fit()`` alternating, each a run of its own (what a user runs, and as noisy as
  the machine: runs minutes apart see different loads);
- (b) start-up: a fresh ``python -c`` (bare) or ``raytrainer train CONFIG --num-workers 2``
  process, from just before ``Popen`` to the end of the first iteration; once with a local
  Ray instance started by that process, once joining the running cluster (``RAY_ADDRESS``);
- (c) recovery: checkpoints every ``--ckpt-interval`` iterations, ``max_failures=1``; rank 1
  writes its pid after iteration ``--kill-at`` and this script SIGKILLs it; reported: seconds
  from the SIGKILL to the end of the resumed attempt's first iteration, and iterations lost.
  The bare side checkpoints by hand (``ray.train.report`` with a checkpoint from rank 0,
  ``ray.train.get_checkpoint`` on restart).

Every Ray instance here uses a private temp dir (``RAY_TMPDIR``), so none joins or disturbs
another Ray cluster on the machine; token authentication is off (loopback only).

Usage::

    python benchmarks/ray_overhead.py                      # all parts, about 10 minutes
    python benchmarks/ray_overhead.py --quick              # large workload, fewer runs, ~5 min
    python benchmarks/ray_overhead.py --parts b --repeats 4   # start-up only, 4 pairs per mode
    python benchmarks/ray_overhead.py --parts a --repeats 6 --iters 600
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as `python benchmarks/ray_overhead.py`
    sys.path.insert(0, ROOT)

from benchmarks.ray_bench_lib import (  # noqa: E402
    KILL_MARKER,
    Probe,
    bare_train_loop_per_worker,
    fit_torch_trainer,
    run_bare,
)
from raytrainer.hooks import Hook  # noqa: E402
from raytrainer.utils.net import free_port  # noqa: E402

BIN = os.path.dirname(sys.executable)
SIDES = ("bare", "raytrainer")
# Ray runs its workers at nice 15 by default; on a machine shared with jobs at nice 0 they
# then get a few percent of a busy core and every timing swings with the other jobs' load.
# Both sides run at this niceness (RAY_worker_niceness).
WORKER_NICENESS = 0


@dataclass(frozen=True)
class Workload:
    name: str
    hidden: tuple[int, ...]
    batch_size: int


WORKLOADS = (Workload("large", (1024, 1024), 64), Workload("standard", (256, 256), 64))


class ProbeHook(Hook):
    """The raytrainer side's ``Probe``. LOWEST priority: it records after every default hook
    (and what runs after it, such as RayReportHook, lands in the next iteration's interval)."""

    priority = "LOWEST"

    def __init__(self, out_dir: str, kill_at: int | None = None):
        self.out_dir, self.kill_at = out_dir, kill_at

    def before_train(self, runner) -> None:
        self._probe = Probe(self.out_dir, runner.rank, self.kill_at)
        self._probe.start(runner.iter)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._probe.iteration_done(runner.iter + 1)

    def after_train(self, runner) -> None:
        self._probe.finish()


# ---- one training run ------------------------------------------------------------------------

@dataclass(frozen=True)
class Run:
    """One training run of either side and where its files go: ``root/out`` (probe files),
    ``root/work`` (raytrainer's work_dir), ``root/storage`` (the bare side's Ray storage)."""

    workload: Workload
    iters: int
    root: str
    checkpoint_interval: int | None = None
    kill_at: int | None = None
    max_failures: int = 0

    @property
    def out_dir(self) -> str:
        return os.path.join(self.root, "out")

    @property
    def storage_path(self) -> str:
        return os.path.join(self.root, "storage")

    def prepare(self) -> Run:
        os.makedirs(self.out_dir, exist_ok=True)
        return self

    def bare_config(self) -> dict:
        w = self.workload
        return dict(hidden=list(w.hidden), batch_size=w.batch_size, iters=self.iters,
                    out_dir=self.out_dir, checkpoint_interval=self.checkpoint_interval,
                    kill_at=self.kill_at)

    def write_config(self) -> str:
        """The raytrainer side as a config file (for ``Config.fromfile`` and the CLI)."""
        w = self.workload
        lines = [
            f"work_dir = {os.path.join(self.root, 'work')!r}",
            f"model = dict(type='MLPClassifier', in_features=64, hidden_dims={w.hidden!r}, "
            "num_classes=10)",
            f"train_dataloader = dict(batch_size={w.batch_size}, num_workers=0, "
            "dataset=dict(type='benchmarks.workloads.SyntheticDataset'), "
            "sampler=dict(type='InfiniteSampler', shuffle=True, seed=0), "
            "collate_fn=dict(type='default_collate'))",
            f"train_cfg = dict(by_epoch=False, max_iters={self.iters})",
            "optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9))",
            "log_processor = dict(by_epoch=False)",
            "randomness = dict(seed=0)",
            "custom_hooks = [dict(type='benchmarks.ray_overhead.ProbeHook', "
            f"out_dir={self.out_dir!r}, kill_at={self.kill_at!r})]",
            f"ray = dict(num_workers=2, backend='gloo', max_failures={self.max_failures})",
        ]
        if self.checkpoint_interval:
            lines.append("default_hooks = dict(checkpoint=dict(type='CheckpointHook', "
                         f"by_epoch=False, interval={self.checkpoint_interval}))")
        path = os.path.join(self.root, "config.py")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def load_config(self):
        from raytrainer.config import Config

        return Config.fromfile(self.write_config())

    def bare_command(self) -> list[str]:
        code = ("from benchmarks.ray_bench_lib import run_bare; "
                f"run_bare({self.bare_config()!r}, {self.storage_path!r})")
        return [sys.executable, "-c", code]

    def raytrainer_command(self) -> list[str]:
        return [os.path.join(BIN, "raytrainer"), "train", self.write_config(),
                "--num-workers", "2"]

    def _record(self, rank: int) -> dict:
        with open(os.path.join(self.out_dir, f"stamps_rank{rank}.json")) as f:
            return json.load(f)

    def stamps(self, rank: int = 0) -> list[float]:
        return self._record(rank)["stamps"]

    def threads(self, rank: int = 0) -> int:
        return self._record(rank)["threads"]

    def attempts(self, rank: int = 0) -> list[dict]:
        """One record per attempt (see ``ray_bench_lib``): ``time``, ``start_iter`` ..."""
        with open(os.path.join(self.out_dir, f"events_rank{rank}.jsonl")) as f:
            return [json.loads(line) for line in f]


def train_in_process(side: str, run: Run) -> None:
    """Run one side from this process (connected to the benchmark's cluster)."""
    if side == "bare":
        run_bare(run.bare_config(), run.storage_path, run.max_failures)
        return
    from raytrainer import launch

    cfg = run.load_config()
    with contextlib.redirect_stdout(io.StringIO()):
        launch.train(cfg, num_workers=2)


class _Captured(Exception):
    pass


class _CapturingTrainer:
    """Stands in for ``TorchTrainer`` during one ``launch.train`` call: keeps the worker
    function's config and stops before anything starts."""

    def __init__(self, train_loop_per_worker, train_loop_config, **kwargs):
        self.config = train_loop_config

    def fit(self):
        raise _Captured(self.config)


def launch_loop_config(run: Run) -> dict:
    """The ``train_loop_config`` that ``launch.train(cfg, num_workers=2)`` hands its workers
    (driver-side decisions, preflight checks and all), captured from a real call."""
    import ray.train.torch

    from raytrainer import launch

    cfg = run.load_config()
    original = ray.train.torch.TorchTrainer
    ray.train.torch.TorchTrainer = _CapturingTrainer
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            launch.train(cfg, num_workers=2)
    except _Captured as captured:
        return captured.args[0]
    finally:
        ray.train.torch.TorchTrainer = original
    raise RuntimeError("launch.train returned without calling TorchTrainer.fit")


def alternating_loop_per_worker(config: dict) -> None:
    """Run ``config['blocks']`` in order: ``('bare', bare config)`` through the hand-written
    loop, ``('raytrainer', loop config)`` through raytrainer's Ray worker function."""
    from raytrainer.launch.worker.loop import train_loop_per_worker

    for side, block in config["blocks"]:
        if side == "bare":
            bare_train_loop_per_worker(block)
        else:
            train_loop_per_worker(block)


# ---- Ray clusters ----------------------------------------------------------------------------

def ray_env(ray_tmpdir: str, address: str | None = None) -> dict:
    """The environment of every Ray process here: the repository on PYTHONPATH (workers import
    ``benchmarks.*``), a private RAY_TMPDIR, token authentication off."""
    env = dict(os.environ, RAY_TMPDIR=ray_tmpdir, RAY_AUTH_MODE="disabled",
               RAY_worker_niceness=str(WORKER_NICENESS),
               PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])),
               PATH=os.pathsep.join([BIN, os.environ.get("PATH", "")]))
    env.pop("RAY_ADDRESS", None)
    if address:
        env["RAY_ADDRESS"] = address
    return env


class LocalCluster:
    """``ray start --head --block --num-cpus=2`` on loopback, stopped by signalling that one
    process (the Ray processes it started share its fate). Never ``ray stop``: it would stop
    every Ray instance of this user on the machine."""

    def __init__(self, root: str):
        self.tmpdir = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: socket paths
        self.address = f"127.0.0.1:{free_port()}"
        self.env = ray_env(self.tmpdir)
        self.log = os.path.join(root, "ray_start.log")
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> LocalCluster:
        port = self.address.rsplit(":", 1)[1]
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [os.path.join(BIN, "ray"), "start", "--head", "--block", "--num-cpus=2",
                 f"--port={port}", "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
                 f"--dashboard-port={free_port()}", "--disable-usage-stats"],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 180
        while "Ray runtime started" not in open(self.log).read():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"ray start failed; see {self.log}")
            time.sleep(0.2)
        return self

    def connect(self) -> None:
        """Join the cluster from this process (parts a and c run their trainers from here)."""
        import ray

        os.environ.update(RAY_AUTH_MODE="disabled", RAY_TMPDIR=self.tmpdir,
                          PYTHONPATH=self.env["PYTHONPATH"])
        ray.init(address=self.address, log_to_driver=False, logging_level="WARNING")

    def __exit__(self, *exc) -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.tmpdir, ignore_errors=True)


# ---- part (a): steady state ------------------------------------------------------------------

Steady = dict[str, dict[str, list[list[float]]]]  # workload -> side -> per-run durations


def iteration_times(stamps: list[float], warmup: int) -> list[float]:
    """Durations of iterations ``warmup+1``..end (``stamps[k]`` is taken after iteration k+1)."""
    timed = stamps[warmup - 1:]
    return [b - a for a, b in zip(timed, timed[1:])]


def _describe(durations: list[float]) -> str:
    return (f"median {statistics.median(durations) * 1e3:7.2f} ms/it, "
            f"mean {statistics.fmean(durations) * 1e3:7.2f} ms/it")


def measure_same_workers(root: str, repeats: int, iters: int, warmup: int,
                         workloads: tuple[Workload, ...]) -> Steady:
    """One TorchTrainer; its workers alternate bare and raytrainer blocks (ABBA per repeat)."""
    blocks, runs = [], []
    for rep in range(repeats):
        for workload in workloads:
            for side in (SIDES if rep % 2 == 0 else SIDES[::-1]):
                run = Run(workload, iters,
                          os.path.join(root, f"a_same_{workload.name}_{side}_{rep}")).prepare()
                config = run.bare_config() if side == "bare" else launch_loop_config(run)
                blocks.append((side, config))
                runs.append((side, run))
    start = time.time()
    fit_torch_trainer(alternating_loop_per_worker, dict(blocks=blocks), "alternating",
                      os.path.join(root, "a_same_storage"))
    print(f"  (a) same workers: {len(blocks)} blocks of {iters} iterations in one run of "
          f"{time.time() - start:.0f} s", flush=True)
    results: Steady = {w.name: {side: [] for side in SIDES} for w in workloads}
    for side, run in runs:
        durations = iteration_times(run.stamps(), warmup)
        results[run.workload.name][side].append(durations)
        print(f"      {run.workload.name:8s} {side:10s} {_describe(durations)} "
              f"(torch threads {run.threads()})", flush=True)
    return results


def measure_separate(root: str, repeats: int, iters: int, warmup: int,
                     workloads: tuple[Workload, ...]) -> Steady:
    """A run of its own per side and repeat: ``launch.train`` vs a bare ``TorchTrainer``."""
    results: Steady = {w.name: {side: [] for side in SIDES} for w in workloads}
    for rep in range(repeats):
        for workload in workloads:
            for side in (SIDES if rep % 2 == 0 else SIDES[::-1]):
                run = Run(workload, iters,
                          os.path.join(root, f"a_separate_{workload.name}_{side}_{rep}"))
                start = time.time()
                train_in_process(side, run.prepare())
                durations = iteration_times(run.stamps(), warmup)
                results[workload.name][side].append(durations)
                print(f"  (a) separate {workload.name:8s} {side:10s} repeat {rep + 1}: "
                      f"{_describe(durations)}; first iteration "
                      f"{run.attempts()[0]['time'] - start:4.1f} s after fit(), run "
                      f"{time.time() - start:4.1f} s", flush=True)
    return results


def _per_iter(runs: list[list[float]]) -> float:
    """Mean over iterations of each iteration's median across repeats (periodic costs stay,
    stalls caused by other processes mostly go)."""
    return statistics.fmean(statistics.median(column) for column in zip(*runs))


def print_steady(title: str, results: Steady) -> None:
    print(f"\n(a) steady state, {title}: seconds/iteration of rank 0")
    header = (f"{'workload':9s} {'stat':6s} {'bare':>10s} {'raytrainer':>11s} {'diff':>9s} "
              f"{'ratio':>6s} {'paired':>7s}")
    print(header)
    print("-" * len(header))
    for name, sides in results.items():
        bare, ours = sides["bare"], sides["raytrainer"]
        for stat, fn in (("median", statistics.median), ("mean", statistics.fmean)):
            b, r = [fn(d) for d in bare], [fn(d) for d in ours]
            mb, mr = statistics.median(b), statistics.median(r)
            paired = statistics.median(x / y for x, y in zip(r, b))
            print(f"{name:9s} {stat:6s} {mb:10.3e} {mr:11.3e} {(mr - mb) * 1e6:6.0f} us "
                  f"{mr / mb:6.3f} {paired:7.3f}")
        b, r = _per_iter(bare), _per_iter(ours)
        print(f"{name:9s} {'perit':6s} {b:10.3e} {r:11.3e} {(r - b) * 1e6:6.0f} us "
              f"{r / b:6.3f}")
    print("median: median over a run's timed iterations; mean: their mean (with periodic work "
          "such as log lines and report checks);\nperit: mean over iterations of each "
          "iteration's median across repeats. bare/raytrainer columns: median over repeats;\n"
          "ratio = raytrainer/bare of those; paired = median over repeats of the ratio within a "
          "repeat. Target: <= 1.05.")


# ---- part (b): start-up ----------------------------------------------------------------------

def startup_times(command: list[str], run: Run, env: dict, timeout: float = 600) -> dict:
    """Seconds from just before ``Popen`` to: rank 0's worker process created (``worker``),
    its loop ready to train (``setup``), the end of its first iteration (``first``), and the
    command's exit (``exit``)."""
    with open(os.path.join(run.root, "command.log"), "w") as log:
        start = time.time()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
        end = time.time()
    if code != 0:
        raise RuntimeError(f"{command[:2]} exited with {code}; see {run.root}/command.log")
    first = run.attempts()[0]
    return dict(worker=first["process_start"] - start, setup=first["setup_done"] - start,
                first=first["time"] - start, exit=end - start)


def measure_startup(root: str, repeats: int, iters: int, cluster: LocalCluster | None) -> dict:
    """``repeats`` alternating pairs of fresh processes (large workload, ``iters`` iterations);
    with ``cluster`` they join it, otherwise each starts its own Ray instance."""
    mode = "cluster" if cluster else "local"
    results: dict[str, list[dict]] = {side: [] for side in SIDES}
    for rep in range(repeats):
        for side in (SIDES if rep % 2 == 0 else SIDES[::-1]):
            run = Run(WORKLOADS[0], iters, os.path.join(root, f"b_{mode}_{side}_{rep}")).prepare()
            if cluster:
                env = dict(cluster.env, RAY_ADDRESS=cluster.address)
            else:
                env = ray_env(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
            command = run.bare_command() if side == "bare" else run.raytrainer_command()
            try:
                times = startup_times(command, run, env)
            finally:
                if not cluster:
                    shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)
            results[side].append(times)
            print(f"  (b) {mode:7s} {side:10s} repeat {rep + 1}: " +
                  ", ".join(f"{k} {v:5.1f} s" for k, v in times.items()), flush=True)
    return results


def print_startup(results: dict[str, dict]) -> None:
    print("\n(b) start-up: seconds from Popen of a fresh process (median over repeats)")
    header = (f"{'ray':8s} {'side':10s} {'worker':>7s} {'setup':>6s} {'first':>6s} "
              f"{'exit':>6s}")
    print(header)
    print("-" * len(header))
    keys = ("worker", "setup", "first", "exit")
    for mode, sides in results.items():
        medians = {side: {k: statistics.median(t[k] for t in runs) for k in keys}
                   for side, runs in sides.items()}
        medians["diff"] = {k: medians["raytrainer"][k] - medians["bare"][k] for k in keys}
        for side, m in medians.items():
            sign = "+" if side == "diff" else ""
            print(f"{mode:8s} {side:10s} {m['worker']:{sign}7.1f} {m['setup']:{sign}6.1f} "
                  f"{m['first']:{sign}6.1f} {m['exit']:{sign}6.1f}")
    print("local: the process starts its own Ray instance; cluster: it joins a running one "
          "(RAY_ADDRESS).\nworker: rank 0's worker process created; setup: its loop ready to "
          "train (raytrainer: before_train); first: end of the first iteration; exit: the "
          "command exits.\nTarget: first(raytrainer) - first(bare) <= 3 s.")


# ---- part (c): recovery ----------------------------------------------------------------------

class Killer:
    """Waits for the kill marker, SIGKILLs the pid in it and notes ``time.time()`` after."""

    def __init__(self, out_dir: str, timeout: float = 600):
        self.marker = os.path.join(out_dir, KILL_MARKER)
        self.timeout = timeout
        self.killed_at: float | None = None
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if os.path.exists(self.marker):
                with open(self.marker) as f:
                    pid = int(f.read())
                os.kill(pid, signal.SIGKILL)
                self.killed_at = time.time()
                return
            time.sleep(0.02)

    def __enter__(self) -> Killer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._thread.join(timeout=1)


def measure_recovery(root: str, repeats: int, interval: int, kill_at: int) -> dict:
    results: dict[str, list[tuple[float, int]]] = {side: [] for side in SIDES}
    for rep in range(repeats):
        for side in (SIDES if rep % 2 == 0 else SIDES[::-1]):
            run = Run(WORKLOADS[0], kill_at + 40, os.path.join(root, f"c_{side}_{rep}"),
                      checkpoint_interval=interval, kill_at=kill_at, max_failures=1).prepare()
            with Killer(run.out_dir) as killer:
                train_in_process(side, run)
            attempts = run.attempts()
            if killer.killed_at is None or len(attempts) != 2:
                raise RuntimeError(f"(c) {side}: expected one kill and two attempts, got "
                                   f"{len(attempts)} attempt(s); see {run.root}")
            resumed = attempts[1]
            seconds, lost = resumed["time"] - killer.killed_at, kill_at - resumed["start_iter"]
            results[side].append((seconds, lost))
            print(f"  (c) {side:10s} repeat {rep + 1}: killed after iteration {kill_at}, "
                  f"resumed from {resumed['start_iter']}; worker process up "
                  f"{resumed['process_start'] - killer.killed_at:4.1f} s, ready "
                  f"{resumed['setup_done'] - killer.killed_at:4.1f} s, first resumed iteration "
                  f"{seconds:4.1f} s after the SIGKILL", flush=True)
    return results


def print_recovery(results: dict, interval: int, kill_at: int) -> None:
    print(f"\n(c) recovery: checkpoint every {interval} iterations, rank 1 SIGKILLed after "
          f"iteration {kill_at}, max_failures=1 (median over repeats; lost: worst)")
    header = f"{'side':10s} {'SIGKILL -> first resumed iteration':>34s} {'iterations lost':>16s}"
    print(header)
    print("-" * len(header))
    for side, values in results.items():
        seconds = statistics.median(v[0] for v in values)
        lost = max(v[1] for v in values)
        print(f"{side:10s} {seconds:32.1f} s {lost:16d}")
    print(f"Target: raytrainer loses <= {interval} iterations (the checkpoint interval).")


# ---- main ------------------------------------------------------------------------------------

@contextlib.contextmanager
def workspace(keep: bool) -> Iterator[str]:
    root = tempfile.mkdtemp(prefix="ray_overhead_")
    try:
        yield root
    finally:
        if keep:
            print(f"files kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    global WORKER_NICENESS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="a,b,c", help="comma-separated subset of a,b,c")
    parser.add_argument("--repeats", type=int, default=None,
                        help="repeats per side in every part (default: a 4 blocks in the same "
                             "workers and 1 separate run; b 2, in alternating order; c 1)")
    parser.add_argument("--iters", type=int, default=300,
                        help="iterations per part-a block or run (default 300)")
    parser.add_argument("--warmup", type=int, default=50,
                        help="part-a iterations before the timed window (default 50)")
    parser.add_argument("--workloads", default="large,standard",
                        help="part-a workloads: large (64-1024-1024-10), standard "
                             "(64-256-256-10)")
    parser.add_argument("--ckpt-interval", type=int, default=50,
                        help="part c: checkpoint every N iterations (default 50)")
    parser.add_argument("--kill-at", type=int, default=120,
                        help="part c: kill rank 1 after this iteration (default 120)")
    parser.add_argument("--worker-niceness", type=int, default=WORKER_NICENESS,
                        help="nice value of Ray workers (Ray's default is 15; default here 0)")
    parser.add_argument("--quick", action="store_true",
                        help="large workload only, 2 blocks per side, no separate runs, one "
                             "start-up pair")
    parser.add_argument("--keep", action="store_true", help="keep the run files")
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    if not parts <= {"a", "b", "c"}:
        parser.error("--parts takes a comma-separated subset of a,b,c")
    if not 0 < args.warmup < args.iters:
        parser.error("need 0 < --warmup < --iters")
    WORKER_NICENESS = args.worker_niceness
    workloads = tuple(w for w in WORKLOADS if w.name in args.workloads.split(","))
    same_repeats, separate_repeats = args.repeats or 4, args.repeats or 1
    startup_repeats = args.repeats or 2
    if args.quick:
        workloads, same_repeats, separate_repeats = WORKLOADS[:1], args.repeats or 2, 0
        startup_repeats = args.repeats or 1
    logging.getLogger().setLevel(logging.WARNING)
    print(f"bare Ray Train TorchTrainer vs raytrainer.launch.train: 2 CPU workers, gloo, batch "
          f"64 per worker; cpu count {os.cpu_count()}, python {sys.version.split()[0]}, Ray "
          f"workers at nice {WORKER_NICENESS}", flush=True)
    startup: dict[str, dict] = {}
    same = separate = recovery = None
    started = time.monotonic()
    with workspace(args.keep) as root:
        if "b" in parts:  # before the cluster exists, so its idle processes do not interfere
            startup["local"] = measure_startup(root, startup_repeats, 20, None)
        with LocalCluster(root) as cluster:
            if "b" in parts:
                startup["cluster"] = measure_startup(root, startup_repeats, 20, cluster)
            if parts & {"a", "c"}:
                cluster.connect()
            if "a" in parts:
                same = measure_same_workers(root, same_repeats, args.iters, args.warmup,
                                            workloads)
                if separate_repeats:  # slow and noisy: the first workload only
                    separate = measure_separate(root, separate_repeats, args.iters,
                                                args.warmup, workloads[:1])
            if "c" in parts:
                recovery = measure_recovery(root, args.repeats or 1, args.ckpt_interval,
                                            args.kill_at)
    if same:
        print_steady("both sides in the same 2 workers, alternating blocks", same)
    if separate:
        print_steady("separate runs (launch.train vs TorchTrainer.fit)", separate)
    if startup:
        print_startup(startup)
    if recovery:
        print_recovery(recovery, args.ckpt_interval, args.kill_at)
    print(f"\ntotal {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
