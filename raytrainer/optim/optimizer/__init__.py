"""Optimizer wrappers (accumulation, clipping, AMP), the optimizer registry, and building them
from an ``optim_wrapper`` config. Importing it registers every ``torch.optim`` optimizer."""
from ...registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS, OPTIMIZERS
from .amp_optimizer_wrapper import AmpOptimWrapper
from .base import BaseOptimWrapper
from .builder import TORCH_OPTIMIZERS, build_optim_wrapper, register_torch_optimizers
from .default_constructor import DefaultOptimWrapperConstructor
from .optimizer_wrapper import OptimWrapper
from .optimizer_wrapper_dict import OptimWrapperDict, wrappers_of

__all__ = [
    "OPTIMIZERS", "OPTIM_WRAPPERS", "OPTIM_WRAPPER_CONSTRUCTORS", "TORCH_OPTIMIZERS",
    "BaseOptimWrapper", "OptimWrapper", "AmpOptimWrapper", "OptimWrapperDict",
    "DefaultOptimWrapperConstructor", "build_optim_wrapper", "register_torch_optimizers",
    "wrappers_of",
]
