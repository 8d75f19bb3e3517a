"""BaseStrategy: where the model lives on this process, how it is wrapped, how its state is read.

A strategy owns device placement, model wrapping (DDP, FSDP ...) and turning model/optimizer
state into plain state dicts and back. It does not build components, run loops or write files:
the runner and the checkpoint module do that with what the strategy returns.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn

from .. import dist
from ..model.wrappers import unwrap_model


class BaseStrategy:
    """Base class of strategies.

    Args:
        device: Device for this process; None picks ``cuda:<local rank>`` when CUDA is
            available, else CPU.
    """

    def __init__(self, device: str | torch.device | None = None):
        self._device = torch.device(device) if device is not None else None

    @property
    def device(self) -> torch.device:
        if self._device is None:
            if torch.cuda.is_available():
                self._device = torch.device("cuda", dist.get_local_rank())
            else:
                self._device = torch.device("cpu")
        return self._device

    @property
    def rank(self) -> int:
        return dist.get_rank()

    @property
    def world_size(self) -> int:
        return dist.get_world_size()

    @property
    def distributed(self) -> bool:
        return dist.is_distributed()

    def setup(self) -> None:
        """Prepare the process (join the process group, pick the CUDA device)."""
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Move the model to the device and wrap it; returns what the loops call."""
        return model.to(self.device)

    def unwrap(self, model: nn.Module) -> nn.Module:
        return unwrap_model(model)

    def model_state_dict(self, model: nn.Module) -> dict:
        """The full (unsharded, unwrapped) model state dict, on CPU."""
        return {k: v.detach().cpu() for k, v in self.unwrap(model).state_dict().items()}

    def load_model_state_dict(self, model: nn.Module, state: dict, strict: bool = True):
        return self.unwrap(model).load_state_dict(state, strict=strict)

    def optim_state_dict(self, optim_wrapper) -> dict:
        return optim_wrapper.state_dict()

    def load_optim_state_dict(self, optim_wrapper, state: dict) -> None:
        optim_wrapper.load_state_dict(state)

    def autocast(self, enabled: bool = True):
        """Mixed precision for evaluation loops: fp16 on GPU, bf16 on CPU; a no-op if disabled."""
        if not enabled:
            return contextlib.nullcontext()
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype)

    def barrier(self) -> None:
        dist.barrier()
