"""FSDP vs DDP on 2 CPU ranks: step time, memory per rank, and the sharded checkpoint path
against the full-state one, for a ~38M-parameter model.

One invocation spawns 2 gloo ranks (``torch.multiprocessing``, one torch thread each) once per
side and repeat, the sides interleaved (the order rotates every repeat):

- **ddp**: ``Runner`` with ``strategy=dict(type='DDPStrategy', launcher='pytorch')``;
- **fsdp**: ``Runner`` with ``strategy=dict(type='FSDPStrategy', launcher='pytorch',
  shard_modules=['Block'])``;
- **raw**: a hand-written FSDP2 loop: ``fully_shard`` on every ``Block`` and then the root with
  the options ``FSDPStrategy`` passes, ``AdamW``, ``zero_grad``/forward/``backward``/``step``,
  over a DataLoader built from the same config.

The model is ``raytrainer.model.CharTransformer`` (embed 512, 12 Blocks, 8 heads: 38.1M
parameters, 152 MB fp32; AdamW state 305 MB more), batch 4 x 64 tokens per rank from an
in-memory dataset of random bytes. The Runner sides keep their default hooks except
CheckpointHook (off: it would save after the last iteration); their log lines are written to
the run's files, not to this output.

Each session records, per rank:

- **step time**: ``perf_counter()`` after every iteration (the Runner sides: a LOWEST-priority
  hook); the session's figure is the median duration of the iterations after ``--warmup``;
- **state bytes**: the bytes this rank holds of the parameters and the optimizer state (a
  DTensor's local shard under FSDP), after training;
- **memory**: peak RSS (``VmHWM``) from process start to the end of training, and the growth
  during training: the peak RSS from just after the Runner (or the raw side's model) is built
  and wrapped (the high-water mark is reset there through ``/proc/self/clear_refs``) to the end
  of training, minus the RSS at that point;
- **checkpoints** (Runner sides, after training; an untimed save and resume first, so lazy
  imports are out of the timings), ``--ckpt-repeats`` times: ``runner.save_checkpoint`` (sync),
  ``runner.save_checkpoint(asynchronous=True)`` (the **stall**: until it returns; then the
  write's end through ``runner.checkpoints.wait()``), and ``runner.resume`` of the sync one
  (weights, optimizer state, loop position: what a restart loads). Local disk; ``os.sync()``
  on rank 0 and a barrier before each timed operation, times taken on rank 0 (every operation
  ends in a collective or a barrier except the async save, which returns on each rank).

Printed: medians over the sessions of each side (a session's own figure is the median of its
iterations or operations), the ratios fsdp/ddp and fsdp/raw of those medians, and ``paired``,
the median over repeats of the ratio within a repeat.

Usage::

    python benchmarks/fsdp.py                      # 3 repeats, 10 timed steps, ~3.5 minutes
    python benchmarks/fsdp.py --fresh-memory --ckpt-repeats 0   # RSS follows live tensors
    python benchmarks/fsdp.py --quick              # a 0.1M-parameter model, 1 repeat: 10-25 s,
                                                   # nearly all of it starting 6 rank processes
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import io
import json
import logging
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import traceback

import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
from torch.utils.data import Dataset

from raytrainer.dataset import build_dataloader
from raytrainer.hooks import Hook
from raytrainer.model import CharTransformer
from raytrainer.runner import Runner
from raytrainer.utils.net import free_port

SIDES = ("ddp", "fsdp", "raw")
WORLD = 2
MB = 1e6
FULL_SIZE = dict(embed_dim=512, num_layers=12, num_heads=8, block_size=64)
QUICK_SIZE = dict(embed_dim=64, num_layers=2, num_heads=4, block_size=32)
LR = 1e-4


# --------------------------------------------------------------------------- shared workload
class TokenDataset(Dataset):
    """Random byte sequences in memory: ``inputs`` and the next-token ``data_samples``."""

    def __init__(self, length: int, size: int = 512, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.tokens = torch.randint(0, 256, (size, length + 1), generator=generator)

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index: int) -> dict:
        row = self.tokens[index]
        return dict(inputs=row[:-1], data_samples=row[1:])


def dataloader_cfg(length: int, batch_size: int) -> dict:
    return dict(dataset=TokenDataset(length), batch_size=batch_size, num_workers=0,
                sampler=dict(type="InfiniteSampler", shuffle=True, seed=0),
                collate_fn=dict(type="default_collate"))


def strategy_cfg(side: str) -> dict:
    if side == "fsdp":
        return dict(type="FSDPStrategy", launcher="pytorch", backend="gloo",
                    shard_modules=["Block"])
    return dict(type="DDPStrategy", launcher="pytorch", backend="gloo")


class _StepTimer(Hook):
    """``perf_counter()`` after every training iteration, after every other hook."""

    priority = "LOWEST"

    def __init__(self):
        self.stamps: list[float] = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.stamps.append(time.perf_counter())


# --------------------------------------------------------------------------- memory
def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux 4.0+)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _local_bytes(tensor: torch.Tensor) -> int:
    local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
    return local.numel() * local.element_size()


def state_bytes(module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Bytes this rank holds of the parameters and of the optimizer state."""
    params = sum(_local_bytes(p) for p in module.parameters())
    optim = sum(_local_bytes(v) for s in optimizer.state.values() for v in s.values()
                if isinstance(v, torch.Tensor))
    return dict(param_bytes=params, optim_bytes=optim,
                num_params=sum(p.numel() for p in module.parameters()))


# --------------------------------------------------------------------------- one rank
def _durations(stamps: list[float], warmup: int) -> list[float]:
    """Durations of the iterations after the first ``warmup``."""
    timed = stamps[warmup - 1:] if warmup > 0 else stamps
    return [b - a for a, b in zip(timed, timed[1:])]


def _raw_fsdp2(job: dict) -> tuple[list[float], dict, dict]:
    """The hand-written FSDP2 loop: the same model, sharding and optimizer as the Runner's."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, OffloadPolicy, fully_shard

    torch_dist.init_process_group(backend="gloo")
    torch.manual_seed(0)
    model = CharTransformer(**job["model"])
    mesh = init_device_mesh("cpu", (torch_dist.get_world_size(),))
    # what FSDPStrategy passes (blocks resharded after forward, the root left to FSDP2: kept)
    options = dict(mesh=mesh, reshard_after_forward=True, mp_policy=MixedPrecisionPolicy(),
                   offload_policy=OffloadPolicy())
    for block in model.blocks:
        fully_shard(block, **options)
    fully_shard(model, **dict(options, reshard_after_forward=None))
    memory = dict(rss_built_kb=_status_kb("VmRSS"), hwm_build_kb=_status_kb("VmHWM"),
                  hwm_reset=_reset_peak())
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    loader = build_dataloader(dataloader_cfg(job["model"]["block_size"], job["batch_size"]),
                              seed=0)
    batches = iter(loader)
    model.train()
    stamps = []
    for _ in range(job["warmup"] + job["steps"]):
        batch = next(batches)
        loss = model(batch["inputs"], batch["data_samples"], mode="loss")["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        stamps.append(time.perf_counter())
    memory["hwm_train_kb"] = _status_kb("VmHWM")
    return stamps, memory, state_bytes(model, optimizer)


def _timed(fn, rank: int) -> float:
    """Seconds ``fn`` takes on this rank, started together on every rank with nothing pending
    to write back (rank 0 runs ``os.sync()``) and no garbage to collect."""
    gc.collect()
    if rank == 0:
        os.sync()
    torch_dist.barrier()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _checkpoint_sizes(location: str) -> dict:
    """Bytes of the checkpoint, and of the files the busiest rank wrote."""
    per_rank = [0] * WORLD
    total = 0
    for root, _, files in os.walk(location):
        for name in files:
            size = os.path.getsize(os.path.join(root, name))
            total += size
            writer = 0  # model.pt, optimizer.pt, state.pt, meta.json, commit: rank 0
            if name.startswith("__") and name.endswith(".distcp"):
                writer = int(name[2:].split("_")[0])
            elif name.startswith("rank_") and name.endswith(".pt"):
                writer = int(name[5:-3])
            if writer < WORLD:
                per_rank[writer] += size
    return dict(ckpt_bytes=total, ckpt_busiest_rank_bytes=max(per_rank))


def _sync_save(runner: Runner, rank: int, directory: str, name: str,
               times: dict[str, list[float]]) -> str:
    saved: list[str] = []
    seconds = _timed(lambda: saved.append(runner.save_checkpoint(directory, name)), rank)
    times.setdefault("save", []).append(seconds)
    return saved[0]


def _async_save(runner: Runner, rank: int, directory: str, name: str,
                times: dict[str, list[float]]) -> str:
    gc.collect()
    if rank == 0:
        os.sync()
    torch_dist.barrier()
    start = time.perf_counter()
    location = runner.save_checkpoint(directory, name, asynchronous=True)
    times.setdefault("async_stall", []).append(time.perf_counter() - start)
    runner.checkpoints.wait()  # the write's end, and a clean start for the next save
    torch_dist.barrier()
    times.setdefault("async_write", []).append(time.perf_counter() - start)
    return location


def _remove(rank: int, *locations: str) -> None:
    torch_dist.barrier()
    if rank == 0:
        for location in locations:
            shutil.rmtree(location, ignore_errors=True)
    torch_dist.barrier()


def _checkpoints(runner: Runner, rank: int, directory: str, repeats: int) -> dict:
    """Sync save, async save (stall and write) and resume, ``repeats`` times, on every rank;
    sync and async alternate which goes first."""
    times: dict[str, list[float]] = {}
    # untimed: DCP's and the readers' lazy imports and first-call set-up
    warm = runner.save_checkpoint(directory, "warm")
    runner.resume(warm)
    sizes = _checkpoint_sizes(warm) if rank == 0 else {}
    _remove(rank, warm)
    for i in range(repeats):
        if i % 2 == 0:
            sync = _sync_save(runner, rank, directory, f"sync_{i}", times)
            background = _async_save(runner, rank, directory, f"async_{i}", times)
        else:
            background = _async_save(runner, rank, directory, f"async_{i}", times)
            sync = _sync_save(runner, rank, directory, f"sync_{i}", times)
        times.setdefault("load", []).append(_timed(functools.partial(runner.resume, sync), rank))
        _remove(rank, sync, background)
    return dict(ckpt_times=times, **sizes)


def _rank(rank: int, world: int, port: int, job: dict, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    logging.getLogger().setLevel(logging.WARNING)
    side = job["side"]
    result: dict = dict(rank=rank, side=side, rss_start_kb=_status_kb("VmRSS"))
    try:
        if side == "raw":
            stamps, memory, held = _raw_fsdp2(job)
        else:
            timer = _StepTimer()
            work_dir = os.path.join(out_dir, f"work_{side}_{job['repeat']}")
            # the run's log lines are still formatted and written, just not to this output
            with contextlib.redirect_stdout(io.StringIO()):
                runner = Runner(
                    model=dict(type="CharTransformer", **job["model"]), work_dir=work_dir,
                    train_dataloader=dataloader_cfg(job["model"]["block_size"],
                                                    job["batch_size"]),
                    train_cfg=dict(by_epoch=False, max_iters=job["warmup"] + job["steps"]),
                    optim_wrapper=dict(optimizer=dict(type="AdamW", lr=LR)),
                    default_hooks=dict(checkpoint=None), custom_hooks=[timer],
                    randomness=dict(seed=0), log_processor=dict(by_epoch=False),
                    launcher="pytorch", strategy=strategy_cfg(side),
                    experiment_name=f"fsdp_bench_{side}")
                memory = dict(rss_built_kb=_status_kb("VmRSS"), hwm_build_kb=_status_kb("VmHWM"),
                              hwm_reset=_reset_peak())
                runner.train()
                memory["hwm_train_kb"] = _status_kb("VmHWM")
                stamps = timer.stamps
                held = state_bytes(runner.strategy.unwrap(runner.model),
                                   runner.optim_wrapper.optimizer)
                if job["ckpt_repeats"] > 0:
                    result.update(_checkpoints(runner, rank, os.path.join(work_dir, "ckpt"),
                                               job["ckpt_repeats"]))
        result.update(memory, **held, step_times=_durations(stamps, job["warmup"]),
                      maxrss_kb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        torch_dist.barrier()
        torch_dist.destroy_process_group()
    except BaseException:
        result["error"] = traceback.format_exc()
    with open(os.path.join(out_dir, f"{side}_{job['repeat']}_rank{rank}.json"), "w") as f:
        json.dump(result, f)


def run_session(job: dict, out_dir: str) -> list[dict]:
    """One side on ``WORLD`` fresh rank processes; returns each rank's result."""
    mp.spawn(_rank, args=(WORLD, free_port(), job, out_dir), nprocs=WORLD)
    results = []
    for rank in range(WORLD):
        with open(os.path.join(out_dir, f"{job['side']}_{job['repeat']}_rank{rank}.json")) as f:
            results.append(json.load(f))
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise RuntimeError(f"a rank of the {job['side']} session failed:\n" + "\n".join(errors))
    shutil.rmtree(os.path.join(out_dir, f"work_{job['side']}_{job['repeat']}"),
                  ignore_errors=True)
    return results


# --------------------------------------------------------------------------- summary
def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def session_figures(ranks: list[dict]) -> dict[str, float]:
    """A session's figures: rank 0's times (the ranks move in step), the larger rank's bytes."""
    first = ranks[0]
    figures = dict(step=median(first["step_times"]),
                   held=max(r["param_bytes"] + r["optim_bytes"] for r in ranks),
                   params=first["num_params"],
                   peak=max(max(r["hwm_build_kb"], r["hwm_train_kb"]) for r in ranks) * 1e3,
                   growth=max(r["hwm_train_kb"] - r["rss_built_kb"] for r in ranks) * 1e3,
                   built=max(r["rss_built_kb"] for r in ranks) * 1e3,
                   reset=all(r["hwm_reset"] for r in ranks))
    for key, values in first.get("ckpt_times", {}).items():
        figures[key] = median(values)
    if "async_stall" in figures:
        figures["stall_ratio"] = median([a / s for a, s in zip(first["ckpt_times"]["async_stall"],
                                                               first["ckpt_times"]["save"])])
    if "ckpt_bytes" in first:
        figures["ckpt_bytes"] = first["ckpt_bytes"]
        figures["ckpt_busiest"] = first["ckpt_busiest_rank_bytes"]
    return figures


def ratio_row(results: dict[str, list[dict]], key: str, top: str, bottom: str) -> tuple:
    """Median of each side, their ratio, and the median of the per-repeat ratios."""
    a = [s[key] for s in results[top]]
    b = [s[key] for s in results[bottom]]
    paired = median([x / y for x, y in zip(a, b)])
    return median(a), median(b), median(a) / median(b), paired


def print_report(results: dict[str, list[dict]], repeats: int, args) -> None:
    sides = [s for s in SIDES if results.get(s)]
    print(f"\nmedians over {repeats} session(s) per side; a session's step time is the median "
          f"of rank 0's {args.steps} iterations after {args.warmup} warm-up; bytes and memory "
          f"are the larger rank's")
    print(f"parameters: {results[sides[0]][0]['params'] / 1e6:.1f} M")
    header = f"{'figure':42s} " + " ".join(f"{s:>10s}" for s in sides)
    print(header)
    print("-" * len(header))

    def row(label: str, key: str, scale: float = 1.0, fmt: str = "10.3f") -> None:
        cells = []
        for side in sides:
            values = [s[key] for s in results[side] if key in s]
            cells.append(format(median(values) / scale, fmt) if values else f"{'-':>10s}")
        print(f"{label:42s} " + " ".join(cells))

    row("step s/it", "step")
    row("params + optimizer state held, MB/rank", "held", MB, "10.1f")
    row("peak RSS (VmHWM), MB/rank", "peak", MB, "10.1f")
    row("RSS after build, MB/rank", "built", MB, "10.1f")
    row("peak RSS growth during training, MB/rank", "growth", MB, "10.1f")
    if "save" in results[sides[0]][0]:
        row("checkpoint on disk, MB", "ckpt_bytes", MB, "10.1f")
        row("checkpoint written by the busiest rank, MB", "ckpt_busiest", MB, "10.1f")
        row("save (sync) s", "save")
        row("async save: stall s", "async_stall")
        row("async save: stall to written s", "async_write")
        row("resume (load) s", "load")
        row("async stall / sync save (paired)", "stall_ratio")
    if not all(s["reset"] for side in sides for s in results[side]):
        print("note: /proc/self/clear_refs could not reset the peak RSS; growth is then "
              "measured from process start")

    print(f"\n{'ratio':42s} {'top':>10s} {'bottom':>10s} {'ratio':>8s} {'paired':>8s}")
    lines = []
    pairs = [("step time FSDP/DDP (Runner)", "step", "fsdp", "ddp"),
             ("step time raytrainer FSDP / raw FSDP2", "step", "fsdp", "raw"),
             ("params+optim bytes per rank FSDP/DDP", "held", "fsdp", "ddp"),
             ("peak RSS per rank FSDP/DDP", "peak", "fsdp", "ddp"),
             ("RSS growth in training FSDP/DDP", "growth", "fsdp", "ddp"),
             ("peak RSS raytrainer FSDP / raw FSDP2", "peak", "fsdp", "raw"),
             ("save (sync) sharded/full", "save", "fsdp", "ddp"),
             ("resume (load) sharded/full", "load", "fsdp", "ddp"),
             ("async stall sharded/full", "async_stall", "fsdp", "ddp")]
    for label, key, top, bottom in pairs:
        if not results.get(top) or not results.get(bottom) or key not in results[top][0] \
                or key not in results[bottom][0]:
            continue
        a, b, ratio, paired = ratio_row(results, key, top, bottom)
        scale = MB if key in ("held", "peak", "growth") else 1.0
        print(f"{label:42s} {a / scale:10.3f} {b / scale:10.3f} {ratio:8.3f} {paired:8.3f}")
        lines.append(f"{label}: {ratio:.3f} (paired {paired:.3f})")
    for side, name in (("fsdp", "sharded"), ("ddp", "full")):
        if results.get(side) and "async_stall" in results[side][0]:
            stall = median([s["async_stall"] for s in results[side]])
            save = median([s["save"] for s in results[side]])
            paired = median([s["stall_ratio"] for s in results[side]])
            line = (f"async stall / sync save, {name}: {stall / save:.3f} (paired {paired:.3f}; "
                    f"{stall:.3f} s vs {save:.3f} s)")
            print(line)
            lines.append(line)
    print("\nSUMMARY")
    for line in lines:
        print("  " + line)


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=None,
                        help="sessions per side, interleaved (default 3; --quick 1)")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed iterations per session (default 10; --quick 3)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed first iterations (default 3; --quick 1)")
    parser.add_argument("--ckpt-repeats", type=int, default=None,
                        help="timed save/async save/resume rounds per Runner session (default "
                             "2; --quick 1; 0 skips checkpoints)")
    parser.add_argument("--batch-size", type=int, default=4, help="sequences per rank")
    parser.add_argument("--sides", default=",".join(SIDES),
                        help=f"which sides to run (default {','.join(SIDES)})")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke check: a 0.1M-parameter model, 1 repeat, 3 steps")
    parser.add_argument("--fresh-memory", action="store_true",
                        help="run the ranks with MALLOC_MMAP_THRESHOLD_=1048576, so freed "
                             "tensors go back to the system and RSS follows live memory")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    args.steps = args.steps or (3 if args.quick else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    ckpt_repeats = args.ckpt_repeats if args.ckpt_repeats is not None else \
        (1 if args.quick else 2)
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    if not set(sides) <= set(SIDES) or repeats < 1 or args.steps < 2 or args.warmup < 1:
        parser.error(f"--sides takes {SIDES}; --repeats >= 1, --steps >= 2, --warmup >= 1")
    if args.fresh_memory:
        os.environ["MALLOC_MMAP_THRESHOLD_"] = "1048576"  # read by the spawned ranks at start
    model = QUICK_SIZE if args.quick else FULL_SIZE
    out_dir = tempfile.mkdtemp(prefix="raytrainer-fsdp-bench-")
    print(f"FSDP vs DDP benchmark: {WORLD} gloo ranks, 1 torch thread each, sides {sides}, "
          f"{repeats} repeats, {args.warmup}+{args.steps} steps, {ckpt_repeats} checkpoint "
          f"rounds, model {model}, batch {args.batch_size}x{model['block_size']}/rank"
          f"{', fresh memory' if args.fresh_memory else ''}, work dir {out_dir} (cpu count "
          f"{os.cpu_count()}, torch {torch.__version__}, python {sys.version.split()[0]})",
          flush=True)
    results: dict[str, list[dict]] = {side: [] for side in sides}
    started = time.perf_counter()
    try:
        for rep in range(repeats):
            order = sides[rep % len(sides):] + sides[:rep % len(sides)]
            for side in order:
                job = dict(side=side, repeat=rep, model=model, batch_size=args.batch_size,
                           steps=args.steps, warmup=args.warmup,
                           ckpt_repeats=ckpt_repeats if side != "raw" else 0)
                begin = time.perf_counter()
                figures = session_figures(run_session(job, out_dir))
                results[side].append(figures)
                extra = "".join(f" {key} {figures[key]:.3f} s" for key in
                                ("save", "async_stall", "load") if key in figures)
                print(f"  repeat {rep + 1}/{repeats} {side:4s}: {figures['step']:.3f} s/it, "
                      f"held {figures['held'] / MB:.0f} MB, peak {figures['peak'] / MB:.0f} MB, "
                      f"growth {figures['growth'] / MB:.0f} MB{extra} "
                      f"({time.perf_counter() - begin:.0f} s)", flush=True)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    print_report(results, repeats, args)
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
