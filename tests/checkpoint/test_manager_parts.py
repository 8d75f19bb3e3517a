"""CheckpointManager on explicit parts: save and resume a checkpoint without building a Runner."""
from __future__ import annotations

import logging
from types import SimpleNamespace

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from raytrainer.checkpoint import CheckpointManager
from raytrainer.checkpoint.parts import LoadRequest
from raytrainer.dataset import DefaultSampler
from raytrainer.logging import MessageHub
from raytrainer.optim import OptimWrapper, StepLR
from raytrainer.strategy import SingleDeviceStrategy


class _Loop:
    """The loop progress a checkpoint holds: counters and a dataloader with a sampler."""

    def __init__(self, seed: int):
        data = TensorDataset(torch.arange(12.0).reshape(6, 2), torch.zeros(6))
        self.dataloader = DataLoader(data, batch_size=2,
                                     sampler=DefaultSampler(data, shuffle=True, seed=seed))
        self.epoch, self.iter, self.inner_iter = 0, 0, 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "iter": self.iter, "inner_iter": self.inner_iter}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.iter, self.inner_iter = state["epoch"], state["iter"], state["inner_iter"]


class _Parts(SimpleNamespace):
    """Everything :class:`raytrainer.checkpoint.parts.TrainingParts` names, and nothing else."""

    def __init__(self, work_dir: str, name: str, lr: float):
        torch.manual_seed(len(name))  # each run starts from other weights
        model = nn.Linear(2, 2)
        wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9))
        loop = _Loop(seed=7)
        super().__init__(
            model=model, strategy=SingleDeviceStrategy(device="cpu"), optim_wrapper=wrapper,
            param_schedulers=[StepLR(wrapper, step_size=1, gamma=0.5, by_epoch=False)],
            lr_scale_factor=None, message_hub=MessageHub.get_instance(name),
            logger=logging.getLogger(f"test-{name}"), cfg=None, train_loop_or_none=loop,
            train_loop=loop, seed=7, deterministic=False, timestamp="20260101_000000",
            experiment_name=name, work_dir=work_dir, rank=0, world_size=1, hooks=[],
            lease=None)
        self.hook_calls: list[str] = []

    def build_optim_wrapper(self, optim_wrapper):
        return optim_wrapper

    def call_hook(self, fn_name: str, **kwargs) -> None:
        self.hook_calls.append(fn_name)


def _train_steps(parts: _Parts, steps: int) -> None:
    for _ in range(steps):
        loss = parts.model(torch.ones(4, 2)).pow(2).sum()
        parts.optim_wrapper.update_params(loss)
        for scheduler in parts.param_schedulers:
            scheduler.step()
        parts.train_loop.iter += 1
        parts.train_loop.inner_iter += 1
    parts.message_hub.update_info("last_note", "after three steps")


def test_save_and_resume_without_a_runner(tmp_path):
    saved = _Parts(str(tmp_path), "saved-run", lr=0.1)
    _train_steps(saved, 3)
    location = CheckpointManager(saved).save(str(tmp_path / "checkpoints"), "iter_3")
    expected_rng = torch.rand(3)  # what the saved run draws next

    resumed = _Parts(str(tmp_path), "resumed-run", lr=0.1)
    assert not torch.equal(resumed.model.weight, saved.model.weight)
    manager = CheckpointManager(resumed, LoadRequest(resume=location))
    manager.load_or_resume()

    assert manager.resumed_from == location
    assert manager.lineage == "20260101_000000"
    for name, value in saved.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value), name
    saved_state = saved.optim_wrapper.state_dict()["state"]
    resumed_state = resumed.optim_wrapper.state_dict()["state"]
    for key, state in saved_state.items():
        assert torch.equal(resumed_state[key]["momentum_buffer"], state["momentum_buffer"])
    assert resumed.optim_wrapper.get_lr() == saved.optim_wrapper.get_lr() == {"lr": [0.0125]}
    assert resumed.param_schedulers[0].state_dict() == saved.param_schedulers[0].state_dict()
    assert resumed.train_loop.state_dict() == {"epoch": 0, "iter": 3, "inner_iter": 3}
    assert resumed.message_hub.get_info("last_note") == "after three steps"
    assert torch.equal(torch.rand(3), expected_rng)  # the RNG continues where it was saved
    assert resumed.hook_calls == ["after_load_checkpoint"]
    assert saved.hook_calls == ["before_save_checkpoint"]
