"""A small multilayer-perceptron classifier (the digits example's model)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import MODELS
from .base_model import BaseModel


@MODELS.register_module()
class MLPClassifier(BaseModel):
    """Flatten the input, apply Linear-ReLU(-Dropout) layers, classify.

    ``forward(inputs, data_samples, mode)``: ``'loss'`` returns ``dict(loss=cross_entropy)``,
    ``'predict'`` returns ``(scores, labels)`` for the ``Accuracy`` metric, ``'tensor'`` the
    logits.

    Args:
        in_features: Input size after flattening.
        hidden_dims: Sizes of the hidden layers.
        num_classes: Number of classes.
        dropout: Dropout probability after each hidden layer.
        data_preprocessor: See ``BaseModel``.
        init_cfg: See ``BaseModule``.
    """

    def __init__(self, in_features: int = 64, hidden_dims: Sequence[int] = (256, 256),
                 num_classes: int = 10, dropout: float = 0.0, data_preprocessor=None,
                 init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        layers: list[nn.Module] = []
        width = in_features
        for hidden in hidden_dims:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, inputs: torch.Tensor, data_samples: torch.Tensor | None = None,
                mode: str = "tensor"):
        logits = self.net(inputs.flatten(1))
        if mode == "loss":
            return {"loss": F.cross_entropy(logits, data_samples)}
        if mode == "predict":
            return logits, data_samples
        if mode == "tensor":
            return logits
        raise ValueError(f"MLPClassifier: mode must be 'loss', 'predict' or 'tensor', got {mode!r}")
