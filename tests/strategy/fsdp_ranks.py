"""Runs one rank of a small digits Runner under DDP or FSDP (gloo, ``launcher='pytorch'``), for
the FSDP tests. ``spawn(world_size, case, out_dir)`` starts the ranks as real processes and
returns what rank 0 wrote."""
from __future__ import annotations

import json
import os
import traceback

import torch
import torch.multiprocessing as mp
import torch.nn as nn

from raytrainer.hooks import Hook
from raytrainer.model import BaseModel
from raytrainer.registry import HOOKS, MODELS
from raytrainer.runner import Runner
from tests.gloo_process import free_port
from tests.runner.helpers import digits_loader


class Block(nn.Module):
    """A repeated unit FSDP shards on its own."""

    def __init__(self, width: int):
        super().__init__()
        self.linear = nn.Linear(width, width)

    def forward(self, x):
        return torch.relu(self.linear(x)) + x


@MODELS.register_module(force=True)
class BlockClassifier(BaseModel):
    def __init__(self, width: int = 32, depth: int = 2, data_preprocessor=None):
        super().__init__(data_preprocessor)
        self.stem = nn.Linear(64, width)
        self.blocks = nn.Sequential(*[Block(width) for _ in range(depth)])
        self.head = nn.Linear(width, 10)

    def forward(self, inputs, data_samples=None, mode="tensor"):
        logits = self.head(self.blocks(self.stem(inputs.flatten(1))))
        if mode == "loss":
            return dict(loss=nn.functional.cross_entropy(logits, data_samples))
        if mode == "predict":
            return logits, data_samples
        return logits


@HOOKS.register_module(force=True)
class LossRecorder(Hook):
    """Keeps every training loss (rank-local) in ``runner.recorded_losses``."""

    priority = "LOWEST"

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        runner.__dict__.setdefault("recorded_losses", []).append(float(outputs["loss"].detach()))
        if "train/grad_norm" in runner.message_hub.log_scalars:
            runner.__dict__.setdefault("recorded_norms", []).append(
                runner.message_hub.get_scalar("train/grad_norm").current())



def strategy_cfg(kind: str, **options) -> dict:
    if kind == "fsdp":
        return dict(type="FSDPStrategy", launcher="pytorch", backend="gloo",
                    shard_modules=["Block"], **options)
    return dict(type="DDPStrategy", launcher="pytorch", backend="gloo", **options)


def runner_cfg(case: dict) -> dict:
    work_dir = case["work_dir"]
    batch = case.get("batch_size", 32)
    optim = dict(optimizer=dict(type="AdamW", lr=case.get("lr", 0.01)))
    optim.update(case.get("optim_extra", {}))
    return dict(
        model=dict(type="BlockClassifier"),
        work_dir=work_dir,
        train_dataloader=digits_loader(batch_size=batch),
        train_cfg=dict(by_epoch=True, max_epochs=case.get("epochs", 1), val_interval=100),
        optim_wrapper=optim,
        randomness=dict(seed=0, deterministic=True),
        launcher="pytorch",
        strategy=strategy_cfg(case["strategy"], **case.get("strategy_options", {})),
        experiment_name=case.get("name", "fsdp_test"),
        timestamp=case.get("timestamp", "20260101_000000"),
        resume=case.get("resume", False),
        auto_scale_lr=case.get("auto_scale_lr"),
        default_hooks=dict(logger=dict(type="LoggerHook", interval=5),
                           checkpoint=dict(type="CheckpointHook", interval=case.get("interval", 1),
                                           by_epoch=case.get("by_epoch", True),
                                           save_last=case.get("save_last", True),
                                           async_save=case.get("async_save", False))),
        custom_hooks=[dict(type="LossRecorder")],
    )


def _full_state(runner) -> tuple[dict, dict]:
    """The full model and optimizer state (keyed by parameter name) on every rank."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    model = runner.strategy.unwrap(runner.model)
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_state_dict(model, runner.optim_wrapper.optimizer, options=options)


def _rank(rank: int, world: int, port: int, case: dict, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    result: dict = {}
    try:
        runner = Runner(**runner_cfg(case))
        if case.get("stop_after_load"):
            from raytrainer.runner import build

            runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
            runner.lr_scale_factor = build.scale_lr(runner, runner.optim_wrapper,
                                                    runner.auto_scale_lr)  # as train() does
            runner.checkpoints.load_or_resume()
            loop = runner.train_loop
            result["position"] = [loop.epoch, loop.iter, loop.inner_iter]
        else:
            runner.train()
            loop = runner.train_loop
            result["position"] = [loop.epoch, loop.iter, loop.inner_iter]
        if case.get("probe_guard") and rank == 0:
            from raytrainer.checkpoint import CheckpointError, full_state

            sharded = {"state_dict": runner.strategy.model_state_dict(runner.model)}
            target = os.path.join(out_dir, "guard")
            try:
                full_state.write_rank_files(target, sharded, rank)
                result["guard"] = "written"
            except CheckpointError as exc:
                result["guard"] = str(exc)
            result["guard_files"] = sorted(os.listdir(target)) if os.path.isdir(target) else []
        model_state, optim_state = _full_state(runner)
        result["losses"] = runner.__dict__.get("recorded_losses", [])
        result["norms"] = runner.__dict__.get("recorded_norms", [])
        result["resumed_from"] = runner.resumed_from
        result["lr"] = runner.optim_wrapper.optimizer.param_groups[0]["lr"]
        if rank == 0:
            torch.save({"model": model_state, "optim": optim_state},
                       os.path.join(out_dir, "state.pt"))
        torch.distributed.barrier()
    except BaseException:
        result["error"] = traceback.format_exc()
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)


def spawn(world: int, case: dict, out_dir: str) -> dict:
    """Run ``case`` on ``world`` gloo ranks; returns rank 0's result (``state`` loaded)."""
    os.makedirs(out_dir, exist_ok=True)
    mp.spawn(_rank, args=(world, free_port(), case, out_dir), nprocs=world)
    results = []
    for rank in range(world):
        with open(os.path.join(out_dir, f"rank{rank}.json")) as f:
            results.append(json.load(f))
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise AssertionError("a rank failed:\n" + "\n".join(errors))
    first = results[0]
    first["all"] = results
    first["state"] = torch.load(os.path.join(out_dir, "state.pt"), weights_only=True)
    return first
