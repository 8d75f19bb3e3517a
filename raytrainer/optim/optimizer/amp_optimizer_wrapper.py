"""``AmpOptimWrapper``: ``OptimWrapper`` plus ``torch.autocast`` and, for fp16, a ``GradScaler``.

It owns the autocast dtype, the loss scaler and the scaler's share of the state dict.
Accumulation and clipping stay in :class:`OptimWrapper`.
"""
from __future__ import annotations

import logging
import numbers
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn as nn

from ...logging import print_log
from ...registry import OPTIM_WRAPPERS
from ._model_utils import device_type_of
from .optimizer_wrapper import OptimWrapper

__all__ = ["AmpOptimWrapper"]

_VALID_DTYPES = ("float16", "bfloat16", "float32", "float64")
# Lower precisions that autocast can run in; for float32/float64 autocast would be a no-op
# that torch warns about, so it stays disabled.
_AUTOCAST_DTYPES = (torch.float16, torch.bfloat16)


def _resolve_dtype(dtype: str | torch.dtype | None, device_type: str) -> torch.dtype:
    if dtype is None:
        # torch's own default per device: float16 on CUDA, bfloat16 on CPU.
        return torch.get_autocast_dtype(device_type)
    if isinstance(dtype, str):
        if dtype not in _VALID_DTYPES:
            raise ValueError(f"dtype must be one of {_VALID_DTYPES} or a torch.dtype, got "
                             f"{dtype!r}")
        return getattr(torch, dtype)
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be None, a str in {_VALID_DTYPES} or a torch.dtype, got "
                        f"{dtype!r}")
    return dtype


def _build_scaler(loss_scale: Any, device_type: str,
                  use_fsdp: bool) -> tuple[torch.amp.GradScaler, float | None]:
    """The GradScaler for ``loss_scale``, and the fixed scale to keep for a static one."""
    if use_fsdp:
        from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler
        scaler_cls = ShardedGradScaler
    else:
        scaler_cls = torch.amp.GradScaler
    if loss_scale == "dynamic":
        return scaler_cls(device_type), None
    if isinstance(loss_scale, numbers.Real) and not isinstance(loss_scale, bool):
        if loss_scale <= 0:
            raise ValueError(f"a static loss_scale must be > 0, got {loss_scale}")
        return scaler_cls(device_type, init_scale=float(loss_scale)), float(loss_scale)
    if isinstance(loss_scale, dict):
        return scaler_cls(device_type, **loss_scale), None
    raise TypeError("loss_scale must be 'dynamic', a positive number (static scale) or a dict "
                    f"of GradScaler arguments, got {loss_scale!r}")


@OPTIM_WRAPPERS.register_module()
class AmpOptimWrapper(OptimWrapper):
    """Mixed-precision training: autocast in ``optim_context``, loss scaling for fp16.

    The device comes from the optimizer's parameters (CUDA or CPU). With fp16 a
    ``torch.amp.GradScaler`` scales the loss before backward, unscales the gradients before
    clipping and skips steps whose gradients overflowed. bf16 has fp32's exponent range, so it
    runs without a scaler; it works on CPU as well as on GPU.

    Args:
        loss_scale: ``'dynamic'`` (GradScaler defaults), a number (a fixed scale) or a dict of
            ``GradScaler`` keyword arguments. Used only for fp16.
        dtype: ``'float16'``, ``'bfloat16'`` (or the torch dtypes), ``'float32'``/``'float64'``
            (autocast off), or None for torch's default on the device (fp16 on CUDA, bf16 on
            CPU).
        use_fsdp: Use FSDP's ``ShardedGradScaler`` (FSDP1 with sharded gradients).
        **kwargs: :class:`OptimWrapper` arguments (``optimizer``, ``accumulative_counts``,
            ``clip_grad``).

    Raises:
        RuntimeError: bf16 on a CUDA device that does not support it.
    """

    valid_dtypes = _VALID_DTYPES

    def __init__(self, loss_scale: str | float | dict = "dynamic",
                 dtype: str | torch.dtype | None = None, use_fsdp: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.device_type = device_type_of(
            p for group in self.optimizer.param_groups for p in group["params"])
        self.cast_dtype = _resolve_dtype(dtype, self.device_type)
        if (self.device_type == "cuda" and self.cast_dtype == torch.bfloat16
                and not torch.cuda.is_bf16_supported()):
            raise RuntimeError("this CUDA device does not support bfloat16; use "
                               "dtype='float16' in the AmpOptimWrapper config")
        self.loss_scaler: torch.amp.GradScaler | None = None
        self._scale_update_param: float | None = None
        if self.cast_dtype == torch.float16:
            self.loss_scaler, self._scale_update_param = _build_scaler(
                loss_scale, self.device_type, use_fsdp)
        elif loss_scale != "dynamic":
            print_log(f"AmpOptimWrapper: loss_scale={loss_scale!r} is ignored because dtype "
                      f"{self.cast_dtype} needs no loss scaling (only float16 does).",
                      logger="current", level=logging.WARNING)

    def backward(self, loss: torch.Tensor, **kwargs) -> None:
        """Backward the (scaled, for fp16) loss and count the iteration."""
        if self.loss_scaler is not None:
            loss = self.loss_scaler.scale(loss)
        super().backward(loss, **kwargs)

    def step(self, **kwargs) -> None:
        """Unscale, clip, then let the scaler step (skipping overflowed steps) and update."""
        if self.loss_scaler is None:
            super().step(**kwargs)
            return
        if self.clip_grad_kwargs:
            # Clip thresholds are in real gradient units, so unscale first.
            self.loss_scaler.unscale_(self.optimizer)
            self._clip_grad()
        self.loss_scaler.step(self.optimizer, **kwargs)
        self.loss_scaler.update(self._scale_update_param)

    @contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        """:meth:`OptimWrapper.optim_context` plus ``torch.autocast`` on the model's device."""
        device_type = device_type_of(model.parameters(), default=self.device_type)
        enabled = self.cast_dtype in _AUTOCAST_DTYPES
        with super().optim_context(model), torch.autocast(device_type, dtype=self.cast_dtype,
                                                          enabled=enabled):
            yield

    def state_dict(self) -> dict:
        """The optimizer's state dict plus ``'loss_scaler'`` when a scaler is used."""
        state = super().state_dict()
        if self.loss_scaler is not None:
            state["loss_scaler"] = self.loss_scaler.state_dict()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        """Load the optimizer state and, when both sides have one, the scaler state."""
        scaler_state = state_dict.get("loss_scaler")
        if scaler_state is not None and self.loss_scaler is not None:
            self.loss_scaler.load_state_dict(scaler_state)
        super().load_state_dict(state_dict)

    def _repr_fields(self) -> dict[str, Any]:
        return {"dtype": self.cast_dtype, "loss_scaler": self.loss_scaler,
                **super()._repr_fields()}
