"""The interface every optimizer wrapper offers to models, loops, hooks and schedulers.

This module owns only the contract (:class:`BaseOptimWrapper`); accumulation, clipping and mixed
precision live in the concrete wrappers. Check ``isinstance(x, BaseOptimWrapper)`` to ask "is this
already built", since :class:`OptimWrapperDict` is not an :class:`OptimWrapper`.
"""
from __future__ import annotations

from abc import ABCMeta, abstractmethod

import torch

__all__ = ["BaseOptimWrapper"]


class BaseOptimWrapper(metaclass=ABCMeta):
    """What a training step may call on an optimizer wrapper.

    Subclasses: :class:`OptimWrapper` (one optimizer), :class:`AmpOptimWrapper` (mixed
    precision) and :class:`OptimWrapperDict` (one wrapper per sub-model).
    """

    @abstractmethod
    def update_params(self, loss: torch.Tensor, step_kwargs: dict | None = None,
                      zero_kwargs: dict | None = None) -> None:
        """Backward ``loss`` and, when an accumulation window closes, update the parameters."""

    @abstractmethod
    def backward(self, loss: torch.Tensor, **kwargs) -> None:
        """Compute gradients of ``loss``."""

    @abstractmethod
    def step(self, **kwargs) -> None:
        """Update the parameters from their gradients."""

    @abstractmethod
    def zero_grad(self, **kwargs) -> None:
        """Reset the gradients."""

    @abstractmethod
    def state_dict(self) -> dict:
        """The state to checkpoint (loadable with ``torch.load(weights_only=True)``)."""

    @abstractmethod
    def load_state_dict(self, state_dict: dict) -> None:
        """Restore what :meth:`state_dict` returned."""

    @abstractmethod
    def get_lr(self) -> dict[str, list[float]]:
        """Learning rates by log name (``{'lr': [...]}``)."""

    @abstractmethod
    def get_momentum(self) -> dict[str, list[float]]:
        """Momenta by log name (``{'momentum': [...]}``)."""
