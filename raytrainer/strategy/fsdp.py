"""Fully sharded data parallelism with FSDP2 (``torch.distributed.fsdp.fully_shard``).

Each rank holds a 1/N slice of every parameter, gradient and optimizer state; the blocks named
in ``shard_modules`` (and then the root) are sharded as units, so a block's parameters are
gathered just before its forward/backward and freed after. State dicts are this rank's shards
(DTensors): checkpoints are written by every rank with DCP (``raytrainer.checkpoint.sharded``)
and load on any world size.
"""
from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.distributed as torch_dist
import torch.nn as nn

from .. import dist
from ..optim import wrappers_of
from ..registry import STRATEGIES
from .base import BaseStrategy
from .ddp import join_process_group

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16,
           "fp16": torch.float16, "half": torch.float16, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16}
_MIXED_PRECISION_KEYS = ("param_dtype", "reduce_dtype", "output_dtype", "cast_forward_inputs")
# MMEngine's FSDP ``model_wrapper`` keys that mean something for FSDP2
_MODEL_WRAPPER_KEYS = ("type", "sharding_strategy", "cpu_offload", "mixed_precision",
                       "reshard_after_forward")
_FSDP_WRAPPERS = (None, "MMFullyShardedDataParallel", "FullyShardedDataParallel")


def _dtype(value: Any, key: str) -> torch.dtype | None:
    if value is None or isinstance(value, torch.dtype):
        return value
    name = str(value).replace("torch.", "")
    if name not in _DTYPES:
        raise ValueError(f"FSDPStrategy: mixed_precision.{key}={value!r} is not a dtype; "
                         f"expected one of {sorted(_DTYPES)}")
    return _DTYPES[name]


def _mixed_precision_policy(mixed_precision: Mapping | None):
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if not mixed_precision:
        return MixedPrecisionPolicy()
    if not isinstance(mixed_precision, Mapping):
        raise TypeError("FSDPStrategy: mixed_precision must be a dict such as "
                        "dict(param_dtype='bfloat16', reduce_dtype='float32'), got "
                        f"{mixed_precision!r}")
    options = dict(mixed_precision)
    options.pop("buffer_dtype", None)  # FSDP1's; FSDP2 keeps buffers as they are
    unknown = sorted(set(options) - set(_MIXED_PRECISION_KEYS))
    if unknown:
        raise ValueError(f"FSDPStrategy: unknown mixed_precision key(s) {unknown}; expected "
                         f"{list(_MIXED_PRECISION_KEYS)}")
    kwargs = {key: _dtype(value, key) for key, value in options.items()
              if key != "cast_forward_inputs"}
    if "cast_forward_inputs" in options:
        kwargs["cast_forward_inputs"] = bool(options["cast_forward_inputs"])
    return MixedPrecisionPolicy(**kwargs)


def fsdp_options_from_model_wrapper(model_wrapper: Mapping) -> dict:
    """FSDPStrategy options for MMEngine's FSDP ``model_wrapper`` / ``model_wrapper_cfg`` dict
    (``sharding_strategy``, ``cpu_offload``, ``mixed_precision``).

    Raises:
        ValueError: A key FSDP2 has no equivalent for, or another wrapper type.
    """
    wrapper = dict(model_wrapper)
    wrapper_type = wrapper.pop("type", None)
    wrapper_type = getattr(wrapper_type, "__name__", wrapper_type)
    if wrapper_type not in _FSDP_WRAPPERS:
        raise ValueError(f"model_wrapper type={wrapper_type!r} is not an FSDP wrapper")
    unknown = sorted(set(wrapper) - set(_MODEL_WRAPPER_KEYS))
    if unknown:
        raise ValueError(f"FSDPStrategy: model_wrapper key(s) {unknown} have no FSDP2 "
                         f"equivalent; supported: {list(_MODEL_WRAPPER_KEYS[1:])}")
    options: dict[str, Any] = {}
    strategy = wrapper.pop("sharding_strategy", None)
    if strategy is not None:
        name = getattr(strategy, "name", str(strategy)).upper()
        if name not in ("FULL_SHARD", "SHARD_GRAD_OP"):
            raise ValueError(f"FSDPStrategy: sharding_strategy={strategy!r} is not supported; "
                             "FULL_SHARD (reshard after forward) or SHARD_GRAD_OP (keep the "
                             "gathered parameters until backward)")
        options["reshard_after_forward"] = name == "FULL_SHARD"
    options.update(wrapper)
    offload = options.get("cpu_offload")
    if offload is not None and not isinstance(offload, bool):
        options["cpu_offload"] = bool(getattr(offload, "offload_params", offload))
    return options


@STRATEGIES.register_module()
class FSDPStrategy(BaseStrategy):
    """Shard the model, its gradients and optimizer state over the ranks with FSDP2.

    Args:
        launcher: ``'ray'`` (inside Ray Train workers) or ``'pytorch'`` (torchrun).
        backend: ``'nccl'`` or ``'gloo'``; defaults to nccl on GPU, gloo on CPU.
        shard_modules: Class names of the submodules sharded as units (e.g. ``['Block']``);
            the root is always sharded last. Empty: the whole model is one unit.
        reshard_after_forward: Free gathered parameters after each unit's forward (less
            memory; gathered again for backward). False keeps them until backward.
        mixed_precision: ``dict(param_dtype='bfloat16', reduce_dtype='float32',
            output_dtype=None, cast_forward_inputs=True)`` -> ``MixedPrecisionPolicy``.
        cpu_offload: Keep sharded parameters, gradients and optimizer state in CPU memory
            (``CPUOffloadPolicy``); the optimizer step runs on the CPU.
        meta_init: Build the model on the meta device and materialise only this rank's shards
            (``reset_parameters`` per module): a model larger than one device builds; its
            initial weights differ from a full build with the same seed.
        model_wrapper: MMEngine's FSDP wrapper dict (``sharding_strategy``, ``cpu_offload``,
            ``mixed_precision``), mapped onto the options above.
        device: Force a device (normally chosen by the launcher).
    """

    sharded_state = True

    def __init__(self, launcher: str = "ray", backend: str | None = None,
                 shard_modules: Sequence[str] | None = None, reshard_after_forward: bool = True,
                 mixed_precision: Mapping | None = None, cpu_offload: bool = False,
                 meta_init: bool = False, model_wrapper: Mapping | None = None,
                 device: str | torch.device | None = None):
        super().__init__(device)
        if launcher not in ("ray", "pytorch"):
            raise ValueError(f"FSDPStrategy: launcher must be 'ray' or 'pytorch', got "
                             f"{launcher!r}")
        if model_wrapper:
            mapped = fsdp_options_from_model_wrapper(model_wrapper)
            reshard_after_forward = mapped.get("reshard_after_forward", reshard_after_forward)
            mixed_precision = mapped.get("mixed_precision", mixed_precision)
            cpu_offload = mapped.get("cpu_offload", cpu_offload)
        if isinstance(shard_modules, str) or not all(
                isinstance(name, str) for name in (shard_modules or [])):
            raise TypeError("FSDPStrategy: shard_modules must be a list of class names, e.g. "
                            f"['Block'], got {shard_modules!r}")
        self.launcher = launcher
        self.backend = backend
        self.shard_modules = list(shard_modules or [])
        self.reshard_after_forward = bool(reshard_after_forward)
        self.mp_policy = _mixed_precision_policy(mixed_precision)
        self.cpu_offload = bool(cpu_offload)
        self.meta_init = bool(meta_init)
        self.model: nn.Module | None = None

    def setup(self, env_cfg: dict | None = None) -> None:
        self._device = join_process_group(self.launcher, self.backend, self._device,
                                          type(self).__name__)
        super().setup(env_cfg)
        # DCP's collectives (and its background saves) run on their own gloo group, apart from
        # training's collectives (as TorchTitan does for asynchronous checkpoints). Also on one
        # rank: an NCCL default group cannot run DCP's CPU-side collectives.
        self.checkpoint_group = torch_dist.new_group(backend="gloo")

    def build_context(self):
        """The context the runner builds the model in (the meta device with ``meta_init``)."""
        return torch.device("meta") if self.meta_init else contextlib.nullcontext()

    def prepare_model(self, model: nn.Module) -> nn.Module:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy, fully_shard

        if not self.meta_init:
            model = model.to(self.device)
        mesh = init_device_mesh(self.device.type, (dist.get_world_size(),))
        kwargs = dict(mesh=mesh, reshard_after_forward=self.reshard_after_forward,
                      mp_policy=self.mp_policy,
                      offload_policy=CPUOffloadPolicy(pin_memory=self.device.type == "cuda")
                      if self.cpu_offload else OffloadPolicy())
        wanted = set(self.shard_modules)
        found = set()
        for module in list(model.modules())[1:]:
            name = type(module).__name__
            if name in wanted:
                fully_shard(module, **kwargs)
                found.add(name)
        missing = sorted(wanted - found)
        if missing:
            raise ValueError(f"FSDPStrategy: shard_modules {missing} name no submodule of "
                             f"{type(model).__name__}; its submodule classes are "
                             f"{sorted({type(m).__name__ for m in model.modules()})}")
        # The root stays gathered after forward (FSDP2's own default for the root): backward
        # needs its parameters at once, so resharding them would only add an all-gather.
        fully_shard(model, **dict(kwargs, reshard_after_forward=None
                                  if self.reshard_after_forward else False))
        if self.meta_init:
            model.to_empty(device="cpu" if self.cpu_offload else self.device)
            for module in model.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
        self.model = model
        return model

    # ---- state ------------------------------------------------------------------------
    def model_state_dict(self, model: nn.Module) -> dict:
        """This rank's shards of the model state (DTensors), keyed as the plain model's."""
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        return get_model_state_dict(model)

    def optim_state_dict(self, optim_wrapper) -> dict:
        """This rank's shards of the optimizer state, keyed by parameter name."""
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        return get_optimizer_state_dict(self._model(), _single_optimizer(optim_wrapper))

    def load_model_state_dict(self, model: nn.Module, state: dict, strict: bool = True):
        """Load full (unsharded) weights, e.g. from a DDP checkpoint; each rank keeps its
        shards."""
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
        )

        return set_model_state_dict(
            model, state, options=StateDictOptions(full_state_dict=True, strict=strict))

    def load_optim_state_dict(self, optim_wrapper, state: dict) -> None:
        """Load a full optimizer state dict (``optimizer.state_dict()``'s layout, from a
        full-state checkpoint): parameters are matched by position, as the saving run's
        optimizer listed them, and every rank keeps its shards."""
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_optimizer_state_dict,
        )

        optimizer = _single_optimizer(optim_wrapper)
        names = {id(p): name for name, p in self._model().named_parameters()}
        order = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
        by_index = dict(enumerate(order))
        state = dict(state)
        state.pop("loss_scaler", None)
        state.pop("base_param_settings", None)
        named = {"state": {by_index[int(index)]: value
                           for index, value in state.get("state", {}).items()},
                 "param_groups": [{**group, "params": [by_index[int(i)] for i in group["params"]]}
                                  for group in state.get("param_groups", [])]}
        set_optimizer_state_dict(self._model(), optimizer, named,
                                 options=StateDictOptions(full_state_dict=True))

    def _model(self) -> nn.Module:
        if self.model is None:
            raise RuntimeError("FSDPStrategy: the model is not prepared yet")
        return self.model


def _single_optimizer(optim_wrapper) -> torch.optim.Optimizer:
    if wrappers_of(optim_wrapper) != [optim_wrapper]:
        raise NotImplementedError("FSDPStrategy supports one optimizer (an OptimWrapper); an "
                                  "OptimWrapperDict of several is not supported yet")
    return optim_wrapper.optimizer
