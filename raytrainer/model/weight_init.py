"""Weight initialisers for ``init_cfg`` (``dict(type='Normal', layer='Linear', std=0.01)``)."""
from __future__ import annotations

import torch.nn as nn

from ..registry import WEIGHT_INITIALIZERS


class _Initializer:
    """Applies ``init_fn`` to the weights of every submodule whose class name is in ``layer``.

    Args:
        layer: Class name(s) to initialise (``'Linear'``, ``['Conv2d', 'Linear']``); None means
            every module that has a ``weight``.
        bias: Value the bias is filled with.
    """

    def __init__(self, layer: str | list[str] | None = None, bias: float = 0.0):
        self.layers = None if layer is None else {layer} if isinstance(layer, str) else set(layer)
        self.bias = bias

    def __call__(self, module: nn.Module) -> None:
        for sub in module.modules():
            if self.layers is not None and type(sub).__name__ not in self.layers:
                continue
            weight = getattr(sub, "weight", None)
            if isinstance(weight, nn.Parameter):
                self.init_weight(weight)
                bias = getattr(sub, "bias", None)
                if isinstance(bias, nn.Parameter):
                    nn.init.constant_(bias, self.bias)

    def init_weight(self, weight: nn.Parameter) -> None:
        raise NotImplementedError


@WEIGHT_INITIALIZERS.register_module(name=["Constant", "ConstantInit"])
class ConstantInit(_Initializer):
    def __init__(self, val: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.val = val

    def init_weight(self, weight):
        nn.init.constant_(weight, self.val)


@WEIGHT_INITIALIZERS.register_module(name=["Normal", "NormalInit"])
class NormalInit(_Initializer):
    def __init__(self, mean: float = 0.0, std: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.mean, self.std = mean, std

    def init_weight(self, weight):
        nn.init.normal_(weight, self.mean, self.std)


@WEIGHT_INITIALIZERS.register_module(name=["Uniform", "UniformInit"])
class UniformInit(_Initializer):
    def __init__(self, a: float = 0.0, b: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.a, self.b = a, b

    def init_weight(self, weight):
        nn.init.uniform_(weight, self.a, self.b)


@WEIGHT_INITIALIZERS.register_module(name=["Xavier", "XavierInit"])
class XavierInit(_Initializer):
    def __init__(self, gain: float = 1.0, distribution: str = "normal", **kwargs):
        super().__init__(**kwargs)
        if distribution not in ("normal", "uniform"):
            raise ValueError(f"Xavier init: distribution must be 'normal' or 'uniform', got "
                             f"{distribution!r}")
        self.gain, self.distribution = gain, distribution

    def init_weight(self, weight):
        fn = nn.init.xavier_normal_ if self.distribution == "normal" else nn.init.xavier_uniform_
        fn(weight, gain=self.gain)


@WEIGHT_INITIALIZERS.register_module(name=["Kaiming", "KaimingInit"])
class KaimingInit(_Initializer):
    def __init__(self, a: float = 0, mode: str = "fan_out", nonlinearity: str = "relu",
                 distribution: str = "normal", **kwargs):
        super().__init__(**kwargs)
        if distribution not in ("normal", "uniform"):
            raise ValueError(f"Kaiming init: distribution must be 'normal' or 'uniform', got "
                             f"{distribution!r}")
        self.a, self.mode, self.nonlinearity = a, mode, nonlinearity
        self.distribution = distribution

    def init_weight(self, weight):
        fn = nn.init.kaiming_normal_ if self.distribution == "normal" else \
            nn.init.kaiming_uniform_
        fn(weight, a=self.a, mode=self.mode, nonlinearity=self.nonlinearity)
