"""Averaged models: the EMA/SWA formulas, intervals, buffers, state dicts, MMEngine parity."""
from __future__ import annotations

import io

import pytest
import torch
import torch.nn as nn

from raytrainer.model.averaged_model import (
    BaseAveragedModel,
    ExponentialMovingAverage,
    MomentumAnnealingEMA,
    StochasticWeightAverage,
)
from raytrainer.registry import MODELS


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def perturb(model: nn.Module, step: int) -> None:
    """Move every parameter and BN statistic to a new, step-dependent value."""
    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            p.add_(0.1 * (step + 1) * (i + 1))
        model[1].running_mean.add_(step + 1.0)
        model[1].num_batches_tracked.add_(1)


def test_ema_follows_mmengine_formula_and_copies_on_first_update():
    model = make_model()
    ema = ExponentialMovingAverage(model, momentum=0.25)
    perturb(model, 0)
    ema.update_parameters(model)  # the first update copies
    expected = {k: v.clone() for k, v in model.named_parameters()}
    for step in range(1, 4):
        perturb(model, step)
        ema.update_parameters(model)
        for name, p in model.named_parameters():
            expected[name] = expected[name] * 0.75 + p.detach() * 0.25
    for name, p in ema.module.named_parameters():
        torch.testing.assert_close(p, expected[name])
        assert not p.requires_grad
    assert int(ema.steps) == 4
    # Buffers are not averaged by default: they are the source's.
    torch.testing.assert_close(ema.module[1].running_mean, model[1].running_mean)


def test_interval_averages_only_every_nth_update():
    model = make_model()
    ema = ExponentialMovingAverage(model, momentum=0.5, interval=2)
    ema.update_parameters(model)  # step 0: copy
    start = ema.module[0].weight.clone()
    perturb(model, 0)
    ema.update_parameters(model)  # step 1: counted only
    torch.testing.assert_close(ema.module[0].weight, start)
    ema.update_parameters(model)  # step 2: averaged
    torch.testing.assert_close(ema.module[0].weight, (start + model[0].weight) / 2)


def test_update_buffers_averages_floats_and_copies_counters():
    model = make_model()
    ema = ExponentialMovingAverage(model, momentum=0.5, update_buffers=True)
    ema.update_parameters(model)
    before = ema.module[1].running_mean.clone()
    perturb(model, 3)  # running_mean += 4, num_batches_tracked += 1
    ema.update_parameters(model)
    torch.testing.assert_close(ema.module[1].running_mean, before + 2.0)
    assert int(ema.module[1].num_batches_tracked) == int(model[1].num_batches_tracked) == 1


def test_averaged_tensors_are_looked_up_after_moving_the_module():
    model = make_model()
    ema = ExponentialMovingAverage(model, momentum=0.5, update_buffers=True)
    ema.update_parameters(model)
    ema.double()  # replaces buffer tensors: a cached dict would point at the old ones
    perturb(model, 1)
    ema.update_parameters(model)
    assert ema.module[1].running_mean.dtype == torch.float64
    expected = (model[1].running_mean.double() - 2.0 + model[1].running_mean.double()) / 2
    torch.testing.assert_close(ema.module[1].running_mean, expected)


def test_momentum_annealing_uses_the_larger_momentum_early():
    model = make_model()
    ema = MomentumAnnealingEMA(model, momentum=0.01, gamma=3)
    ema.update_parameters(model)
    start = ema.module[0].weight.clone()
    perturb(model, 0)
    ema.update_parameters(model)  # steps=1: momentum = max(0.01, 3 / 4)
    torch.testing.assert_close(ema.module[0].weight, start.lerp(model[0].weight, 0.75))


def test_swa_is_the_mean_of_the_snapshots():
    model = make_model()
    swa = StochasticWeightAverage(model)
    snapshots = []
    for step in range(4):
        perturb(model, step)
        snapshots.append(model[2].bias.detach().clone())
        swa.update_parameters(model)
    torch.testing.assert_close(swa.module[2].bias, torch.stack(snapshots).mean(0))


@pytest.mark.parametrize("name,kwargs", [
    ("ExponentialMovingAverage", dict(momentum=0.1, interval=2)),
    ("MomentumAnnealingEMA", dict(momentum=0.01, gamma=5)),
    ("StochasticWeightAverage", dict(update_buffers=True)),
])
def test_same_weights_as_mmengine(name, kwargs):
    reference = pytest.importorskip("mmengine.model.averaged_model")
    model = make_model()
    ours = MODELS.build(dict(type=name, **kwargs), model=model)
    theirs = getattr(reference, name)(model, **kwargs)
    for step in range(6):
        perturb(model, step)
        ours.update_parameters(model)
        theirs.update_parameters(model)
    theirs_state = theirs.state_dict()
    for key, value in ours.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue  # MMEngine leaves integer buffers at their first value
        torch.testing.assert_close(value, theirs_state[key], msg=key)


def test_state_dict_loads_with_weights_only_and_restores_steps():
    model = make_model()
    ema = ExponentialMovingAverage(model, momentum=0.3)
    for step in range(3):
        perturb(model, step)
        ema.update_parameters(model)
    buffer = io.BytesIO()
    torch.save(ema.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert "steps" in state and all(k == "steps" or k.startswith("module.") for k in state)
    restored = ExponentialMovingAverage(make_model(seed=1), momentum=0.3)
    restored.load_state_dict(state)
    assert int(restored.steps) == 3
    for a, b in zip(restored.parameters(), ema.parameters()):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("cls,kwargs,message", [
    (ExponentialMovingAverage, dict(momentum=0.0), "momentum must be in"),
    (ExponentialMovingAverage, dict(momentum=1.5), "momentum must be in"),
    (ExponentialMovingAverage, dict(interval=0), "interval must be a positive"),
    (MomentumAnnealingEMA, dict(gamma=0), "gamma must be positive"),
])
def test_bad_arguments_are_named(cls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        cls(make_model(), **kwargs)


def test_base_class_requires_avg_func():
    model = make_model()
    averaged = BaseAveragedModel(model)
    averaged.update_parameters(model)  # the first update only copies
    with pytest.raises(NotImplementedError, match="avg_func"):
        averaged.update_parameters(model)


def test_forward_runs_the_averaged_copy():
    model = make_model().eval()
    ema = ExponentialMovingAverage(model, momentum=0.5).eval()
    x = torch.randn(5, 3)
    torch.testing.assert_close(ema(x), model(x))
