"""What the Ray workers of ``benchmarks/ray_overhead.py`` import: the workload (synthetic
dataset, MLP), the per-rank :class:`Probe` that records iteration times, and the bare side, a
hand-written DDP loop run by a plain ``ray.train.torch.TorchTrainer``.

This module must not import raytrainer: the bare side's workers and the ``python -c`` command
of part (b) import it, and their start-up time is part of what is measured. The raytrainer
side's hook (``ProbeHook``) lives in ``ray_overhead.py``.

Files a run writes into its ``out_dir`` (every rank, every attempt):

- ``events_rank<r>.jsonl``: one line per attempt, written as soon as the attempt's first
  iteration is done: ``time`` (``time.time()`` after that iteration), ``start_iter`` (the
  iteration the attempt resumed from), ``pid``, and for a breakdown of the start-up
  ``process_start`` (when the worker process was created) and ``setup_done`` (when the loop
  was ready to train: model, optimizer, data and any checkpoint loaded);
- ``stamps_rank<r>.json``: at the end, ``time.perf_counter()`` after every iteration of the
  last attempt, and the worker's torch thread count;
- ``kill.pid``: written by the rank that is to be killed (part c), holding its pid.
"""
from __future__ import annotations

import json
import os
import tempfile
import time

import torch

from benchmarks.startup_marks import process_start_time
from benchmarks.workloads import SyntheticDataset, make_mlp

LR = 0.01
MOMENTUM = 0.9
KILL_MARKER = "kill.pid"


class Probe:
    """Records one rank's iterations; optionally hands its pid to the benchmark's killer.

    Args:
        out_dir: Where the files described in the module docstring go.
        rank: This worker's rank.
        kill_at: After this many iterations (counted from the start of training, once per
            run), rank ``kill_rank`` writes its pid to ``kill.pid`` and waits to be killed.
        kill_rank: The rank that is killed.
    """

    def __init__(self, out_dir: str, rank: int, kill_at: int | None = None, kill_rank: int = 1):
        self.out_dir, self.rank = out_dir, rank
        self.kill_at = kill_at if rank == kill_rank else None
        self.start_iter = 0
        self.stamps: list[float] = []

    def start(self, start_iter: int) -> None:
        """Call when the loop is ready to run its first iteration."""
        self.start_iter = start_iter
        self.stamps = []
        self.setup_done = time.time()

    def iteration_done(self, done: int) -> None:
        """Call after every iteration with the number of iterations done so far."""
        self.stamps.append(time.perf_counter())
        if len(self.stamps) == 1:
            record = dict(time=time.time(), start_iter=self.start_iter, pid=os.getpid(),
                          process_start=process_start_time(),
                          setup_done=self.setup_done)
            with open(os.path.join(self.out_dir, f"events_rank{self.rank}.jsonl"), "a") as f:
                f.write(json.dumps(record) + "\n")
        if done == self.kill_at:
            self._wait_to_be_killed()

    def _wait_to_be_killed(self) -> None:
        marker = os.path.join(self.out_dir, KILL_MARKER)
        if os.path.exists(marker):
            return  # killed once already: the resumed attempt goes on
        with open(marker + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.replace(marker + ".tmp", marker)
        time.sleep(300)  # the SIGKILL arrives within milliseconds

    def finish(self) -> None:
        record = dict(stamps=self.stamps, start_iter=self.start_iter,
                      threads=torch.get_num_threads(), pid=os.getpid())
        with open(os.path.join(self.out_dir, f"stamps_rank{self.rank}.json"), "w") as f:
            json.dump(record, f)


def _save_checkpoint(model, optimizer, done: int, rank: int) -> None:
    """Rank 0 writes model, optimizer and iteration; every rank reports (a barrier)."""
    import ray.train

    metrics = {"iter": done}
    if rank != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as directory:
        state = dict(model=model.module.state_dict(), optimizer=optimizer.state_dict(),
                     iter=done)
        torch.save(state, os.path.join(directory, "state.pt"))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))


def _restore(model, optimizer) -> int:
    """Load Ray's latest checkpoint, if any; returns the iteration it was taken at."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as directory:
        state = torch.load(os.path.join(directory, "state.pt"), weights_only=True)
    model.module.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["iter"])


def bare_train_loop_per_worker(config: dict) -> None:
    """A hand-written DDP loop: the bare side's ``train_loop_per_worker``.

    ``config``: ``hidden``, ``batch_size``, ``iters``, ``out_dir``; optional
    ``checkpoint_interval`` (save and report a checkpoint every this many iterations, and
    resume from Ray's latest checkpoint on a restart) and ``kill_at``. Reports to Ray once, at
    the end (and with each checkpoint).
    """
    import ray.train
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader, DistributedSampler

    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    probe = Probe(config["out_dir"], rank, config.get("kill_at"))
    torch.manual_seed(0)
    model = DistributedDataParallel(make_mlp(tuple(config["hidden"])))
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    dataset = SyntheticDataset()
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True,
                                 seed=0)
    loader = DataLoader(dataset, batch_size=config["batch_size"], sampler=sampler)
    iters, interval = config["iters"], config.get("checkpoint_interval")
    done = _restore(model, optimizer) if interval else 0
    probe.start(done)
    model.train()
    while done < iters:
        epoch, skip = divmod(done, len(loader))
        sampler.set_epoch(epoch)
        for index, batch in enumerate(loader):
            if index < skip:
                continue  # resuming mid-epoch: in-memory batches are cheap to replay
            loss = F.cross_entropy(model(batch["inputs"]), batch["data_samples"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            done += 1
            if interval and done % interval == 0:
                _save_checkpoint(model, optimizer, done, rank)
            probe.iteration_done(done)
            if done == iters:
                break
    probe.finish()
    ray.train.report({"iter": done, "loss": loss.item()})


def fit_torch_trainer(train_fn, config: dict, name: str, storage_path: str,
                      max_failures: int = 0, num_workers: int = 2):
    """Run ``train_fn`` on a plain ``TorchTrainer`` (gloo, CPU workers); joins ``RAY_ADDRESS``
    (or the cluster this process is connected to) or starts a local Ray instance."""
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    if not ray.is_initialized():
        ray.init()
    trainer = TorchTrainer(
        train_fn, train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=False),
        torch_config=TorchConfig(backend="gloo"),
        run_config=RunConfig(name=name, storage_path=storage_path,
                             failure_config=FailureConfig(max_failures=max_failures)))
    return trainer.fit()


def run_bare(config: dict, storage_path: str, max_failures: int = 0):
    """The bare side: :func:`bare_train_loop_per_worker` with ``config`` on 2 workers."""
    name = f"bare-{os.path.basename(os.path.dirname(config['out_dir'].rstrip('/')))}"
    return fit_torch_trainer(bare_train_loop_per_worker, config, name, storage_path,
                             max_failures)
