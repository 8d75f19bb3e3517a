"""Weight averaging of a model: exponential moving average (EMA) and stochastic weight average.

This module owns the averaged copy of a model and the averaging rules. It does not decide when
to update, nor swap weights into the trained model; :class:`raytrainer.hooks.EMAHook` does that.

The averaged model's state dict is ``module.<name>`` tensors plus a ``steps`` counter, so it loads
with ``torch.load(weights_only=True)`` and matches MMEngine's ``ema_state_dict`` layout.
"""
from __future__ import annotations

import copy
import logging

import torch
import torch.nn as nn

from ..logging import print_log
from ..registry import MODELS


class BaseAveragedModel(nn.Module):
    """A copy of ``model`` whose weights are a running average of ``model``'s weights.

    The first :meth:`update_parameters` call copies the source weights; afterwards every
    ``interval``-th call folds the source weights into the average with :meth:`avg_func`.
    Subclasses implement :meth:`avg_func`.

    Args:
        model: The model to average. It is deep-copied; the copy never requires grad.
        interval: Average on every ``interval``-th update (the other updates only count).
        device: Keep the averaged copy on this device (default: where ``model`` is).
        update_buffers: Average the buffers (BatchNorm running stats ...) too. When False the
            buffers are copied from the source on every update.
    """

    def __init__(self, model: nn.Module, interval: int = 1,
                 device: torch.device | str | None = None, update_buffers: bool = False) -> None:
        super().__init__()
        if int(interval) != interval or interval < 1:
            raise ValueError(f"{type(self).__name__}: interval must be a positive integer, got "
                             f"{interval!r}")
        self.module = copy.deepcopy(model).requires_grad_(False)
        if device is not None:
            self.module = self.module.to(device)
        self.interval = int(interval)
        self.update_buffers = update_buffers
        self.register_buffer("steps", torch.tensor(0, dtype=torch.long, device=device))

    @property
    def avg_parameters(self) -> dict[str, torch.Tensor]:
        """The averaged tensors by name (parameters, plus buffers when ``update_buffers``).

        Looked up on every call rather than cached, so that moving the module (``.to()``) never
        leaves stale references behind.
        """
        if self.update_buffers:
            return self.module.state_dict()
        return dict(self.module.named_parameters())

    def avg_func(self, averaged_param: torch.Tensor, source_param: torch.Tensor,
                 steps: int) -> None:
        """Fold ``source_param`` into ``averaged_param`` in place.

        Args:
            averaged_param: The running average (updated in place).
            source_param: The source model's current value, on the averaged tensor's device.
            steps: How many updates happened before this one.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement avg_func")

    def _average(self, averaged: list[torch.Tensor], sources: list[torch.Tensor],
                 steps: int) -> None:
        """Average several tensors; subclasses may batch the work (EMA uses foreach kernels)."""
        for averaged_param, source_param in zip(averaged, sources):
            self.avg_func(averaged_param, source_param, steps)

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        """Count one update and, on the first and every ``interval``-th, average ``model`` in.

        Args:
            model: The source model; its state dict keys must match the averaged copy's.
        """
        sources = model.state_dict() if self.update_buffers else dict(model.named_parameters())
        steps = int(self.steps)
        targets = self.avg_parameters
        if steps == 0:
            for name, target in targets.items():
                target.copy_(sources[name])
        elif steps % self.interval == 0:
            averaged, inputs = [], []
            for name, target in targets.items():
                source = sources[name].detach()
                if target.dtype.is_floating_point:
                    averaged.append(target)
                    inputs.append(source.to(device=target.device, dtype=target.dtype))
                else:
                    # Integer state (num_batches_tracked) is a counter, not something to average.
                    target.copy_(source)
            self._average(averaged, inputs, steps)
        if not self.update_buffers:
            source_buffers = dict(model.named_buffers())
            for name, buffer in self.module.named_buffers():
                buffer.copy_(source_buffers[name])
        self.steps += 1


@MODELS.register_module()
class StochasticWeightAverage(BaseAveragedModel):
    """Stochastic weight averaging (Izmailov et al., 2018): the plain mean of the averaged
    snapshots, ``avg += (source - avg) / (n + 1)`` for the n-th snapshot."""

    def avg_func(self, averaged_param: torch.Tensor, source_param: torch.Tensor,
                 steps: int) -> None:
        averaged_param.add_(source_param - averaged_param,
                            alpha=1.0 / float(steps // self.interval + 1))


@MODELS.register_module()
class ExponentialMovingAverage(BaseAveragedModel):
    """Exponential moving average: ``avg = avg * (1 - momentum) + source * momentum``.

    ``momentum`` is the weight of the NEW value (MMEngine's convention, the opposite of the
    ``decay`` used by some other libraries), so it is small: 0.0002 keeps a long memory.

    Args:
        model: The model to average.
        momentum: Weight of the source model in each update, in (0, 1).
        interval: See :class:`BaseAveragedModel`.
        device: See :class:`BaseAveragedModel`.
        update_buffers: See :class:`BaseAveragedModel`.
    """

    def __init__(self, model: nn.Module, momentum: float = 0.0002, interval: int = 1,
                 device: torch.device | str | None = None, update_buffers: bool = False) -> None:
        super().__init__(model, interval, device, update_buffers)
        if not 0.0 < momentum < 1.0:
            raise ValueError(f"{type(self).__name__}: momentum must be in (0, 1), got {momentum}")
        if momentum > 0.5:
            print_log(f"{type(self).__name__}: momentum={momentum} is the weight of the new "
                      "value, usually a small number such as 0.0002; check that you did not "
                      "mean 1 - momentum", logger="current", level=logging.WARNING)
        self.momentum = momentum

    def _momentum(self, steps: int) -> float:
        return self.momentum

    def avg_func(self, averaged_param: torch.Tensor, source_param: torch.Tensor,
                 steps: int) -> None:
        averaged_param.lerp_(source_param, self._momentum(steps))

    def _average(self, averaged: list[torch.Tensor], sources: list[torch.Tensor],
                 steps: int) -> None:
        if type(self).avg_func is not ExponentialMovingAverage.avg_func:
            super()._average(averaged, sources, steps)  # a subclass changed the rule
        elif averaged:
            # One fused kernel per device/dtype group instead of one launch per tensor.
            torch._foreach_lerp_(averaged, sources, self._momentum(steps))


@MODELS.register_module()
class MomentumAnnealingEMA(ExponentialMovingAverage):
    """EMA whose momentum starts large and anneals: ``max(momentum, gamma / (gamma + steps))``.

    Early averages then follow the fast-changing model closely instead of remembering the
    random initialisation for a long time.

    Args:
        model: The model to average.
        momentum: The smallest momentum, reached after about ``gamma / momentum`` updates.
        gamma: Larger values anneal more slowly; must be positive.
        interval: See :class:`BaseAveragedModel`.
        device: See :class:`BaseAveragedModel`.
        update_buffers: See :class:`BaseAveragedModel`.
    """

    def __init__(self, model: nn.Module, momentum: float = 0.0002, gamma: int = 100,
                 interval: int = 1, device: torch.device | str | None = None,
                 update_buffers: bool = False) -> None:
        super().__init__(model, momentum, interval, device, update_buffers)
        if gamma <= 0:
            raise ValueError(f"MomentumAnnealingEMA: gamma must be positive, got {gamma}")
        self.gamma = gamma

    def _momentum(self, steps: int) -> float:
        return max(self.momentum, self.gamma / (self.gamma + steps))


__all__ = ["BaseAveragedModel", "ExponentialMovingAverage", "MomentumAnnealingEMA",
           "StochasticWeightAverage"]
