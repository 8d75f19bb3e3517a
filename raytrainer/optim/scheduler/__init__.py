"""Parameter schedulers: MMEngine-compatible schedules for learning rate, momentum, or any
value in ``optimizer.param_groups``.

Configs name them in the ``PARAM_SCHEDULERS`` registry (``dict(type='LinearLR', ...)``); the
generic ``*ParamScheduler`` classes take a ``param_name``, the ``*LR`` and ``*Momentum`` classes
fix it. Each module holds one seam: :mod:`.base` (window, state, epoch conversion),
:mod:`.param_scheduler` (chainable schedules), :mod:`.cyclic`, :mod:`.plateau`,
:mod:`.lr_scheduler` and :mod:`.momentum_scheduler`; building from a config
(``convert_to_iter_based``) is :func:`raytrainer.registry.build_param_scheduler_from_cfg`.
"""
from ...registry import build_param_scheduler_from_cfg
from .lr_scheduler import (
    ConstantLR,
    CosineAnnealingLR,
    CosineRestartLR,
    ExponentialLR,
    LinearLR,
    MultiStepLR,
    OneCycleLR,
    PolyLR,
    ReduceOnPlateauLR,
    StepLR,
)
from .momentum_scheduler import (
    ConstantMomentum,
    CosineAnnealingMomentum,
    CosineRestartMomentum,
    ExponentialMomentum,
    LinearMomentum,
    MultiStepMomentum,
    PolyMomentum,
    ReduceOnPlateauMomentum,
    StepMomentum,
)
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
    _ParamScheduler,
)

__all__ = [
    "_ParamScheduler", "build_param_scheduler_from_cfg",
    "ConstantParamScheduler", "CosineAnnealingParamScheduler", "CosineRestartParamScheduler",
    "ExponentialParamScheduler", "LinearParamScheduler", "MultiStepParamScheduler",
    "OneCycleParamScheduler", "PolyParamScheduler", "ReduceOnPlateauParamScheduler",
    "StepParamScheduler",
    "ConstantLR", "CosineAnnealingLR", "CosineRestartLR", "ExponentialLR", "LinearLR",
    "MultiStepLR", "OneCycleLR", "PolyLR", "ReduceOnPlateauLR", "StepLR",
    "ConstantMomentum", "CosineAnnealingMomentum", "CosineRestartMomentum",
    "ExponentialMomentum", "LinearMomentum", "MultiStepMomentum", "PolyMomentum",
    "ReduceOnPlateauMomentum", "StepMomentum",
]
