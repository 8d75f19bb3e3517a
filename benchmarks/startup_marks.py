"""Time marks for ``benchmarks/startup.py``, written by the processes it starts (the driver and
every Ray worker).

Stdlib only at module level: a Ray worker unpickles the bare side's loop from here, and what it
imports is part of what is measured. Each mark is one JSON line ``{"name", "rank", "time"}``
(``time.time()``) appended to ``$STARTUP_MARKS`` (a file per measured process; Ray's workers
inherit the variable from the driver that started the instance).
"""
from __future__ import annotations

import json
import os
import time

ENV = "STARTUP_MARKS"


def mark(name: str, rank: int | None = None, at: float | None = None) -> None:
    """Append one mark (now, or ``at``) to ``$STARTUP_MARKS``; nothing when it is unset."""
    path = os.environ.get(ENV)
    if not path:
        return
    line = json.dumps(dict(name=name, rank=rank, time=time.time() if at is None else at))
    with open(path, "a") as f:
        f.write(line + "\n")


def read_marks(path: str) -> dict[str, float]:
    """``name`` (``name.rank`` for a worker's mark) -> time; the first mark of a name wins."""
    marks: dict[str, float] = {}
    with open(path) as f:
        for line in f:
            record = json.loads(line)
            key = record["name"] if record["rank"] is None else \
                f"{record['name']}.{record['rank']}"
            marks.setdefault(key, record["time"])
    return marks


def process_start_time() -> float:
    """``time.time()`` when this process was created (Linux ``/proc``; 10 ms resolution)."""
    with open("/proc/self/stat") as f:
        ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))


def _rank() -> int:
    import ray.train

    return ray.train.get_context().get_world_rank()


def _entered() -> int:
    rank = _rank()
    mark("worker_process", rank, process_start_time())
    mark("loop_entered", rank)
    return rank


def _barrier(rank: int) -> None:
    import torch.distributed as dist

    dist.barrier()
    mark("first_collective", rank)


def patch_ray_init() -> None:
    """Mark before and after every ``ray.init`` of this process."""
    import ray

    init = ray.init

    def timed_init(*args, **kwargs):
        mark("ray_init_start")
        try:
            return init(*args, **kwargs)
        finally:
            mark("ray_init_done")

    ray.init = timed_init


def patch_fit() -> None:
    """Mark when the driver calls ``fit()`` of a Ray Train V2 trainer."""
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    fit = DataParallelTrainer.fit

    def timed_fit(self, *args, **kwargs):
        mark("fit_start")
        return fit(self, *args, **kwargs)

    DataParallelTrainer.fit = timed_fit


# ---- the bare side ---------------------------------------------------------------------------

def bare_loop_per_worker(config: dict) -> None:
    """One trivial DDP step: the imports it needs, a barrier, one forward/backward/step."""
    rank = _entered()
    import torch
    from torch.nn.parallel import DistributedDataParallel

    mark("imports_done", rank)
    _barrier(rank)
    model = DistributedDataParallel(torch.nn.Linear(4, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.ones(8, 4)).sum().backward()
    optimizer.step()
    mark("first_iter", rank)


def bare_main(num_workers: int, storage_path: str) -> None:
    """The bare driver: a private local instance and a ``TorchTrainer`` doing one step."""
    mark("driver_start")
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    patch_ray_init()
    patch_fit()
    ray.init(address="local")
    trainer = TorchTrainer(
        bare_loop_per_worker, scaling_config=ScalingConfig(num_workers=num_workers),
        torch_config=TorchConfig(backend="gloo"),
        run_config=RunConfig(name="bare", storage_path=storage_path))
    trainer.fit()
    ray.shutdown()


# ---- the raytrainer side ---------------------------------------------------------------------

def raytrainer_loop_per_worker(config: dict) -> None:
    """raytrainer's ``train_loop_per_worker``, with marks: entered, raytrainer's worker module
    imported, a barrier, then the real loop (``StartupHook`` marks its first iteration)."""
    rank = _entered()
    from raytrainer.launch.worker.loop import train_loop_per_worker

    mark("imports_done", rank)
    _barrier(rank)
    train_loop_per_worker(config)


def raytrainer_main(argv: list[str]) -> int:
    """``raytrainer <argv>`` with marks, the workers running :func:`raytrainer_loop_per_worker`."""
    mark("driver_start")
    patch_ray_init()
    patch_fit()
    import raytrainer.launch.driver.run as run
    from raytrainer.cli import main

    run.train_loop_per_worker = raytrainer_loop_per_worker
    return main(argv)
