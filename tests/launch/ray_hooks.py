"""Hooks the Ray tests put into runs; Ray workers import them (PYTHONPATH has the repo)."""
from __future__ import annotations

import json
import os
import time

import torch

from raytrainer import storage
from raytrainer.hooks import Hook
from raytrainer.model import unwrap_model


class RecordRank(Hook):
    """Every rank writes its identity at start and its final weights at the end."""

    priority = "LOWEST"

    def __init__(self, out_dir: str):
        self.out_dir = out_dir

    def before_train(self, runner) -> None:
        record = dict(rank=runner.rank, world_size=runner.world_size, seed=runner.seed,
                      timestamp=runner.timestamp, log_dir=runner.log_dir, pid=os.getpid(),
                      experiment_name=runner.experiment_name, start_iter=runner.iter,
                      resumed_from=runner.resumed_from)
        with open(os.path.join(self.out_dir, "attempts.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")

    def after_train(self, runner) -> None:
        state = unwrap_model(runner.model).state_dict()
        # FSDP: every rank gathers the full tensors (a collective all ranks make in order)
        state = {k: (v.full_tensor() if hasattr(v, "full_tensor") else v).cpu()
                 for k, v in state.items()}
        torch.save(state, os.path.join(self.out_dir, f"weights_rank{runner.rank}.pt"))
        storage.write_text(os.path.join(self.out_dir, f"done_rank{runner.rank}"), "1")


class ExposePidAt(Hook):
    """At iteration ``at_iter`` (once per run), rank ``rank`` writes its pid to ``marker`` for
    the test's killer thread and waits to be killed."""

    priority = "LOWEST"

    def __init__(self, marker: str, at_iter: int, rank: int = 1):
        self.marker, self.at_iter, self.rank = marker, at_iter, rank

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if runner.rank != self.rank or runner.iter + 1 != self.at_iter:
            return
        if os.path.exists(self.marker):
            return  # already killed once; the restarted run goes on
        with open(self.marker + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.replace(self.marker + ".tmp", self.marker)
        time.sleep(120)  # the SIGKILL arrives well before this ends


class RaiseOnBuild:
    """A model config ``type`` that records each build in ``log`` and raises ``error``;
    with ``attempts_failing=N`` only the first N builds per rank fail (then it builds
    ``real``)."""

    def __new__(cls, log: str, error: str, message: str, real: dict | None = None,
                attempts_failing: int | None = None):
        import builtins

        import ray.train

        from raytrainer.registry import MODELS, build_from_cfg

        rank = str(ray.train.get_context().get_world_rank())
        with open(log, "a") as f:
            f.write(f"{rank}\n")
        builds = [line.strip() for line in open(log)].count(rank)
        if attempts_failing is None or builds <= attempts_failing:
            raise getattr(builtins, error)(message)
        return build_from_cfg(dict(real), MODELS, key="model")
