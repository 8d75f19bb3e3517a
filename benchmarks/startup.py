"""Time to first iteration: raytrainer's README run against a bare Ray Train V2 ``TorchTrainer``,
each a fresh process that starts its own private local Ray instance, interleaved.

- **raytrainer**: ``raytrainer train configs/digits/mlp.py --cfg-options
  train_cfg.max_epochs=1`` (the README run, one epoch), 2 Ray workers, through
  ``benchmarks.startup_marks.raytrainer_main`` (the CLI's ``main`` with marks);
- **bare**: ``ray.init(address="local")`` and a ``TorchTrainer`` with the same number of workers
  (gloo) whose loop does one DDP step of a ``Linear(4, 2)``
  (``benchmarks.startup_marks.bare_main``).

Both run with this process's environment less ``RAY_ADDRESS`` (Ray's defaults otherwise: temp
dir, worker niceness). Marks (``time.time()``) come from the driver (around ``ray.init`` and
``fit()``) and rank 0's worker (loop entered, imports done, a ``torch.distributed`` barrier, the
first iteration done); the console's first line is timed as it arrives. Phases, as medians over
``--repeats`` (the two sides alternate, and which goes first alternates too):

- ``before init``: from ``Popen`` to the driver calling ``ray.init`` (Python, imports, config,
  the run's checks);
- ``ray.init``: the local instance started (GCS, raylet, dashboard ...);
- ``to fit``: from ``ray.init`` returning to ``fit()`` (raytrainer: the cluster check, the
  trainer built);
- ``group start``: from ``fit()`` to rank 0 entering the loop (controller actor, placement
  group, worker actors, Ray Train's torch process group, unpickling the loop);
- ``imports``: what the loop imports first (raytrainer: ``raytrainer.launch.worker.loop``;
  torch is already imported by Ray Train's process-group setup on both sides);
- ``collective``: one ``dist.barrier()``;
- ``first iter``: from the barrier to the end of the first iteration (raytrainer: the Runner
  built, with ``runner`` its share up to ``before_train``);
- ``first iter @``: from ``Popen`` to the end of the first iteration; ``first line @``: to the
  console's first line; ``exit @``: to the process's exit.

Usage::

    python benchmarks/startup.py              # 3 repeats per side, about 3-4 min on 2 cores
    python benchmarks/startup.py --repeats 5 --num-workers 2
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as `python benchmarks/startup.py`
    sys.path.insert(0, ROOT)

from benchmarks.startup_marks import ENV, mark, read_marks  # noqa: E402
from raytrainer.hooks import Hook  # noqa: E402

SIDES = ("bare", "raytrainer")
CONFIG = "configs/digits/mlp.py"
PHASES = (  # name, from mark, to mark (None: Popen)
    ("before init", None, "ray_init_start"),
    ("ray.init", "ray_init_start", "ray_init_done"),
    ("to fit", "ray_init_done", "fit_start"),
    ("group start", "fit_start", "loop_entered.0"),
    ("imports", "loop_entered.0", "imports_done.0"),
    ("collective", "imports_done.0", "first_collective.0"),
    ("runner", "first_collective.0", "runner_ready.0"),
    ("first iter", "first_collective.0", "first_iter.0"),
    ("first iter @", None, "first_iter.0"),
    ("first line @", None, "first_line"),
    ("exit @", None, "exit"),
)


class StartupHook(Hook):
    """Marks the Runner ready (``before_train``) and its first iteration done."""

    priority = "LOWEST"

    def before_train(self, runner) -> None:
        mark("runner_ready", runner.rank)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if runner.iter == 0:  # runner.iter counts from 0 until the loop's increment
            mark("first_iter", runner.rank)


def command(side: str, root: str, num_workers: int) -> list[str]:
    if side == "bare":
        code = ("from benchmarks.startup_marks import bare_main; "
                f"bare_main({num_workers}, {os.path.join(root, 'storage')!r})")
        return [sys.executable, "-c", code]
    argv = ["train", CONFIG, "--work-dir", os.path.join(root, "work"), "--num-workers",
            str(num_workers), "--cfg-options", "train_cfg.max_epochs=1",
            "custom_hooks=[dict(type='benchmarks.startup.StartupHook')]"]
    code = ("import sys; from benchmarks.startup_marks import raytrainer_main; "
            f"sys.exit(raytrainer_main({argv!r}))")
    return [sys.executable, "-c", code]


def measure(side: str, root: str, num_workers: int, timeout: float = 600) -> dict[str, float]:
    """One fresh process of ``side``; seconds of each phase."""
    os.makedirs(root, exist_ok=True)
    marks_path = os.path.join(root, "marks.jsonl")
    env = dict(os.environ, **{ENV: marks_path},
               PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    env.pop("RAY_ADDRESS", None)
    first_line: list[float] = []
    with open(os.path.join(root, "console.log"), "w") as log:
        start = time.time()
        process = subprocess.Popen(command(side, root, num_workers), cwd=ROOT, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   start_new_session=True)

        def read() -> None:
            for line in process.stdout:
                if not first_line and "WARNING" not in line and side == "raytrainer":
                    first_line.append(time.time())  # Ray's own warnings are not ours
                log.write(f"{time.time() - start:8.2f} {line}")

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            raise
        end = time.time()
        reader.join(10)
    if code != 0:
        raise RuntimeError(f"{side} exited with {code}; see {root}/console.log")
    marks = read_marks(marks_path)
    marks.update(exit=end, **({"first_line": first_line[0]} if first_line else {}))
    return {name: marks[b] - (start if a is None else marks[a]) for name, a, b in PHASES
            if b in marks and (a is None or a in marks)}


def load_average() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the runs' files")
    args = parser.parse_args(argv)
    print(f"load average before: {load_average()} (1, 5, 15 min) on {os.cpu_count()} CPUs",
          flush=True)
    root = tempfile.mkdtemp(prefix="startup_")
    results: dict[str, list[dict]] = {side: [] for side in SIDES}
    try:
        for rep in range(args.repeats):
            for side in (SIDES if rep % 2 == 0 else SIDES[::-1]):
                times = measure(side, os.path.join(root, f"{side}_{rep}"), args.num_workers)
                results[side].append(times)
                print(f"  {side:10s} repeat {rep + 1}: " +
                      ", ".join(f"{k} {v:.1f}" for k, v in times.items()), flush=True)
    finally:
        if args.keep:
            print(f"files kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(f"load average after: {load_average()}")
    print(f"\nseconds, median of {args.repeats} fresh processes per side "
          f"({args.num_workers} workers; @: from Popen)")
    header = f"{'phase':14s} {'bare':>7s} {'raytrainer':>11s} {'diff':>7s} {'ratio':>6s}"
    print(header)
    print("-" * len(header))
    for name, _, _ in PHASES:
        medians = [statistics.median(r[name] for r in results[side]) if all(
            name in r for r in results[side]) else None for side in SIDES]
        bare, ours = medians
        if ours is None:
            continue
        if bare is None:
            print(f"{name:14s} {'-':>7s} {ours:11.2f}")
            continue
        ratio = f"{ours / bare:6.2f}" if bare > 0.05 else f"{'-':>6s}"
        print(f"{name:14s} {bare:7.2f} {ours:11.2f} {ours - bare:+7.2f} {ratio}")
    print("Target: first iter @ (raytrainer) <= 15 s on a quiet 2-core machine.")


if __name__ == "__main__":
    main()
