"""LiveLrHook: a resumed optimizer continues at the config's base learning rate."""
from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch

from raytrainer.hooks import LiveLrHook


def test_rescales_every_group_and_the_schedulers_base_values():
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD([{"params": [model.weight]},
                                 {"params": [model.bias], "lr": 0.02}], lr=0.1)
    for group in optimizer.param_groups:  # as a resumed checkpoint left them mid-schedule
        group["initial_lr"] = group["lr"]
        group["lr"] *= 0.5
    scheduler = SimpleNamespace(param_name="lr", base_values=[0.1, 0.02])
    runner = SimpleNamespace(optim_wrapper=SimpleNamespace(optimizer=optimizer),
                             param_schedulers=[scheduler], logger=logging.getLogger("t"))
    LiveLrHook(lr=0.01).before_train(runner)
    groups = optimizer.param_groups
    assert [g["initial_lr"] for g in groups] == pytest.approx([0.01, 0.002])
    assert [g["lr"] for g in groups] == pytest.approx([0.005, 0.001])
    assert scheduler.base_values == pytest.approx([0.01, 0.002])
