"""The LR schedulers against ``torch.optim.lr_scheduler`` where both define the same schedule.

MMEngine's windows end one step later than torch's ``total_iters``: a schedule over
``end=E`` reaches its final factor at step ``E - 1``, where torch's ``total_iters=E - 1`` does.
"""
from __future__ import annotations

import pytest
import torch
from torch.optim import lr_scheduler as torch_sched

import raytrainer.optim.scheduler as ours

from .helpers import make_optimizer

STEPS = 30

CASES = {
    "step": (lambda o: ours.StepLR(o, step_size=4, gamma=0.5),
             lambda o: torch_sched.StepLR(o, step_size=4, gamma=0.5)),
    "multistep": (lambda o: ours.MultiStepLR(o, milestones=[3, 7, 7, 20], gamma=0.3),
                  lambda o: torch_sched.MultiStepLR(o, milestones=[3, 7, 7, 20], gamma=0.3)),
    "exponential": (lambda o: ours.ExponentialLR(o, gamma=0.9),
                    lambda o: torch_sched.ExponentialLR(o, gamma=0.9)),
    "cosine": (lambda o: ours.CosineAnnealingLR(o, T_max=9, eta_min=1e-3),
               lambda o: torch_sched.CosineAnnealingLR(o, T_max=9, eta_min=1e-3)),
    "linear": (lambda o: ours.LinearLR(o, start_factor=0.1, end=8),
               lambda o: torch_sched.LinearLR(o, start_factor=0.1, total_iters=7)),
    "linear-decay": (lambda o: ours.LinearLR(o, start_factor=1.0, end_factor=0.2, end=11),
                     lambda o: torch_sched.LinearLR(o, start_factor=1.0, end_factor=0.2,
                                                    total_iters=10)),
    "constant": (lambda o: ours.ConstantLR(o, factor=0.25, end=6),
                 lambda o: torch_sched.ConstantLR(o, factor=0.25, total_iters=5)),
    "poly": (lambda o: ours.PolyLR(o, power=2.0, end=13),
             lambda o: torch_sched.PolynomialLR(o, total_iters=12, power=2.0)),
    "onecycle": (lambda o: ours.OneCycleLR(o, eta_max=0.1, total_steps=STEPS),
                 lambda o: torch_sched.OneCycleLR(o, max_lr=0.1, total_steps=STEPS,
                                                  cycle_momentum=False)),
    "onecycle-3phase-linear": (
        lambda o: ours.OneCycleLR(o, eta_max=[0.2, 0.05], total_steps=STEPS, pct_start=0.4,
                                  anneal_strategy="linear", div_factor=10.0,
                                  final_div_factor=100.0, three_phase=True),
        lambda o: torch_sched.OneCycleLR(o, max_lr=[0.2, 0.05], total_steps=STEPS,
                                         pct_start=0.4, anneal_strategy="linear",
                                         div_factor=10.0, final_div_factor=100.0,
                                         three_phase=True, cycle_momentum=False)),
}


def lrs_per_step(build_scheduler) -> list[list[float]]:
    optimizer = make_optimizer("sgd")
    scheduler = build_scheduler(optimizer)
    values = [[group["lr"] for group in optimizer.param_groups]]
    for _ in range(STEPS):
        optimizer.step()
        scheduler.step()
        values.append([group["lr"] for group in optimizer.param_groups])
    return values


@pytest.mark.parametrize("case", sorted(CASES))
def test_lr_matches_torch_each_step(case):
    build_ours, build_torch = CASES[case]
    mine, theirs = lrs_per_step(build_ours), lrs_per_step(build_torch)
    torch.testing.assert_close(torch.tensor(mine, dtype=torch.float64),
                               torch.tensor(theirs, dtype=torch.float64), rtol=0, atol=1e-8)
    assert len({tuple(row) for row in mine}) > 1  # the schedule really moved


def test_chained_warmup_then_cosine_matches_torch_chained_schedulers():
    """Our begin/end windows reproduce torch's ``SequentialLR`` of warm-up then cosine."""
    def build_ours(o):
        return [ours.LinearLR(o, start_factor=0.1, by_epoch=False, begin=0, end=5),
                ours.CosineAnnealingLR(o, T_max=20, by_epoch=False, begin=5)]

    def build_torch(o):
        return [torch_sched.SequentialLR(o, [
            torch_sched.LinearLR(o, start_factor=0.1, total_iters=4),
            torch_sched.CosineAnnealingLR(o, T_max=20)], milestones=[5])]

    results = []
    for build_fn in (build_ours, build_torch):
        optimizer = make_optimizer("sgd")
        schedulers = build_fn(optimizer)
        values = []
        for _ in range(STEPS):
            values.append([group["lr"] for group in optimizer.param_groups])
            optimizer.step()
            for scheduler in schedulers:
                scheduler.step()
        results.append(values)
    torch.testing.assert_close(torch.tensor(results[0], dtype=torch.float64),
                               torch.tensor(results[1], dtype=torch.float64), rtol=0, atol=1e-8)
