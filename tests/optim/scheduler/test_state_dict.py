"""Scheduler state dicts: plain data that survives ``torch.load(weights_only=True)`` and resumes
the exact schedule."""
from __future__ import annotations

import io

import pytest
import torch

import raytrainer.optim.scheduler as ours

from .cases import ALL_CASES, PLATEAU_CASES, PLATEAU_METRICS
from .helpers import build, make_optimizer, plateau_trajectory, trajectory

# MMEngine's optimizer wrapper is not weights_only-loadable itself; its state is the
# optimizer's, which the cases with a plain optimizer already cover.
RESUMABLE = sorted(name for name, case in ALL_CASES.items() if case[0] != "wrapper")


def save_and_load(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def resume(kind: str, specs: list, checkpoint: dict) -> tuple:
    """Rebuild from the config, then load the checkpoint, in the order a runner does."""
    optimizer = make_optimizer(kind)
    schedulers = [build(spec, optimizer) for spec in specs]
    optimizer.load_state_dict(checkpoint["optimizer"])
    for scheduler, state in zip(schedulers, checkpoint["schedulers"]):
        scheduler.load_state_dict(state)
    return optimizer, schedulers


@pytest.mark.parametrize("case", RESUMABLE)
def test_resume_through_weights_only_load_continues_identically(case):
    kind, specs, steps = ALL_CASES[case]
    optimizer = make_optimizer(kind)
    uninterrupted = trajectory(optimizer, [build(s, optimizer) for s in specs], steps)

    split = steps // 2
    optimizer = make_optimizer(kind)
    schedulers = [build(spec, optimizer) for spec in specs]
    trajectory(optimizer, schedulers, split)
    checkpoint = save_and_load({"optimizer": optimizer.state_dict(),
                                "schedulers": [s.state_dict() for s in schedulers]})

    optimizer, schedulers = resume(kind, specs, checkpoint)
    assert trajectory(optimizer, schedulers, steps - split) == uninterrupted[split:]


@pytest.mark.parametrize("case", sorted(c for c in PLATEAU_CASES if "wrapper" not in c))
def test_reduce_on_plateau_resumes_identically(case):
    kind, spec = PLATEAU_CASES[case]
    optimizer = make_optimizer(kind)
    uninterrupted = plateau_trajectory(optimizer, build(spec, optimizer), PLATEAU_METRICS)

    split = 9
    optimizer = make_optimizer(kind)
    scheduler = build(spec, optimizer)
    plateau_trajectory(optimizer, scheduler, PLATEAU_METRICS[:split])
    checkpoint = save_and_load({"optimizer": optimizer.state_dict(),
                                "schedulers": [scheduler.state_dict()]})

    optimizer, (scheduler,) = resume(kind, [spec], checkpoint)
    resumed = plateau_trajectory(optimizer, scheduler, PLATEAU_METRICS[split:])
    assert resumed == uninterrupted[split:]


def test_state_dict_holds_no_optimizer_and_restores_hyper_parameters():
    optimizer = make_optimizer("sgd")
    scheduler = ours.MultiStepLR(optimizer, milestones=[2, 2, 5], gamma=0.5)
    state = scheduler.state_dict()
    assert "optimizer" not in state
    assert state["milestones"] == {2: 2, 5: 1} and type(state["milestones"]) is dict
    assert state["last_step"] == 0 and state["base_values"] == [0.05, 0.01]

    other = ours.MultiStepLR(make_optimizer("sgd"), milestones=[9], gamma=0.1)
    other.load_state_dict(save_and_load(state))
    assert other.milestones == {2: 2, 5: 1} and other.gamma == 0.5
    assert other.optimizer is not optimizer


def test_one_cycle_state_names_its_anneal_strategy():
    scheduler = ours.OneCycleLR(make_optimizer("sgd"), eta_max=0.1, total_steps=10,
                                anneal_strategy="linear")
    state = scheduler.state_dict()
    assert state["anneal_strategy"] == "linear" and "anneal_func" not in state
    assert scheduler.anneal_func(0.0, 1.0, 0.25) == 0.25
