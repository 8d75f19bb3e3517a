"""Sweep overhead: an N-trial ``raytrainer tune`` sweep vs the same N ``raytrainer train`` runs
one after the other, in one invocation.

Both sides train the digits MLP (``configs/digits/mlp.py``) for ``--epochs`` epochs with 1
worker per run, validating every epoch, at the N learning rates of a grid. The sweep runs
them one at a time (``--max-concurrent 1``, the FIFO scheduler, so no trial is stopped early)
on the private Ray instance its driver starts; each ``raytrainer train`` process starts its own
instance. Reported: the wall time of each side, their ratio, and the seconds from launching the
sweep command to the end of the first trial's first iteration (written by :class:`FirstIterHook`
on rank 0, ``time.time()`` across processes).

Usage::

    python benchmarks/tune_overhead.py                 # N=4, 2 epochs
    python benchmarks/tune_overhead.py --trials 2 --epochs 1
"""
from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile
import time

from raytrainer.hooks import Hook

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LRS = (0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 0.0005)


class FirstIterHook(Hook):
    """Writes ``time.time()`` after rank 0's first training iteration into ``out_dir``."""

    def __init__(self, out_dir: str):
        self.out_dir, self.done = out_dir, False

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if not self.done and runner.rank == 0:
            self.done = True
            path = os.path.join(self.out_dir, f"first_iter_{os.getpid()}_{time.time_ns()}")
            with open(path, "w") as sink:
                sink.write(repr(time.time()))


def _config(tmp: str, epochs: int, probe_dir: str) -> str:
    """The digits config with 1 worker, ``epochs`` epochs, validation every epoch, the probe."""
    path = os.path.join(tmp, "digits.py")
    with open(path, "w") as sink:
        sink.write(f"_base_ = [{os.path.join(ROOT, 'configs', 'digits', 'mlp.py')!r}]\n"
                   f"train_cfg = dict(max_epochs={epochs}, val_interval=1)\n"
                   "ray = dict(num_workers=1)\n"
                   "custom_hooks = [dict(type='benchmarks.tune_overhead.FirstIterHook', "
                   f"out_dir={probe_dir!r})]\n")
    return path


def _run(command: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
                   env=dict(os.environ, PYTHONPATH=ROOT))
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    lrs = LRS[:args.trials]
    cli = [sys.executable, "-m", "raytrainer.cli"]
    with tempfile.TemporaryDirectory(prefix="tune_overhead_") as tmp:
        probes = os.path.join(tmp, "probes")
        os.makedirs(probes)
        config = _config(tmp, args.epochs, probes)
        space = os.path.join(tmp, "space.py")
        with open(space, "w") as sink:
            sink.write("from ray import tune\nspace = {'optim_wrapper.optimizer.lr': "
                       f"tune.grid_search({list(lrs)!r})}}\n")
        launched = time.time()
        sweep_s = _run([*cli, "tune", config, "--space", space, "--metric", "val/accuracy/top1",
                        "--workers-per-trial", "1", "--max-concurrent", "1",
                        "--work-dir", os.path.join(tmp, "sweep")])
        first = min(float(open(p).read()) for p in glob.glob(os.path.join(probes, "first_*")))
        train_s = sum(_run([*cli, "train", config, "--work-dir", os.path.join(tmp, f"train_{i}"),
                            "--cfg-options", f"optim_wrapper.optimizer.lr={lr}"])
                      for i, lr in enumerate(lrs))
    print(f"| trials | epochs | sweep s | {args.trials} x train s | sweep / train | "
          "sweep start -> first iteration s |")
    print("|---|---|---|---|---|---|")
    print(f"| {args.trials} | {args.epochs} | {sweep_s:.1f} | {train_s:.1f} | "
          f"{sweep_s / train_s:.2f} | {first - launched:.1f} |")


if __name__ == "__main__":
    main()
