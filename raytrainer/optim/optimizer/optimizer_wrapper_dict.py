"""``OptimWrapperDict``: one named :class:`OptimWrapper` per sub-model (GAN generator and
discriminator, say).

It owns the collection: combined learning rates and momenta for logging, and one state dict
holding each wrapper's state under its name. It never updates parameters itself: which wrapper
a loss belongs to is the model's decision, so the model calls ``wrappers['name']`` directly.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import NoReturn

import torch
import torch.nn as nn

from .base import BaseOptimWrapper
from .optimizer_wrapper import OptimWrapper

__all__ = ["OptimWrapperDict", "wrappers_of"]


def wrappers_of(optim_wrapper) -> list:
    """The optim wrappers behind ``optim_wrapper``: each of an :class:`OptimWrapperDict` (or any
    mapping of them), the wrapper itself otherwise, [] for None.

    Everything that walks every optimizer (lr scaling, checkpoints, strategies) goes through
    this, so a dict of wrappers is never mistaken for one wrapper.
    """
    if optim_wrapper is None:
        return []
    if hasattr(optim_wrapper, "values"):
        return list(optim_wrapper.values())
    return [optim_wrapper]


class OptimWrapperDict(BaseOptimWrapper):
    """A read-only mapping name → :class:`OptimWrapper`, saved and logged as one.

    Args:
        **optim_wrappers: The wrappers by name.

    Raises:
        TypeError: A value is not an :class:`OptimWrapper`.

    Example:
        >>> wrappers = OptimWrapperDict(generator=OptimWrapper(SGD(gen.parameters(), lr=0.1)),
        ...                             discriminator=OptimWrapper(SGD(dis.parameters(), lr=0.1)))
        >>> wrappers['generator'].update_params(gen_loss)
        >>> wrappers.get_lr()
        {'generator.lr': [0.1], 'discriminator.lr': [0.1]}
    """

    def __init__(self, **optim_wrappers: OptimWrapper):
        for name, wrapper in optim_wrappers.items():
            if not isinstance(wrapper, OptimWrapper):
                raise TypeError(f"OptimWrapperDict values must be OptimWrapper instances, got "
                                f"{name}={type(wrapper).__name__}")
        self.optim_wrappers: dict[str, OptimWrapper] = dict(optim_wrappers)

    def _per_wrapper_only(self, method: str) -> NoReturn:
        raise NotImplementedError(
            f"OptimWrapperDict.{method} is ambiguous: it holds one optim wrapper per sub-model "
            f"({', '.join(map(repr, self.optim_wrappers))}); call {method} on the one the loss "
            f"belongs to, e.g. optim_wrapper['{next(iter(self.optim_wrappers), 'name')}']."
            f"{method}(...)")

    def update_params(self, loss: torch.Tensor, step_kwargs: dict | None = None,
                      zero_kwargs: dict | None = None) -> NoReturn:
        """Not supported: call ``update_params`` of the named wrapper."""
        self._per_wrapper_only("update_params")

    def backward(self, loss: torch.Tensor, **kwargs) -> NoReturn:
        """Not supported: each wrapper may scale its loss differently (AMP)."""
        self._per_wrapper_only("backward")

    def step(self, **kwargs) -> NoReturn:
        """Not supported: call ``step`` of the named wrapper."""
        self._per_wrapper_only("step")

    def optim_context(self, model: nn.Module) -> NoReturn:
        """Not supported: each wrapper has its own accumulation window and autocast."""
        self._per_wrapper_only("optim_context")

    def zero_grad(self, **kwargs) -> None:
        """Reset the gradients of every wrapper."""
        for wrapper in self.optim_wrappers.values():
            wrapper.zero_grad(**kwargs)

    def initialize_count_status(self, model: nn.Module, init_counts: int,
                                max_counts: int) -> None:
        """Does nothing: the wrappers may step at different rates, so each model sets its own.

        Kept so loops can call it on any optim wrapper (MMEngine does the same).
        """

    @property
    def param_groups(self) -> NoReturn:
        """Not supported: there is one list of param groups per wrapper."""
        raise NotImplementedError(
            "OptimWrapperDict has no single param_groups; use "
            "optim_wrapper[name].param_groups (param schedulers are built per wrapper name)")

    def get_lr(self) -> dict[str, list[float]]:
        """``{'<name>.lr': [...]}`` for every wrapper."""
        return {f"{name}.lr": wrapper.get_lr()["lr"]
                for name, wrapper in self.optim_wrappers.items()}

    def get_momentum(self) -> dict[str, list[float]]:
        """``{'<name>.momentum': [...]}`` for every wrapper."""
        return {f"{name}.momentum": wrapper.get_momentum()["momentum"]
                for name, wrapper in self.optim_wrappers.items()}

    def state_dict(self) -> dict:
        """``{name: wrapper.state_dict()}``."""
        return {name: wrapper.state_dict() for name, wrapper in self.optim_wrappers.items()}

    def load_state_dict(self, state_dict: dict) -> None:
        """Load each wrapper's state; the names must match exactly.

        Raises:
            ValueError: ``state_dict`` misses a wrapper or has one this dict does not hold.
        """
        missing = sorted(set(self.optim_wrappers) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(self.optim_wrappers))
        if missing or unexpected:
            raise ValueError(f"OptimWrapperDict state dict does not match its wrappers "
                           f"{list(self.optim_wrappers)}: missing {missing}, unexpected "
                           f"{unexpected}")
        for name, wrapper in self.optim_wrappers.items():
            wrapper.load_state_dict(state_dict[name])

    def items(self) -> Iterator[tuple[str, OptimWrapper]]:
        return iter(self.optim_wrappers.items())

    def keys(self) -> Iterator[str]:
        return iter(self.optim_wrappers.keys())

    def values(self) -> Iterator[OptimWrapper]:
        return iter(self.optim_wrappers.values())

    def __getitem__(self, name: str) -> OptimWrapper:
        if name not in self.optim_wrappers:
            raise KeyError(f"no optim wrapper named {name!r}; this OptimWrapperDict holds "
                           f"{list(self.optim_wrappers)}")
        return self.optim_wrappers[name]

    def __contains__(self, name: object) -> bool:
        return name in self.optim_wrappers

    def __iter__(self) -> Iterator[str]:
        return iter(self.optim_wrappers)

    def __len__(self) -> int:
        return len(self.optim_wrappers)

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={wrapper!r}" for name, wrapper in self.optim_wrappers.items())
        return f"OptimWrapperDict({inner})"
