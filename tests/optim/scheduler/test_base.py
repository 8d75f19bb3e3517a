"""Behaviour shared by every scheduler, checked against hand-computed values: the begin/end
window, chaining, ``initial_<param>``, Adam betas, wrappers, logging and step-order warnings."""
from __future__ import annotations

import math
import warnings

import pytest

import raytrainer.optim.scheduler as ours
from raytrainer.logging import MMLogger

from .helpers import DuckWrapper, make_optimizer


def lrs(optimizer) -> list[float]:
    return [group["lr"] for group in optimizer.param_groups]


def step_all(optimizer, *schedulers) -> None:
    optimizer.step()
    for scheduler in schedulers:
        scheduler.step()


def test_value_changes_only_inside_the_window():
    optimizer = make_optimizer("sgd")
    scheduler = ours.ExponentialLR(optimizer, gamma=0.5, begin=2, end=4)
    seen = [lrs(optimizer)[0]]
    for _ in range(6):
        step_all(optimizer, scheduler)
        seen.append(lrs(optimizer)[0])
    # step 2 starts the schedule (last_step 0 keeps the value); step 3 halves; then frozen.
    assert seen == [0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.025]
    assert scheduler.last_step == 1
    assert scheduler.get_last_value() == [0.025, 0.005]


def test_warmup_then_cosine_reaches_closed_form_values():
    optimizer = make_optimizer("sgd")
    warmup = ours.LinearLR(optimizer, start_factor=0.1, by_epoch=False, begin=0, end=5)
    cosine = ours.CosineAnnealingLR(optimizer, T_max=10, eta_min=0.0, by_epoch=False,
                                    begin=5, end=15)
    seen = [lrs(optimizer)[0]]
    for _ in range(15):
        step_all(optimizer, warmup, cosine)
        seen.append(lrs(optimizer)[0])
    warmup_expected = [0.05 * (0.1 + 0.9 * i / 4) for i in range(5)]
    cosine_expected = [0.05 * (1 + math.cos(math.pi * t / 10)) / 2 for t in range(10)]
    assert seen[:5] == pytest.approx(warmup_expected, abs=1e-12)
    assert seen[5:15] == pytest.approx(cosine_expected, abs=1e-12)
    assert optimizer.param_groups[0]["initial_lr"] == 0.05  # shared by both schedulers


def test_momentum_scheduler_drives_adam_beta1_and_keeps_beta2():
    optimizer = make_optimizer("adam")
    scheduler = ours.StepMomentum(optimizer, step_size=1, gamma=0.5)
    step_all(optimizer, scheduler)
    assert optimizer.param_groups[0]["betas"] == (0.45, 0.999)
    assert optimizer.param_groups[1]["betas"] == (0.425, 0.99)
    assert scheduler.get_last_value() == [0.45, 0.425]
    assert optimizer.param_groups[0]["initial_momentum"] == 0.9


def test_momentum_scheduler_on_sgd_sets_momentum():
    optimizer = make_optimizer("sgd")
    scheduler = ours.ConstantMomentum(optimizer, factor=0.5, end=3)
    values = [optimizer.param_groups[0]["momentum"]]
    for _ in range(3):
        step_all(optimizer, scheduler)
        values.append(optimizer.param_groups[0]["momentum"])
    assert values == [0.45, 0.45, 0.9, 0.9]
    assert "betas" not in optimizer.param_groups[0]


def test_schedules_through_a_wrapper():
    optimizer = make_optimizer("sgd")
    wrapper = DuckWrapper(optimizer)
    scheduler = ours.MultiStepLR(wrapper, milestones=[1], gamma=0.1)
    step_all(wrapper, scheduler)
    assert lrs(optimizer) == pytest.approx([0.005, 0.001])


def test_reduce_on_plateau_reduces_after_patience_and_cooldown():
    optimizer = make_optimizer("sgd")
    scheduler = ours.ReduceOnPlateauLR(optimizer, monitor="loss", patience=1, cooldown=1,
                                       factor=0.5)
    assert ours.ReduceOnPlateauLR.need_val_args is True
    seen = []
    for loss in [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]:
        scheduler.step()
        scheduler.step({"loss": loss})
        seen.append(lrs(optimizer)[0])
    # bad results: #2 (1 bad), #3 (2 bad > patience: halve), #4 cooldown, #5 (1 bad), #6 halve
    assert seen == [0.05, 0.05, 0.025, 0.025, 0.025, 0.0125]


def test_verbose_logs_each_value(capsys, monkeypatch):
    monkeypatch.setattr(MMLogger, "_current", None)  # no run logger: print_log prints
    optimizer = make_optimizer("sgd")
    ours.StepLR(optimizer, step_size=2, verbose=True)
    out = capsys.readouterr().out
    assert "Adjusting parameter value of group 0 to 5.0000e-02." in out
    assert "Adjusting parameter value of group 1 to 1.0000e-02." in out


def test_warns_when_scheduler_steps_before_optimizer():
    optimizer = make_optimizer("sgd")
    scheduler = ours.StepLR(optimizer, step_size=2)
    with pytest.warns(UserWarning, match=r"StepLR.step\(\) was called before "
                                         r"optimizer.step\(\)"):
        scheduler.step()


def test_no_warning_in_the_right_order():
    optimizer = make_optimizer("sgd")
    scheduler = ours.StepLR(optimizer, step_size=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(3):
            step_all(optimizer, scheduler)
    assert not optimizer._optimizer_step_post_hooks  # the order check unhooks itself


def test_build_iter_from_epoch_scales_epoch_arguments():
    optimizer = make_optimizer("sgd")
    cosine = ours.CosineAnnealingLR.build_iter_from_epoch(optimizer, T_max=2, begin=1, end=3,
                                                          epoch_length=10)
    assert (cosine.T_max, cosine.begin, cosine.end, cosine.by_epoch) == (20, 10, 30, False)
    restart = ours.CosineRestartLR.build_iter_from_epoch(optimizer, periods=[1, 2],
                                                         restart_weights=[1, 1], eta_min=0,
                                                         epoch_length=4)
    assert restart.periods == [4, 8] and restart.cumulative_periods == [4, 12]
    assert restart.end == ours.param_scheduler.INF
    multistep = ours.MultiStepLR.build_iter_from_epoch(optimizer, milestones=[1, 3],
                                                       epoch_length=5)
    assert multistep.milestones == {5: 1, 15: 1}
    one_cycle = ours.OneCycleLR.build_iter_from_epoch(optimizer, eta_max=0.1, total_steps=2,
                                                      epoch_length=7)
    assert one_cycle.total_steps == 14
    step = ours.StepLR.build_iter_from_epoch(optimizer, step_size=2, epoch_length=3)
    assert step.step_size == 6
