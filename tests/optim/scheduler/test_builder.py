"""Registration in ``PARAM_SCHEDULERS`` and building from config dicts."""
from __future__ import annotations

import pytest

import raytrainer.optim.scheduler as ours
from raytrainer.registry import PARAM_SCHEDULERS, UnknownTypeError

from .helpers import make_optimizer


@pytest.mark.parametrize("name", [n for n in ours.__all__
                                  if n not in ("_ParamScheduler",
                                               "build_param_scheduler_from_cfg")])
def test_every_scheduler_is_registered_under_its_name(name):
    assert PARAM_SCHEDULERS.get(name) is getattr(ours, name)


def test_builds_from_config_and_drops_epoch_length():
    optimizer = make_optimizer("sgd")
    scheduler = ours.build_param_scheduler_from_cfg(
        dict(type="CosineAnnealingLR", T_max=4, by_epoch=True),
        default_args=dict(optimizer=optimizer, epoch_length=10))
    assert isinstance(scheduler, ours.CosineAnnealingLR)
    assert (scheduler.T_max, scheduler.by_epoch) == (4, True)


def test_convert_to_iter_based_uses_build_iter_from_epoch():
    optimizer = make_optimizer("sgd")
    scheduler = ours.build_param_scheduler_from_cfg(
        dict(type="MultiStepLR", milestones=[2, 4], begin=1, end=6,
             convert_to_iter_based=True),
        PARAM_SCHEDULERS, dict(optimizer=optimizer, epoch_length=10))
    assert isinstance(scheduler, ours.MultiStepLR)
    assert (scheduler.milestones, scheduler.begin, scheduler.end, scheduler.by_epoch) == \
        ({20: 1, 40: 1}, 10, 60, False)


def test_convert_to_iter_based_accepts_a_class_as_type():
    scheduler = ours.build_param_scheduler_from_cfg(
        dict(type=ours.StepLR, step_size=2, convert_to_iter_based=True),
        default_args=dict(optimizer=make_optimizer("sgd"), epoch_length=5))
    assert scheduler.step_size == 10 and not scheduler.by_epoch


def test_convert_to_iter_based_without_epoch_length_is_explained():
    with pytest.raises(ValueError, match=r"StepLR.build_iter_from_epoch: epoch_length must be"):
        ours.build_param_scheduler_from_cfg(
            dict(type="StepLR", step_size=2, convert_to_iter_based=True),
            default_args=dict(optimizer=make_optimizer("sgd")))


def test_unknown_type_suggests_close_names():
    with pytest.raises(UnknownTypeError, match=r"'CosineAnealingLR' is not registered .*did "
                                               r"you mean 'CosineAnnealingLR'"):
        ours.build_param_scheduler_from_cfg(
            dict(type="CosineAnealingLR", convert_to_iter_based=True),
            default_args=dict(optimizer=make_optimizer("sgd"), epoch_length=5))
