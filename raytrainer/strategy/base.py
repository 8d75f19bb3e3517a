"""BaseStrategy: where the model lives on this process, how it is wrapped, how its state is read.

A strategy owns the process environment (device, process group, ``env_cfg.cudnn_benchmark``),
device placement and model wrapping (DDP, FSDP ...), and how model/optimizer state is read and
written: full state dicts (single device, DDP), or this rank's shards (FSDP, ``sharded_state``).
It does not build components, run loops or write files: the runner and
:mod:`raytrainer.checkpoint` do that with what the strategy returns.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn as nn

from .. import dist
from ..checkpoint import sharded
from ..model.wrappers import unwrap_model
from ..optim import wrappers_of


class BaseStrategy:
    """Base class of strategies.

    Args:
        device: Device for this process; None picks ``cuda:<local rank>`` when CUDA is
            available, else CPU.
    """

    #: Whether model/optimizer state dicts are this rank's shards (saved with DCP) rather than
    #: the full state every rank holds.
    sharded_state = False

    def __init__(self, device: str | torch.device | None = None):
        self._device = torch.device(device) if device is not None else None
        self.cudnn_benchmark = False
        #: Process group for checkpoint collectives (DCP); None: the default group.
        self.checkpoint_group = None

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

    def setup(self, env_cfg: dict | None = None) -> None:
        """Prepare the process (join the process group, pick the CUDA device) and apply
        ``env_cfg`` (``cudnn_benchmark``)."""
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.cudnn_benchmark = bool((env_cfg or {}).get("cudnn_benchmark", False))
        if self.cudnn_benchmark:
            torch.backends.cudnn.benchmark = True

    def build_context(self):
        """The context the runner builds the model in (a sharded strategy may pick the meta
        device)."""
        return contextlib.nullcontext()

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

    def load_sharded(self, location: str, model: nn.Module, optim_wrapper=None,
                     strict: bool = True):
        """Load the weights (and ``optim_wrapper``'s state) of the sharded checkpoint at
        ``location``, whatever world size wrote it, into this rank's model (collective when
        distributed). Returns the model's missing/unexpected keys.
        """
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_state_dict,
            set_model_state_dict,
            set_state_dict,
        )

        module = self.unwrap(model)
        optimizers = _optimizers_of(optim_wrapper)
        options = StateDictOptions(strict=strict)
        if optimizers:
            model_state, optim_state = get_state_dict(module, optimizers, options=options)
            state = {"model": model_state, "optim": optim_state}
        else:
            state = {"model": get_model_state_dict(module, options=options)}
        sharded.load_into(location, state, process_group=self.checkpoint_group,
                          no_dist=not dist.is_distributed())
        if optimizers:
            return set_state_dict(module, optimizers, model_state_dict=state["model"],
                                  optim_state_dict=state["optim"], options=options)
        return set_model_state_dict(module, state["model"], options=options)

    def autocast(self, enabled: bool = True):
        """Mixed precision for evaluation loops: fp16 on GPU, bf16 on CPU; a no-op if disabled."""
        if not enabled:
            return contextlib.nullcontext()
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype)

    def barrier(self) -> None:
        dist.barrier()


def _optimizers_of(optim_wrapper) -> list:
    """The torch optimizers behind an optim wrapper (or a dict of them); [] for None."""
    return [wrapper.optimizer for wrapper in wrappers_of(optim_wrapper)]
