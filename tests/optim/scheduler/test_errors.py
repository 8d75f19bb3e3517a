"""Bad arguments raise errors that name the scheduler and the argument."""
from __future__ import annotations

import pytest

import raytrainer.optim.scheduler as ours

from .helpers import make_optimizer


@pytest.mark.parametrize(("build", "error", "message"), [
    (lambda o: ours.StepLR(o, step_size=2, begin=5, end=5), ValueError,
     r"StepLR: end must be larger than begin, got begin=5, end=5"),
    (lambda o: ours.LinearLR(o, begin=3, end=1), ValueError, r"LinearLR: end must be larger"),
    (lambda o: ours.ExponentialLR(o, gamma=0.9, last_step=-2), ValueError,
     r"ExponentialLR: last_step must be an int >= -1, got -2"),
    (lambda o: ours.ConstantLR(o, factor=1.5), ValueError,
     r"ConstantLR: factor must be between 0 and 1, got 1.5"),
    (lambda o: ours.LinearLR(o, start_factor=-0.1), ValueError,
     r"LinearLR: start_factor must be between 0 and 1"),
    (lambda o: ours.LinearMomentum(o, end_factor=2.0), ValueError,
     r"LinearMomentum: end_factor must be between 0 and 1"),
    (lambda o: ours.CosineAnnealingLR(o, eta_min=0.1, eta_min_ratio=0.1), ValueError,
     r"CosineAnnealingLR: give either eta_min or eta_min_ratio, not both"),
    (lambda o: ours.CosineRestartLR(o, periods=[5]), ValueError,
     r"CosineRestartLR: give exactly one of eta_min and eta_min_ratio"),
    (lambda o: ours.CosineRestartLR(o, periods=[5, 5], restart_weights=[1], eta_min=0),
     ValueError, r"periods and restart_weights must have the same length, got 2 and 1"),
    (lambda o: ours.OneCycleParamScheduler(o, "momentum", eta_max=0.1, total_steps=5),
     ValueError, r"OneCycleParamScheduler: .*'lr' only, got param_name='momentum'"),
    (lambda o: ours.OneCycleLR(o, eta_max=0.1, total_steps=0), ValueError,
     r"OneCycleLR: total_steps must be a positive integer, got 0"),
    (lambda o: ours.OneCycleLR(o, eta_max=0.1, total_steps=5, pct_start=1), ValueError,
     r"OneCycleLR: pct_start must be a float between 0 and 1, got 1"),
    (lambda o: ours.OneCycleLR(o, eta_max=0.1, total_steps=5, anneal_strategy="exp"),
     ValueError, r"OneCycleLR: anneal_strategy must be 'cos' or 'linear', got 'exp'"),
    (lambda o: ours.OneCycleLR(o, eta_max=[0.1, 0.2, 0.3], total_steps=5), ValueError,
     r"OneCycleLR: expected 2 values for max_lr \(one per param group\), got 3"),
    (lambda o: ours.ReduceOnPlateauLR(o, rule="lower"), ValueError,
     r"ReduceOnPlateauLR: rule must be 'less' or 'greater', got 'lower'"),
    (lambda o: ours.ReduceOnPlateauLR(o, threshold_rule="pct"), ValueError,
     r"ReduceOnPlateauLR: threshold_rule must be 'rel' or 'abs', got 'pct'"),
    (lambda o: ours.ReduceOnPlateauLR(o, threshold=-1.0), ValueError,
     r"ReduceOnPlateauLR: threshold must be >= 0, got -1.0"),
    (lambda o: ours.ReduceOnPlateauLR(o, factor=1.0), ValueError,
     r"ReduceOnPlateauLR: factor must be in \[0, 1\), got 1.0"),
    (lambda o: ours.ReduceOnPlateauMomentum(o, factor=-0.5), ValueError,
     r"ReduceOnPlateauMomentum: factor must be in \[0, 1\), got -0.5"),
    (lambda o: ours.ReduceOnPlateauLR(o, min_value=[0.1, 0.2, 0.3]), ValueError,
     r"ReduceOnPlateauLR: expected 2 min_value entries \(one per param group\), got 3"),
    (lambda o: ours.ReduceOnPlateauLR(o, by_epoch=False), ValueError,
     r"ReduceOnPlateauLR: only by_epoch=True is supported"),
    (lambda o: ours.ReduceOnPlateauLR(o, begin=2, end=1), ValueError,
     r"ReduceOnPlateauLR: end must be larger than begin"),
])
def test_invalid_arguments_are_named(build, error, message):
    with pytest.raises(error, match=message):
        build(make_optimizer("sgd"))


@pytest.mark.parametrize("cls", [ours.StepLR, ours.ReduceOnPlateauLR])
def test_resuming_without_initial_value_names_the_group(cls):
    kwargs = {"step_size": 2} if cls is ours.StepLR else {}
    with pytest.raises(KeyError, match=rf"{cls.__name__}: optimizer.param_groups\[0\] has no "
                                       r"'initial_lr', which last_step=3 requires"):
        cls(make_optimizer("sgd"), last_step=3, **kwargs)


def test_resuming_with_initial_value_continues_from_last_step():
    optimizer = make_optimizer("sgd")
    for group in optimizer.param_groups:
        group["initial_lr"] = group["lr"]
    scheduler = ours.StepLR(optimizer, step_size=2, gamma=0.5, last_step=3)
    assert scheduler.last_step == 4
    assert scheduler.get_last_value() == [0.025, 0.005]  # step 4 is a decay step


def test_optimizer_without_param_groups_is_rejected():
    with pytest.raises(TypeError, match=r"LinearLR: optimizer must be a torch.optim.Optimizer "
                                        r"or an object with 'param_groups'.*got dict"):
        ours.LinearLR({"lr": 0.1})
    with pytest.raises(TypeError, match=r"ReduceOnPlateauLR: optimizer must be"):
        ours.ReduceOnPlateauLR(object())


def test_momentum_scheduler_needs_momentum_or_betas():
    with pytest.raises(ValueError, match=r"StepMomentum: the optimizer has neither 'momentum' "
                                         r"nor 'betas' to schedule"):
        ours.StepMomentum(make_optimizer("adagrad"), step_size=2)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"by_epoch": False, "epoch_length": 10},
     r"CosineAnnealingLR.build_iter_from_epoch: only epoch-based arguments \(by_epoch=True\)"),
    ({}, r"CosineAnnealingLR.build_iter_from_epoch: epoch_length must be a positive integer "
         r"\(iterations per epoch\), got None"),
    ({"epoch_length": 0}, r"epoch_length must be a positive integer .*got 0"),
])
def test_epoch_conversion_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ours.CosineAnnealingLR.build_iter_from_epoch(make_optimizer("sgd"), T_max=3, **kwargs)


def test_epoch_conversion_requires_epoch_unit_arguments_by_keyword():
    with pytest.raises(TypeError, match=r"MultiStepLR.build_iter_from_epoch: pass 'milestones' "
                                        r"as a keyword argument"):
        ours.MultiStepLR.build_iter_from_epoch(make_optimizer("sgd"), [1, 2], epoch_length=5)


def test_reduce_on_plateau_cannot_be_converted_to_iterations():
    with pytest.raises(NotImplementedError, match=r"ReduceOnPlateauLR follows validation "
                                                  r"metrics .* convert_to_iter_based"):
        ours.ReduceOnPlateauLR.build_iter_from_epoch(make_optimizer("sgd"), epoch_length=5)


def test_reduce_on_plateau_metric_errors():
    scheduler = ours.ReduceOnPlateauLR(make_optimizer("sgd"), monitor="acc")
    with pytest.raises(TypeError, match=r"ReduceOnPlateauLR.step: metrics must be a dict of "
                                        r"validation results, got list"):
        scheduler.step([0.5])
    with pytest.raises(KeyError, match=r"ReduceOnPlateauLR: monitor 'acc' is not among the "
                                       r"validation metrics \['loss'\]"):
        scheduler.step({"loss": 0.5})


def test_one_cycle_refuses_to_step_past_total_steps():
    optimizer = make_optimizer("sgd")
    scheduler = ours.OneCycleLR(optimizer, eta_max=0.1, total_steps=3)
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    with pytest.raises(ValueError, match=r"OneCycleLR: stepped 5 times, but total_steps is 3"):
        scheduler.step()
