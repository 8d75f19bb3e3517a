"""Data parallelism with torch DDP: one process per device, gradients all-reduced per step."""
from __future__ import annotations

import os

import torch
import torch.distributed as torch_dist
import torch.nn as nn

from ..model.ddp import MMDistributedDataParallel
from ..registry import STRATEGIES
from .base import BaseStrategy

_DDP_OPTIONS = ("find_unused_parameters", "broadcast_buffers", "gradient_as_bucket_view",
                "static_graph")
_DDP_WRAPPERS = (None, "MMDistributedDataParallel", "DistributedDataParallel")


def ddp_strategy_cfg(model_wrapper_cfg: dict | None = None, find_unused_parameters: bool = False,
                     **kwargs) -> dict:
    """The ``DDPStrategy`` config for MMEngine's ``model_wrapper_cfg`` and top-level
    ``find_unused_parameters`` keys, so an MMEngine config's DDP options keep working.

    Raises:
        ValueError: ``model_wrapper_cfg`` names another wrapper or an unknown option.
    """
    wrapper = dict(model_wrapper_cfg or {})
    wrapper_type = wrapper.pop("type", None)
    if isinstance(wrapper_type, type):
        wrapper_type = wrapper_type.__name__
    if wrapper_type not in _DDP_WRAPPERS:
        raise ValueError(f"model_wrapper_cfg.type={wrapper_type!r} is not supported; use "
                         "'MMDistributedDataParallel' or a 'strategy' config")
    unknown = sorted(set(wrapper) - set(_DDP_OPTIONS))
    if unknown:
        raise ValueError(f"model_wrapper_cfg: unknown option(s) {unknown}; DDPStrategy takes "
                         f"{list(_DDP_OPTIONS)}")
    if find_unused_parameters:
        wrapper["find_unused_parameters"] = True
    return dict(type="DDPStrategy", **kwargs, **wrapper)


def join_process_group(launcher: str, backend: str | None, device: torch.device | None,
                       strategy: str) -> torch.device | None:
    """Attach this process to its process group; returns its device (Ray's choice under Ray).

    Under Ray Train (``launcher='ray'``) Ray has created the group and chosen the device; with
    ``launcher='pytorch'`` (torchrun) the group is created here from the environment.
    """
    if launcher == "ray" and device is None:
        from ray.train.torch import get_device

        device = get_device()
    if not torch_dist.is_initialized():
        if launcher == "ray":
            raise RuntimeError(f"{strategy}(launcher='ray') runs inside Ray Train workers, "
                               "where the process group already exists; use "
                               "raytrainer.launch.train or `raytrainer train`")
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        torch_dist.init_process_group(backend=backend)
    return device


@STRATEGIES.register_module()
class DDPStrategy(BaseStrategy):
    """Wrap the model in DistributedDataParallel.

    The process group comes from the launcher: under Ray Train (``launcher='ray'``) Ray has
    already created it and chosen this worker's device; with ``launcher='pytorch'`` (torchrun)
    it is created here from the ``RANK``/``WORLD_SIZE``/``MASTER_ADDR`` environment.

    Args:
        launcher: ``'ray'`` or ``'pytorch'``.
        backend: ``'nccl'`` or ``'gloo'``; defaults to nccl on GPU, gloo on CPU.
        find_unused_parameters, broadcast_buffers, gradient_as_bucket_view, static_graph:
            Passed to ``DistributedDataParallel``.
        device: Force a device (normally chosen by the launcher).
    """

    def __init__(self, launcher: str = "ray", backend: str | None = None,
                 find_unused_parameters: bool = False, broadcast_buffers: bool = True,
                 gradient_as_bucket_view: bool = False, static_graph: bool = False,
                 device: str | torch.device | None = None):
        super().__init__(device)
        if launcher not in ("ray", "pytorch"):
            raise ValueError(f"DDPStrategy: launcher must be 'ray' or 'pytorch', got "
                             f"{launcher!r}")
        self.launcher = launcher
        self.backend = backend
        self.ddp_kwargs = dict(find_unused_parameters=find_unused_parameters,
                               broadcast_buffers=broadcast_buffers,
                               gradient_as_bucket_view=gradient_as_bucket_view,
                               static_graph=static_graph)

    def setup(self, env_cfg: dict | None = None) -> None:
        self._device = join_process_group(self.launcher, self.backend, self._device,
                                          type(self).__name__)
        super().setup(env_cfg)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        model = model.to(self.device)
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        kwargs = dict(self.ddp_kwargs)
        if kwargs["broadcast_buffers"]:
            del kwargs["broadcast_buffers"]  # the default; newer torch warns when it is passed
        return MMDistributedDataParallel(model, device_ids=device_ids, **kwargs)
