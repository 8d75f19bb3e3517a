"""``OptimWrapper``: how a loss becomes a parameter update, for one ``torch.optim`` optimizer.

It owns gradient accumulation (dividing the loss by the window size, deciding when to step and
when DDP may skip its all-reduce), gradient clipping and the optimizer's state dict. It does not
own the model, the learning-rate schedule (see ``raytrainer.optim.scheduler``) or mixed precision
(see ``amp_optimizer_wrapper``).
"""
from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import torch.nn as nn
from torch.optim import Optimizer

from ...logging import MessageHub, print_log
from ...registry import OPTIM_WRAPPERS
from ._model_utils import has_batch_norm
from .base import BaseOptimWrapper

__all__ = ["OptimWrapper"]

_NO_CONTEXT = nullcontext()

# clip type -> (torch function, the argument it cannot do without, scalar logged as train/<name>)
_CLIP_FUNCTIONS: dict[str, tuple[Callable, str, str | None]] = {
    "norm": (torch.nn.utils.clip_grad_norm_, "max_norm", "grad_norm"),
    "value": (torch.nn.utils.clip_grad_value_, "clip_value", None),
}


def _parse_clip_grad(clip_grad: dict) -> tuple[Callable, dict, str | None]:
    """Check ``clip_grad`` now, so a typo fails at build time rather than at the first update."""
    if not isinstance(clip_grad, dict) or not clip_grad:
        raise TypeError("clip_grad must be None or a non-empty dict such as dict(max_norm=1.0) "
                        f"or dict(type='value', clip_value=0.5), got {clip_grad!r}")
    kwargs = dict(clip_grad)  # never pop from the caller's config
    clip_type = kwargs.pop("type", "norm")
    if clip_type not in _CLIP_FUNCTIONS:
        raise ValueError(f"clip_grad.type must be one of {sorted(_CLIP_FUNCTIONS)}, got "
                         f"{clip_type!r}")
    func, required, log_name = _CLIP_FUNCTIONS[clip_type]
    accepted = set(inspect.signature(func).parameters) - {"parameters"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ValueError(f"clip_grad with type={clip_type!r} got unknown keys {unknown}; "
                         f"accepted keys are {sorted(accepted)}")
    if required not in kwargs:
        raise ValueError(f"clip_grad with type={clip_type!r} needs '{required}'")
    return func, kwargs, log_name


@OPTIM_WRAPPERS.register_module()
class OptimWrapper(BaseOptimWrapper):
    """One optimizer plus gradient accumulation and clipping, with MMEngine's interface.

    ``update_params(loss)`` runs: divide the loss by the accumulation window → backward → on the
    last iteration of a window: clip → ``optimizer.step`` → ``zero_grad``.

    Windows are aligned to absolute iteration numbers: with ``accumulative_counts=3`` the
    parameters update after iterations 3, 6, 9, ... When :meth:`initialize_count_status` gave
    ``max_counts`` and it is not a multiple of the window, the last, shorter window is divided by
    its real size and also ends in an update, so no gradient is dropped.

    Args:
        optimizer: The ``torch.optim.Optimizer`` to drive.
        accumulative_counts: Iterations whose gradients are summed into one update.
        clip_grad: None, or ``dict(max_norm=..., norm_type=2)`` (``type='norm'``, the default,
            calls ``clip_grad_norm_`` and logs ``train/grad_norm``) or
            ``dict(type='value', clip_value=...)`` (``clip_grad_value_``).

    Raises:
        TypeError: ``optimizer`` is not a ``torch.optim.Optimizer``.
        ValueError: ``accumulative_counts`` < 1 or a bad ``clip_grad``.

    Example:
        >>> wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1),
        ...                        accumulative_counts=2, clip_grad=dict(max_norm=1.0))
        >>> with wrapper.optim_context(model):
        ...     loss = model(x).sum()
        >>> wrapper.update_params(loss)
    """

    def __init__(self, optimizer: Optimizer, accumulative_counts: int = 1,
                 clip_grad: dict | None = None):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer)}")
        if isinstance(accumulative_counts, bool) or not isinstance(accumulative_counts, int) \
                or accumulative_counts < 1:
            raise ValueError(f"accumulative_counts must be an int >= 1, got "
                             f"{accumulative_counts!r}")
        self.optimizer = optimizer
        self._accumulative_counts = accumulative_counts
        self.clip_grad_kwargs: dict | None = None
        self._clip_func: Callable | None = None
        self._clip_log_name: str | None = None
        if clip_grad is not None:
            self._clip_func, self.clip_grad_kwargs, self._clip_log_name = \
                _parse_clip_grad(clip_grad)
        self._inner_count = 0
        # -1: the run length is unknown, so every window is divided by accumulative_counts.
        self._max_counts = -1

    # -- the update ---------------------------------------------------------------------------

    def update_params(self, loss: torch.Tensor, step_kwargs: dict | None = None,
                      zero_kwargs: dict | None = None) -> None:
        """Scale ``loss`` for accumulation, backward it and update when the window closes.

        Args:
            loss: The loss of this iteration.
            step_kwargs: Keyword arguments for ``optimizer.step``.
            zero_kwargs: Keyword arguments for ``optimizer.zero_grad``.
        """
        self.backward(self.scale_loss(loss))
        if self.should_update():
            self.step(**(step_kwargs or {}))
            self.zero_grad(**(zero_kwargs or {}))

    def backward(self, loss: torch.Tensor, **kwargs) -> None:
        """``loss.backward(**kwargs)``, then count the iteration (subclasses must count too)."""
        loss.backward(**kwargs)
        self._inner_count += 1

    def step(self, **kwargs) -> None:
        """Clip the gradients if configured, then ``optimizer.step(**kwargs)``."""
        if self.clip_grad_kwargs:
            self._clip_grad()
        self.optimizer.step(**kwargs)

    def zero_grad(self, **kwargs) -> None:
        """``optimizer.zero_grad(**kwargs)``."""
        self.optimizer.zero_grad(**kwargs)

    def _clip_grad(self) -> None:
        params = [p for group in self.optimizer.param_groups for p in group["params"]
                  if p.requires_grad and p.grad is not None]
        if not params:
            return
        result = self._clip_func(params, **self.clip_grad_kwargs)
        if self._clip_log_name is not None:
            if hasattr(result, "full_tensor"):  # FSDP2: a DTensor norm; log the global value
                result = result.full_tensor()
            # Looked up now, not at construction: the runner may make its hub current later.
            MessageHub.get_current_instance().update_scalar(
                f"train/{self._clip_log_name}", float(result))

    # -- accumulation -------------------------------------------------------------------------

    def optim_context(self, model: nn.Module) -> AbstractContextManager:
        """Run the forward pass in this context; it skips DDP's gradient sync mid-window.

        When this iteration will not update the parameters and ``model`` has ``no_sync`` (DDP),
        the context is ``model.no_sync()`` so gradients accumulate locally and are all-reduced
        only on the update iteration; an FSDP2 model gets ``set_requires_gradient_sync`` for the
        iteration instead (reduce-scatter only on the update iteration); otherwise it does
        nothing.
        """
        if hasattr(model, "set_requires_gradient_sync"):
            # FSDP2 reads the flag during backward, which runs after this context: set it for
            # this iteration (no reduce-scatter until the window's last micro-batch).
            model.set_requires_gradient_sync(self.should_sync())
            return _NO_CONTEXT
        if not self.should_sync() and hasattr(model, "no_sync"):
            return model.no_sync()
        # Entered every iteration: a shared no-op context costs less than a generator-based one.
        return _NO_CONTEXT

    def initialize_count_status(self, model: nn.Module, init_counts: int,
                                max_counts: int) -> None:
        """Tell the wrapper where the run starts and ends, so the last window is not lost.

        Args:
            model: The trained model (checked for BatchNorm, which accumulation changes).
            init_counts: Iterations already done (the resume point; 0 for a fresh run).
            max_counts: Total iterations of the run; -1 if unknown.
        """
        if init_counts < 0 or max_counts < -1:
            raise ValueError(f"init_counts must be >= 0 and max_counts >= -1, got "
                             f"init_counts={init_counts}, max_counts={max_counts}")
        self._inner_count = init_counts
        self._max_counts = max_counts
        if init_counts % self._accumulative_counts != 0:
            print_log(f"Resuming at iteration {init_counts}, inside an accumulation window of "
                      f"{self._accumulative_counts}: the gradients of the window's earlier "
                      "iterations were not checkpointed, so its update uses fewer samples.",
                      logger="current", level=logging.WARNING)
        if self._accumulative_counts > 1 and has_batch_norm(model):
            print_log("Gradient accumulation with BatchNorm layers: their statistics see one "
                      "micro-batch at a time, so results may differ from a larger batch.",
                      logger="current", level=logging.WARNING)

    def should_update(self) -> bool:
        """Whether the iteration just backwarded closes a window (call after backward)."""
        return (self._inner_count % self._accumulative_counts == 0
                or self._inner_count == self._max_counts)

    def should_sync(self) -> bool:
        """Whether the coming iteration will update, so DDP must all-reduce its gradients.

        Called before its backward, hence the ``+ 1``.
        """
        coming = self._inner_count + 1
        return coming % self._accumulative_counts == 0 or coming == self._max_counts

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """``loss`` divided by the size of the window the coming iteration belongs to."""
        return loss / self._loss_factor() if self._accumulative_counts > 1 else loss

    def _loss_factor(self) -> int:
        window = self._accumulative_counts
        if self._max_counts < 0:
            return window
        # The last, short window holds the iterations >= max_counts - remainder. Computed from
        # absolute numbers, a resume inside a window keeps the divisors of the fresh run.
        remainder = self._max_counts % window
        if remainder and self._inner_count >= self._max_counts - remainder:
            return remainder
        return window

    @property
    def inner_count(self) -> int:
        """Iterations backwarded so far (including those before a resume)."""
        return self._inner_count

    @property
    def max_counts(self) -> int:
        """Total iterations of the run, or -1 when unknown."""
        return self._max_counts

    @property
    def accumulative_counts(self) -> int:
        """Iterations per parameter update."""
        return self._accumulative_counts

    # -- optimizer views ----------------------------------------------------------------------

    @property
    def param_groups(self) -> list[dict]:
        """``optimizer.param_groups`` (what param schedulers change)."""
        return self.optimizer.param_groups

    @property
    def defaults(self) -> dict:
        """``optimizer.defaults``."""
        return self.optimizer.defaults

    def get_lr(self) -> dict[str, list[float]]:
        """``{'lr': [lr of each param group]}``."""
        return {"lr": [group["lr"] for group in self.optimizer.param_groups]}

    def get_momentum(self) -> dict[str, list[float]]:
        """``{'momentum': [...]}``: ``momentum`` (SGD), ``betas[0]`` (Adam family) or 0."""
        momenta = []
        for group in self.optimizer.param_groups:
            if "momentum" in group:
                momenta.append(group["momentum"])
            elif "betas" in group:
                momenta.append(group["betas"][0])
            else:
                momenta.append(0)
        return {"momentum": momenta}

    def state_dict(self) -> dict:
        """``optimizer.state_dict()`` (the same layout as an MMEngine checkpoint's)."""
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        """Load an optimizer state dict; extra keys MMEngine or AMP wrappers add are ignored."""
        state: dict[str, Any] = dict(state_dict)  # the caller's dict stays intact
        state.pop("base_param_settings", None)
        state.pop("loss_scaler", None)
        self.optimizer.load_state_dict(state)

    def _repr_fields(self) -> dict[str, Any]:
        return {"accumulative_counts": self._accumulative_counts,
                "clip_grad": self.clip_grad_kwargs, "optimizer": self.optimizer}

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self._repr_fields().items())
        return f"{type(self).__name__}({fields})"
