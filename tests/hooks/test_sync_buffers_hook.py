"""SyncBuffersHook: BatchNorm statistics averaged across two real gloo ranks."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
import torch.nn as nn

from raytrainer.hooks.sync_buffers_hook import SyncBuffersHook
from raytrainer.registry import HOOKS

from ..gloo_process import free_port

WORLD_SIZE = 2


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))


def bn_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model[1].state_dict().items()}


def _worker(rank: int, port: int, out_dir: str) -> None:
    torch_dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                  world_size=WORLD_SIZE)
    try:
        model = make_model().train()
        generator = torch.Generator().manual_seed(rank)
        for _ in range(rank + 1):  # rank-specific statistics and batch counts (1 and 2)
            model(torch.randn(16, 4, generator=generator) + 5.0 * rank)
        runner = SimpleNamespace(model=model)
        hook = SyncBuffersHook()
        before = bn_state(model)
        hook.after_train_epoch(runner)
        after_epoch = bn_state(model)
        # A validation right after a training epoch must not reduce again; one without a
        # preceding epoch (iteration-based loops) must.
        model[1].running_mean.add_(float(rank))
        hook.before_val_epoch(runner)
        after_first_val = bn_state(model)
        hook.before_val_epoch(runner)
        after_second_val = bn_state(model)
        torch.save(dict(before=before, after_epoch=after_epoch, after_first_val=after_first_val,
                        after_second_val=after_second_val), f"{out_dir}/rank{rank}.pt")
    finally:
        torch_dist.destroy_process_group()



@pytest.mark.slow
def test_buffers_are_averaged_across_two_gloo_ranks(tmp_path):
    mp.spawn(_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True)
               for r in range(WORLD_SIZE)]
    before = [r["before"] for r in results]
    assert not torch.allclose(before[0]["running_mean"], before[1]["running_mean"])
    for result in results:
        after = result["after_epoch"]
        for key in ("running_mean", "running_var"):
            torch.testing.assert_close(after[key], (before[0][key] + before[1][key]) / 2)
        assert int(after["num_batches_tracked"]) == (1 + 2) // 2  # integer mean, truncated
    # After the epoch's sync the ranks were made to differ by +rank; the first validation
    # skipped the reduction, the second (no epoch in between) averaged again.
    first = [r["after_first_val"]["running_mean"] for r in results]
    torch.testing.assert_close(first[1] - first[0], torch.ones(3))
    second = [r["after_second_val"]["running_mean"] for r in results]
    torch.testing.assert_close(second[0], second[1])
    torch.testing.assert_close(second[0], (first[0] + first[1]) / 2)


def test_one_process_leaves_buffers_alone():
    model = make_model().train()
    model(torch.randn(8, 4))
    before = bn_state(model)
    hook = HOOKS.build(dict(type="SyncBuffersHook"))
    hook.after_train_epoch(SimpleNamespace(model=model))
    hook.before_val_epoch(SimpleNamespace(model=model))
    torch.testing.assert_close(bn_state(model), before)
