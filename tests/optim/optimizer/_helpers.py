"""Tiny models, data and comparisons shared by the optimizer-wrapper tests."""
from __future__ import annotations

import torch
import torch.nn as nn


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))


def make_batches(count: int, seed: int = 1) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(5, 3, generator=generator), torch.randn(5, 2, generator=generator))
            for _ in range(count)]


def mse(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    inputs, targets = batch
    return ((model(inputs).float() - targets) ** 2).mean()


def assert_same_params(model_a: nn.Module, model_b: nn.Module, **tolerance) -> None:
    tolerance = tolerance or {"rtol": 0.0, "atol": 0.0}
    for (name, a), (_, b) in zip(model_a.named_parameters(), model_b.named_parameters()):
        torch.testing.assert_close(a, b, msg=lambda m, name=name: f"{name}: {m}", **tolerance)
