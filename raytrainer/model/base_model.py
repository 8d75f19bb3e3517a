"""BaseModel: the train/val/test step contract between a model and the loops."""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn as nn

from ..registry import MODELS
from .base_module import BaseModule


def run_forward(module: nn.Module, data: Any, mode: str) -> Any:
    """Call ``module`` on a preprocessed batch: a dict as keywords, a list/tuple as positions."""
    if isinstance(data, dict):
        return module(**data, mode=mode)
    if isinstance(data, (list, tuple)):
        return module(*data, mode=mode)
    raise TypeError(f"a preprocessed batch must be a dict, list or tuple, got "
                    f"{type(data).__name__}")


def _mean(value: torch.Tensor) -> torch.Tensor:
    # A scalar loss is its own mean; skipping the op saves an autograd node per step.
    return value if value.dim() == 0 else value.mean()


def _sum(values: list):
    """Sum without the ``0 +`` that ``sum()`` adds (same value, one autograd node fewer)."""
    if not values:
        return 0
    total = values[0]
    for value in values[1:]:
        total = total + value
    return total


class BaseModel(BaseModule):
    """Base class of models trained by the Runner.

    Subclasses implement ``forward(*inputs, mode='tensor'|'predict'|'loss')``. ``mode='loss'``
    returns a dict of losses (tensors or lists of tensors; keys containing ``'loss'`` are summed
    into the total), ``'predict'`` returns what the evaluator's metrics consume, ``'tensor'``
    returns raw outputs.

    Args:
        data_preprocessor: A preprocessor module or its config; defaults to
            ``BaseDataPreprocessor`` (moves the batch to the model's device).
        init_cfg: Weight initialisation config (see ``BaseModule``).
    """

    def __init__(self, data_preprocessor: dict | nn.Module | None = None,
                 init_cfg: dict | list[dict] | None = None):
        super().__init__(init_cfg)
        if data_preprocessor is None:
            data_preprocessor = dict(type="BaseDataPreprocessor")
        if isinstance(data_preprocessor, nn.Module):
            self.data_preprocessor = data_preprocessor
        elif isinstance(data_preprocessor, dict):
            self.data_preprocessor = MODELS.build(data_preprocessor)
        else:
            raise TypeError("data_preprocessor must be a dict or an nn.Module, got "
                            f"{type(data_preprocessor).__name__}")

    def train_step(self, data: Any, optim_wrapper) -> dict[str, torch.Tensor]:
        """Preprocess, compute losses, and let ``optim_wrapper`` update the parameters.

        Returns:
            The parsed losses (``loss`` first) for logging.
        """
        with optim_wrapper.optim_context(self):
            data = self.data_preprocessor(data, True)
            losses = self._run_forward(data, mode="loss")
        parsed_loss, log_vars = self.parse_losses(losses)
        optim_wrapper.update_params(parsed_loss)
        return log_vars

    def val_step(self, data: Any) -> Any:
        """Preprocess and predict; the result goes to the evaluator."""
        data = self.data_preprocessor(data, False)
        return self._run_forward(data, mode="predict")

    def test_step(self, data: Any) -> Any:
        data = self.data_preprocessor(data, False)
        return self._run_forward(data, mode="predict")

    def parse_losses(self, losses: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Average each loss term; sum the terms whose name contains ``'loss'`` into the total.

        Returns:
            ``(total_loss, log_vars)`` where ``log_vars`` starts with ``loss``.

        Raises:
            TypeError: A value is neither a tensor nor a list of tensors.
        """
        log_vars = []
        for name, value in losses.items():
            if isinstance(value, torch.Tensor):
                log_vars.append((name, _mean(value)))
            elif isinstance(value, (list, tuple)) and value and \
                    all(isinstance(v, torch.Tensor) for v in value):
                log_vars.append((name, _sum([_mean(v) for v in value])))
            else:
                raise TypeError(f"loss '{name}' must be a tensor or a list of tensors, got "
                                f"{type(value).__name__}")
        total = _sum([value for name, value in log_vars if "loss" in name])
        return total, OrderedDict([("loss", total)] + log_vars)

    def _run_forward(self, data: Any, mode: str) -> Any:
        return run_forward(self, data, mode)

    def forward(self, inputs: torch.Tensor, data_samples: Any = None, mode: str = "tensor"):
        raise NotImplementedError(f"{type(self).__name__} must implement forward(..., mode=...)")
