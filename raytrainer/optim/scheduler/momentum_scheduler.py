"""Momentum schedulers: each generic schedule applied to SGD's ``momentum`` or Adam's
``betas[0]``.

This module owns the mapping between the two: for optimizers with ``betas`` (the Adam family)
it keeps a ``momentum`` entry in every param group, schedules that, and copies it into
``betas[0]`` after each step. Schedules and their arguments are documented on the
``*ParamScheduler`` classes in :mod:`.param_scheduler`, minus ``param_name``.
"""
from __future__ import annotations

from typing import Any

from raytrainer.registry import PARAM_SCHEDULERS

from .base import OptimizerLike, check_optimizer, torch_optimizer_of
from .param_scheduler import (
    ConstantParamScheduler,
    CosineAnnealingParamScheduler,
    CosineRestartParamScheduler,
    ExponentialParamScheduler,
    LinearParamScheduler,
    MultiStepParamScheduler,
    PolyParamScheduler,
    ReduceOnPlateauParamScheduler,
    StepParamScheduler,
)

__all__ = [
    "MomentumSchedulerMixin", "ConstantMomentum", "CosineAnnealingMomentum",
    "CosineRestartMomentum", "ExponentialMomentum", "LinearMomentum", "MultiStepMomentum",
    "PolyMomentum", "ReduceOnPlateauMomentum", "StepMomentum",
]


def _optimizer_defaults(optimizer: OptimizerLike) -> dict[str, Any]:
    """The optimizer's default hyper-parameters, looking through wrappers."""
    defaults = getattr(optimizer, "defaults", None)
    if defaults is None:
        inner = torch_optimizer_of(optimizer)
        defaults = inner.defaults if inner is not None else optimizer.param_groups[0]
    return defaults


class MomentumSchedulerMixin:
    """Mixin that schedules ``momentum``, or ``betas[0]`` for optimizers with ``betas``.

    Raises:
        ValueError: The optimizer has neither ``momentum`` nor ``betas``.
    """

    def __init__(self, optimizer: OptimizerLike, *args: Any, **kwargs: Any):
        check_optimizer(type(self).__name__, optimizer)
        defaults = _optimizer_defaults(optimizer)
        self.use_betas = "momentum" not in defaults and "betas" in defaults
        if "momentum" not in defaults and not self.use_betas:
            raise ValueError(f"{type(self).__name__}: the optimizer has neither 'momentum' nor "
                             f"'betas' to schedule (its defaults are {sorted(defaults)})")
        if self.use_betas:
            for group in optimizer.param_groups:
                group["momentum"] = group["betas"][0]
        super().__init__(optimizer, "momentum", *args, **kwargs)

    def step(self, *args: Any, **kwargs: Any) -> None:
        """Take the schedule's step, then copy ``momentum`` into ``betas[0]`` if needed."""
        super().step(*args, **kwargs)
        if self.use_betas:
            for group in self.optimizer.param_groups:
                group["betas"] = (group["momentum"], group["betas"][1])


@PARAM_SCHEDULERS.register_module()
class ConstantMomentum(MomentumSchedulerMixin, ConstantParamScheduler):
    """Multiply the momentum by ``factor`` until the last step of the window; see
    :class:`ConstantParamScheduler`."""


@PARAM_SCHEDULERS.register_module()
class CosineAnnealingMomentum(MomentumSchedulerMixin, CosineAnnealingParamScheduler):
    """Cosine-anneal the momentum to ``eta_min``; see :class:`CosineAnnealingParamScheduler`."""


@PARAM_SCHEDULERS.register_module()
class CosineRestartMomentum(MomentumSchedulerMixin, CosineRestartParamScheduler):
    """Cosine-anneal the momentum with warm restarts; see
    :class:`CosineRestartParamScheduler`."""


@PARAM_SCHEDULERS.register_module()
class ExponentialMomentum(MomentumSchedulerMixin, ExponentialParamScheduler):
    """Multiply the momentum by ``gamma`` every step; see :class:`ExponentialParamScheduler`."""


@PARAM_SCHEDULERS.register_module()
class LinearMomentum(MomentumSchedulerMixin, LinearParamScheduler):
    """Scale the momentum by a linearly changing factor; see :class:`LinearParamScheduler`."""


@PARAM_SCHEDULERS.register_module()
class MultiStepMomentum(MomentumSchedulerMixin, MultiStepParamScheduler):
    """Multiply the momentum by ``gamma`` at each milestone; see
    :class:`MultiStepParamScheduler`."""


@PARAM_SCHEDULERS.register_module()
class PolyMomentum(MomentumSchedulerMixin, PolyParamScheduler):
    """Decay the momentum polynomially to ``eta_min``; see :class:`PolyParamScheduler`."""


@PARAM_SCHEDULERS.register_module()
class ReduceOnPlateauMomentum(MomentumSchedulerMixin, ReduceOnPlateauParamScheduler):
    """Reduce the momentum when a validation metric stops improving; see
    :class:`ReduceOnPlateauParamScheduler`."""


@PARAM_SCHEDULERS.register_module()
class StepMomentum(MomentumSchedulerMixin, StepParamScheduler):
    """Multiply the momentum by ``gamma`` every ``step_size`` steps; see
    :class:`StepParamScheduler`."""
