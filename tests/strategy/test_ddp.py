"""DDPStrategy on two real gloo ranks: its DDP options reach DistributedDataParallel and change
what training does; MMEngine's ``model_wrapper_cfg``/``find_unused_parameters`` map onto it."""
from __future__ import annotations

import os
import traceback

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn as nn

from raytrainer.model import BaseModel
from raytrainer.registry import MODELS
from raytrainer.runner import Runner
from raytrainer.strategy import DDPStrategy, ddp_strategy_cfg
from tests.runner.helpers import runner_kwargs

from ..gloo_process import free_port

pytestmark = pytest.mark.slow  # every test here starts processes

WORLD_SIZE = 2


@MODELS.register_module(force=True)
class HalfUsedMLP(BaseModel):
    """Digits classifier with a branch that never takes part in the loss."""

    def __init__(self, data_preprocessor=None):
        super().__init__(data_preprocessor)
        torch.manual_seed(0)
        self.used = nn.Linear(64, 10)
        self.unused = nn.Linear(64, 10)

    def forward(self, inputs, data_samples=None, mode="tensor"):
        logits = self.used(inputs.float().flatten(1))
        if mode == "loss":
            return dict(loss=nn.functional.cross_entropy(logits, torch.as_tensor(data_samples)))
        return logits



class _TwoBranches(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.used = nn.Linear(4, 2)
        self.unused = nn.Linear(4, 2)

    def forward(self, x):
        return self.used(x)


def _step_twice(ddp_model: nn.Module, rank: int) -> None:
    optimizer = torch.optim.SGD(ddp_model.parameters(), lr=0.1)
    for step in range(2):
        optimizer.zero_grad()
        x = torch.full((4, 4), float(rank + step))
        ddp_model(x).sum().backward()
        optimizer.step()


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD_SIZE), LOCAL_RANK=str(rank))
    result: dict = {}
    try:
        strategy = DDPStrategy(launcher="pytorch", backend="gloo")
        strategy.setup()
        # Without find_unused_parameters, DDP fails at the step after one that left a
        # parameter without gradient; with it, training goes on.
        try:
            _step_twice(strategy.prepare_model(_TwoBranches()), rank)
            result["plain"] = "trained"
        except RuntimeError as exc:
            result["plain"] = str(exc)
        found = DDPStrategy(launcher="pytorch", find_unused_parameters=True,
                            gradient_as_bucket_view=True)
        found.setup()
        model = found.prepare_model(_TwoBranches())
        _step_twice(model, rank)
        result["found_weight"] = model.module.used.weight.detach().clone()
        result["found_flags"] = (model.find_unused_parameters, model.gradient_as_bucket_view)
        static = DDPStrategy(launcher="pytorch", static_graph=True, broadcast_buffers=False)
        static.setup()
        model = static.prepare_model(_TwoBranches())
        _step_twice(model, rank)
        result["static_flags"] = (model.static_graph, model.broadcast_buffers)
        result["static_weight"] = model.module.used.weight.detach().clone()
        # An MMEngine config's wrapper options reach the Runner's default DDP strategy.
        runner = Runner(**runner_kwargs(
            f"{out_dir}/work", epochs=1, val=False, launcher="pytorch",
            model=dict(type="HalfUsedMLP"),
            model_wrapper_cfg=dict(type="MMDistributedDataParallel",
                                   find_unused_parameters=True)))
        runner.train()
        result["runner_flags"] = runner.model.find_unused_parameters
        result["runner_weight"] = runner.model.module.used.weight.detach().clone()
    except BaseException:
        result["error"] = traceback.format_exc()
    finally:
        torch.save(result, f"{out_dir}/rank{rank}.pt")
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(free_port(), str(out)), nprocs=WORLD_SIZE, join=True)
    results = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD_SIZE)]
    for result in results:
        assert "error" not in result, result["error"]
    return results


def _expected_weight() -> torch.Tensor:
    """The single-process equivalent: SGD on the rank-averaged gradient."""
    model = _TwoBranches()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(2):
        optimizer.zero_grad()
        loss = sum(model(torch.full((4, 4), float(rank + step))).sum()
                   for rank in range(WORLD_SIZE)) / WORLD_SIZE
        loss.backward()
        optimizer.step()
    return model.used.weight.detach()


def test_unused_parameters_fail_without_the_option(ranks):
    for result in ranks:
        assert "unused" in result["plain"].lower() or "find_unused_parameters" in result["plain"]


def test_find_unused_parameters_trains_like_one_process(ranks):
    expected = _expected_weight()
    for result in ranks:
        assert result["found_flags"] == (True, True)
        torch.testing.assert_close(result["found_weight"], expected)


def test_static_graph_trains_like_one_process(ranks):
    expected = _expected_weight()
    for result in ranks:
        assert result["static_flags"] == (True, False)
        torch.testing.assert_close(result["static_weight"], expected)


def test_mmengine_model_wrapper_cfg_reaches_the_runners_ddp(ranks):
    assert ranks[0]["runner_flags"] is True
    torch.testing.assert_close(ranks[0]["runner_weight"], ranks[1]["runner_weight"])


def test_ddp_strategy_cfg_maps_mmengine_keys():
    assert ddp_strategy_cfg(dict(type="MMDistributedDataParallel", static_graph=True),
                            find_unused_parameters=True, launcher="ray") == dict(
        type="DDPStrategy", launcher="ray", static_graph=True, find_unused_parameters=True)
    with pytest.raises(ValueError, match="MMFullyShardedDataParallel.*not supported"):
        ddp_strategy_cfg(dict(type="MMFullyShardedDataParallel"))
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['detect_anomalous_params'\]"):
        ddp_strategy_cfg(dict(detect_anomalous_params=True))


def test_strategy_and_wrapper_options_together_are_refused(tmp_path):
    with pytest.raises(ValueError, match="either in 'strategy' or in 'model_wrapper_cfg'"):
        Runner(**runner_kwargs(tmp_path, epochs=1, val=False,
                               strategy=dict(type="SingleDeviceStrategy"),
                               find_unused_parameters=True))
