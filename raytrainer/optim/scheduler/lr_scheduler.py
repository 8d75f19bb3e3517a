"""Learning-rate schedulers: each generic schedule with ``param_name`` fixed to ``'lr'``.

This module owns only the naming; every schedule's arguments and behaviour are documented on
its ``*ParamScheduler`` class in :mod:`.param_scheduler`, minus the ``param_name`` argument.
"""
from __future__ import annotations

from typing import Any

from raytrainer.registry import PARAM_SCHEDULERS

from .base import OptimizerLike
from .param_scheduler import (
    ConstantParamScheduler,
    CosineAnnealingParamScheduler,
    CosineRestartParamScheduler,
    ExponentialParamScheduler,
    LinearParamScheduler,
    MultiStepParamScheduler,
    OneCycleParamScheduler,
    PolyParamScheduler,
    ReduceOnPlateauParamScheduler,
    StepParamScheduler,
)

__all__ = [
    "LRSchedulerMixin", "ConstantLR", "CosineAnnealingLR", "CosineRestartLR", "ExponentialLR",
    "LinearLR", "MultiStepLR", "OneCycleLR", "PolyLR", "ReduceOnPlateauLR", "StepLR",
]


class LRSchedulerMixin:
    """Mixin that passes ``param_name='lr'`` to the schedule it precedes in the MRO."""

    def __init__(self, optimizer: OptimizerLike, *args: Any, **kwargs: Any):
        super().__init__(optimizer, "lr", *args, **kwargs)


@PARAM_SCHEDULERS.register_module()
class ConstantLR(LRSchedulerMixin, ConstantParamScheduler):
    """Multiply the learning rate by ``factor`` until the last step of the window; see
    :class:`ConstantParamScheduler`."""


@PARAM_SCHEDULERS.register_module()
class CosineAnnealingLR(LRSchedulerMixin, CosineAnnealingParamScheduler):
    """Cosine-anneal the learning rate to ``eta_min``; see
    :class:`CosineAnnealingParamScheduler`."""


@PARAM_SCHEDULERS.register_module()
class CosineRestartLR(LRSchedulerMixin, CosineRestartParamScheduler):
    """Cosine-anneal the learning rate with warm restarts; see
    :class:`CosineRestartParamScheduler`."""


@PARAM_SCHEDULERS.register_module()
class ExponentialLR(LRSchedulerMixin, ExponentialParamScheduler):
    """Multiply the learning rate by ``gamma`` every step; see
    :class:`ExponentialParamScheduler`."""


@PARAM_SCHEDULERS.register_module()
class LinearLR(LRSchedulerMixin, LinearParamScheduler):
    """Scale the learning rate by a linearly changing factor (warm-up); see
    :class:`LinearParamScheduler`."""


@PARAM_SCHEDULERS.register_module()
class MultiStepLR(LRSchedulerMixin, MultiStepParamScheduler):
    """Multiply the learning rate by ``gamma`` at each milestone; see
    :class:`MultiStepParamScheduler`."""


@PARAM_SCHEDULERS.register_module()
class OneCycleLR(LRSchedulerMixin, OneCycleParamScheduler):
    """The 1cycle learning-rate policy; see :class:`OneCycleParamScheduler`."""


@PARAM_SCHEDULERS.register_module()
class PolyLR(LRSchedulerMixin, PolyParamScheduler):
    """Decay the learning rate polynomially to ``eta_min``; see :class:`PolyParamScheduler`."""


@PARAM_SCHEDULERS.register_module()
class ReduceOnPlateauLR(LRSchedulerMixin, ReduceOnPlateauParamScheduler):
    """Reduce the learning rate when a validation metric stops improving; see
    :class:`ReduceOnPlateauParamScheduler`."""


@PARAM_SCHEDULERS.register_module()
class StepLR(LRSchedulerMixin, StepParamScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` steps; see
    :class:`StepParamScheduler`."""
