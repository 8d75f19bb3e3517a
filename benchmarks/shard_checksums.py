"""The cost of the shard CRC-32s: a sharded (DCP) save and load with and without them.

One process, no process group (DCP's ``no_dist``), one invocation: a model-and-optimizer state
of ``--size-mb`` in all (fp32 weights in 4 MB tensors plus AdamW's two moments for each, and
the optimizer's hyperparameters as DCP's non-tensor entries) is saved and loaded over and over,
the two sides interleaved and alternating which goes first, ``--repeats`` times, and the script
prints the medians, their ratio and the paired ratio (the median over repeats of the ratio
within a repeat).

- *save, checked*: ``dcp.save`` through :func:`raytrainer.checkpoint.dcp_io.writer`, which
  counts every file's size and CRC-32 while DCP writes it (what ``sharded.save`` does), and the
  records read back from the writer; the CRC-32 is zlib-ng's when it is installed, else
  zlib's (the first line printed says which);
- *save, plain*: the same writer with DCP's own filesystem put back (no checksums): the same
  code path minus the CRC-32s;
- *load, checked*: ``dcp.load`` through :func:`dcp_io.reader` (every file's CRC-32 checked
  before it is read, ``.metadata`` through the restricted unpickler) and
  :func:`dcp_io.load_planner` (non-tensor entries weights-only);
- *load, plain*: DCP's own ``FileSystemReader``/``FsspecReader`` and default planner.

Storage: a local directory (``FileSystemWriter``, ``os.sync()`` before each timed operation so
no earlier write-back is pending; reads come from the page cache, both sides alike) and
``memory://`` (DCP's fsspec writer and reader, the path S3 takes, without a network).

Usage::

    python benchmarks/shard_checksums.py                 # 64 MB, 15 repeats, about 10 s
    python benchmarks/shard_checksums.py --size-mb 256 --repeats 7 --storage local
    python benchmarks/shard_checksums.py --stdlib-zlib   # the fallback without zlib-ng
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
import warnings
import zlib

import fsspec
import torch
import torch.distributed.checkpoint as dcp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as `python benchmarks/shard_checksums.py`
    sys.path.insert(0, ROOT)

from raytrainer import storage  # noqa: E402
from raytrainer.checkpoint import dcp_io  # noqa: E402

_TENSOR_MB = 4


def make_state(size_mb: int) -> dict:
    """Weights and two AdamW moments per weight, ``size_mb`` in all, as DCP saves them."""
    count = max(1, round(size_mb / (3 * _TENSOR_MB)))
    side = int((_TENSOR_MB * 2**20 / 4) ** 0.5)
    generator = torch.Generator().manual_seed(0)
    model = {f"layer{i}.weight": torch.randn(side, side, generator=generator)
             for i in range(count)}
    optim = {"state": {name: {"step": torch.tensor(10.0), "exp_avg": torch.randn_like(value),
                              "exp_avg_sq": torch.rand_like(value)}
                       for name, value in model.items()},
             "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8,
                               "weight_decay": 0.01, "params": sorted(model)}]}
    return {"model": model, "optim": optim}


def _state_bytes(state: dict) -> int:
    tensors = list(state["model"].values()) + [
        value for entry in state["optim"]["state"].values() for value in entry.values()]
    return sum(t.numel() * t.element_size() for t in tensors)


def _empty_like(state: dict) -> dict:
    """A state of the same shapes to load into."""
    return {"model": {k: torch.empty_like(v) for k, v in state["model"].items()},
            "optim": {"state": {k: {n: torch.empty_like(t) for n, t in entry.items()}
                                for k, entry in state["optim"]["state"].items()},
                      "param_groups": [dict(group) for group in state["optim"]["param_groups"]]}}


def _save(directory: str, state: dict, checked: bool) -> dict:
    writer = dcp_io.writer(directory)
    if not checked:
        writer.fs = writer.fs._inner  # DCP's own filesystem: no checksums
    dcp.save(state, storage_writer=writer, no_dist=True)
    return dcp_io.written_records(writer) if checked else {}


def _load(directory: str, target: dict, records: dict, checked: bool) -> None:
    if checked:
        expected = {name: record.to_json() for name, record in records.items()}
        dcp.load(target, storage_reader=dcp_io.reader(directory, expected),
                 planner=dcp_io.load_planner(), no_dist=True)
    else:
        local = storage.local_path(directory)
        reader = dcp.FileSystemReader(local) if local is not None else \
            dcp_io.FsspecReader(directory)
        dcp.load(target, storage_reader=reader, no_dist=True)


def _remove(directory: str) -> None:
    local = storage.local_path(directory)
    if local is not None:
        shutil.rmtree(local, ignore_errors=True)
    else:
        storage.remove(directory, recursive=True)


def _timed(fn, *args) -> tuple[float, object]:
    """Seconds ``fn(*args)`` took (after an ``os.sync()``) and what it returned."""
    if hasattr(os, "sync"):
        os.sync()
    started = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - started, result


def bench(root: str, state: dict, repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {f"{op}, {side}": [] for op in ("save", "load")
                                     for side in ("checked", "plain")}
    target = _empty_like(state)
    for warm in (True, False):  # one untimed round: lazy imports, first-call set-up
        for repeat in range(1 if warm else repeats):
            order = (True, False) if repeat % 2 == 0 else (False, True)
            for checked in order:
                side = "checked" if checked else "plain"
                directory = storage.join(root, f"dcp-{uuid.uuid4().hex[:8]}")
                save_s, records = _timed(_save, directory, state, checked)
                load_s, _ = _timed(_load, directory, target, records, checked)
                _remove(directory)
                if not warm:
                    times[f"save, {side}"].append(save_s)
                    times[f"load, {side}"].append(load_s)
    return times


def report(where: str, times: dict[str, list[float]], size_mb: float) -> None:
    median = {key: statistics.median(values) for key, values in times.items()}
    print(f"\n{where}: medians of {len(times['save, checked'])} repeats, {size_mb:.0f} MB of "
          "tensors")
    print("| operation | plain, s | checked, s | checked / plain | paired | checked, GB/s |")
    print("|---|---|---|---|---|---|")
    for op in ("save", "load"):
        plain, checked = median[f"{op}, plain"], median[f"{op}, checked"]
        paired = statistics.median(c / p for c, p in zip(times[f"{op}, checked"],
                                                         times[f"{op}, plain"]))
        print(f"| {op} | {plain:.4f} | {checked:.4f} | **{checked / plain:.3f}** | "
              f"{paired:.3f} | {size_mb / 1024 / checked:.2f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--storage", default="local,memory",
                        help="comma-separated: local, memory")
    parser.add_argument("--stdlib-zlib", action="store_true",
                        help="compute the CRC-32s with the standard library's zlib (what "
                             "raytrainer falls back to without zlib-ng)")
    args = parser.parse_args()
    if args.stdlib_zlib:
        dcp_io.crc32 = zlib.crc32
    warnings.filterwarnings("ignore", message="torch.distributed is disabled")
    torch.set_num_threads(1)
    state = make_state(args.size_mb)
    size_mb = _state_bytes(state) / 2**20
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.2f}, CRC-32 by {dcp_io.crc32.__module__}")
    for kind in args.storage.split(","):
        if kind == "local":
            with tempfile.TemporaryDirectory(prefix="shard-checksums-") as root:
                report("local disk", bench(root, state, args.repeats), size_mb)
        elif kind == "memory":
            root = f"memory://shard-checksums-{uuid.uuid4().hex[:8]}"
            report("memory:// (fsspec)", bench(root, state, args.repeats), size_mb)
            fsspec.filesystem("memory").rm(root.split("://", 1)[1], recursive=True)
        else:
            parser.error(f"unknown storage {kind!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
