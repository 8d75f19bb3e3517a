"""Train the digits MLP in a fresh process; optionally die abruptly at an iteration.

Used by the exact-resume tests: ``python train_script.py WORK_DIR LOOP [--crash-at N]
[--resume] [--out weights.pt]``.
"""
import argparse
import hashlib
import json
import os
import sys

import torch

from raytrainer.hooks import Hook
from raytrainer.runner import Runner


class DieAt(Hook):
    """Ends the process without any clean-up right after iteration ``n`` (like a SIGKILL)."""

    priority = "LOWEST"

    def __init__(self, n):
        self.n = n

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.n:
            runner.wait_for_checkpoint()
            os._exit(17)


class TraceTo(Hook):
    """Appends, after every iteration, a digest of the weights, the optimizer state and the
    torch generator to a JSON-lines file, so two runs can be compared iteration by iteration
    (``benchmarks/resume_stress.py`` names the first iteration at which they differ)."""

    priority = "LOWEST"

    def __init__(self, path):
        self.path = path

    @staticmethod
    def _digest(tensors):
        digest = hashlib.sha1()
        for tensor in tensors:
            digest.update(tensor.detach().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        model = runner.strategy.unwrap(runner.model)
        optimizer = runner.optim_wrapper.optimizer
        moments = [value for state in optimizer.state.values() for value in state.values()
                   if isinstance(value, torch.Tensor)]
        record = {"iter": runner.iter + 1, "weights": self._digest(model.parameters()),
                  "optimizer": self._digest(moments),
                  "rng": self._digest([torch.get_rng_state()]),
                  "lr": optimizer.param_groups[0]["lr"]}
        with open(self.path, "a") as trace:
            trace.write(json.dumps(record) + "\n")


def build(work_dir, loop, resume, crash_at, async_save, trace=None, deterministic=False):
    sampler = "InfiniteSampler" if loop == "iter" else "DefaultSampler"
    train_cfg = dict(by_epoch=False, max_iters=100, val_interval=50) if loop == "iter" else \
        dict(by_epoch=True, max_epochs=3, val_interval=1)
    return Runner(
        model=dict(type="MLPClassifier", hidden_dims=(64,), dropout=0.2),
        work_dir=work_dir,
        train_dataloader=dict(batch_size=32, dataset=dict(type="DigitsDataset"),
                              sampler=dict(type=sampler, shuffle=True),
                              collate_fn=dict(type="default_collate")),
        train_cfg=train_cfg,
        optim_wrapper=dict(optimizer=dict(type="AdamW", lr=3e-3)),
        param_scheduler=[dict(type="LinearLR", start_factor=0.2, by_epoch=False, end=30),
                         dict(type="CosineAnnealingLR", by_epoch=False, begin=30, T_max=100)],
        val_dataloader=dict(batch_size=64, dataset=dict(type="DigitsDataset", split="val"),
                            sampler=dict(type="DefaultSampler", shuffle=False),
                            collate_fn=dict(type="default_collate")),
        val_cfg=dict(), val_evaluator=dict(type="Accuracy"),
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", by_epoch=False, interval=20,
                                           async_save=async_save),
                           logger=dict(type="LoggerHook", interval=25)),
        custom_hooks=([DieAt(crash_at)] if crash_at else []) + ([TraceTo(trace)] if trace else []),
        randomness=dict(seed=7, deterministic=deterministic), resume=resume,
        experiment_name="resume")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("work_dir")
    parser.add_argument("loop", choices=["epoch", "iter"])
    parser.add_argument("--crash-at", type=int, default=0)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--async-save", action="store_true")
    parser.add_argument("--out")
    parser.add_argument("--trace", help="append per-iteration digests to this file")
    parser.add_argument("--deterministic", action="store_true")
    args = parser.parse_args()
    runner = build(args.work_dir, args.loop, args.resume, args.crash_at, args.async_save,
                   args.trace, args.deterministic)
    model = runner.train()
    if args.out:
        torch.save({"model": model.state_dict(),
                    "optimizer": runner.optim_wrapper.state_dict(),
                    "resumed_from": runner.resumed_from}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
