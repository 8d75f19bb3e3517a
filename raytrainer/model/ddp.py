"""DistributedDataParallel that keeps the BaseModel step contract (train/val/test_step)."""
from __future__ import annotations

from typing import Any

from torch.nn.parallel import DistributedDataParallel

from ..registry import MODEL_WRAPPERS
from .base_model import run_forward


@MODEL_WRAPPERS.register_module()
class MMDistributedDataParallel(DistributedDataParallel):
    """DDP whose ``train_step`` runs the forward pass through DDP (so gradients are averaged
    across ranks) and whose ``val_step``/``test_step`` call the wrapped model directly."""

    def train_step(self, data: Any, optim_wrapper) -> dict:
        module = self.module
        with optim_wrapper.optim_context(self):
            data = module.data_preprocessor(data, training=True)
            losses = self._run_forward(data, mode="loss")
        parsed_loss, log_vars = module.parse_losses(losses)
        optim_wrapper.update_params(parsed_loss)
        return log_vars

    def val_step(self, data: Any) -> Any:
        return self.module.val_step(data)

    def test_step(self, data: Any) -> Any:
        return self.module.test_step(data)

    def _run_forward(self, data: Any, mode: str) -> Any:
        return run_forward(self, data, mode)
