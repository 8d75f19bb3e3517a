"""Shared fixtures for the scheduler tests: optimizers, scheduler specs and value trajectories.

A scheduler *spec* is ``(class_name, kwargs)`` or ``(class_name, kwargs, epoch_length)``; the
three-element form builds through ``build_iter_from_epoch``. The same spec builds a raytrainer
scheduler or, with ``module=mmengine.optim.scheduler``, MMEngine's, so tests can compare them.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest
import torch

import raytrainer.optim.scheduler as ours

Spec = tuple  # (class_name, kwargs) or (class_name, kwargs, epoch_length)


def make_optimizer(kind: str = "sgd") -> Any:
    """Two param groups with different values, so per-group handling is exercised."""
    first, second = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(3))
    if kind == "sgd":
        return torch.optim.SGD([{"params": [first]},
                                {"params": [second], "lr": 0.01, "momentum": 0.8}],
                               lr=0.05, momentum=0.9, weight_decay=1e-3)
    if kind == "adam":
        return torch.optim.Adam([{"params": [first]},
                                 {"params": [second], "lr": 0.01, "betas": (0.85, 0.99)}],
                                lr=0.05, betas=(0.9, 0.999), weight_decay=1e-3)
    if kind == "adagrad":
        return torch.optim.Adagrad([first], lr=0.05)
    if kind == "wrapper":  # MMEngine's wrapper exposes one extra group when there are several
        return pytest.importorskip("mmengine.optim").OptimWrapper(make_optimizer("sgd"))
    raise ValueError(kind)


class DuckWrapper:
    """The smallest OptimWrapper-like object: ``param_groups`` plus ``optimizer``."""

    def __init__(self, optimizer: torch.optim.Optimizer):
        self.optimizer = optimizer

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    def step(self) -> None:
        self.optimizer.step()


def build(spec: Spec, optimizer: Any, module: Any = ours) -> Any:
    """Build the scheduler ``spec`` describes from ``module``."""
    name, kwargs = spec[0], dict(spec[1])
    cls = getattr(module, name)
    if len(spec) == 3:
        return cls.build_iter_from_epoch(optimizer, epoch_length=spec[2], **kwargs)
    return cls(optimizer, **kwargs)


def snapshot(optimizer: Any, schedulers: Sequence[Any]) -> list[float]:
    """Every scheduled value of every group, then every scheduler's ``get_last_value()``."""
    values = []
    for group in optimizer.param_groups:
        for key in ("lr", "momentum", "weight_decay"):
            if key in group:
                values.append(float(group[key]))
        if "betas" in group:
            values.extend(float(b) for b in group["betas"])
    for scheduler in schedulers:
        values.extend(float(v) for v in scheduler.get_last_value())
    return values


def trajectory(optimizer: Any, schedulers: Sequence[Any], steps: int) -> list[list[float]]:
    """Values after construction and after each of ``steps`` (optimizer step, scheduler steps)."""
    values = [snapshot(optimizer, schedulers)]
    for _ in range(steps):
        optimizer.step()
        for scheduler in schedulers:
            scheduler.step()
        values.append(snapshot(optimizer, schedulers))
    return values


def plateau_trajectory(optimizer: Any, scheduler: Any,
                       metrics: Sequence[float], key: str = "loss") -> list[list[float]]:
    """Per epoch: a training-epoch ``step()``, then ``step(metrics)``, as the hook calls them."""
    values = [snapshot(optimizer, [scheduler])]
    for metric in metrics:
        optimizer.step()
        scheduler.step()
        scheduler.step({key: metric, "other": 0.0})
        values.append(snapshot(optimizer, [scheduler]))
    return values


def max_abs_diff(a: list[list[float]], b: list[list[float]]) -> float:
    """Largest absolute difference between two trajectories of the same shape."""
    assert len(a) == len(b)
    worst = 0.0
    for row_a, row_b in zip(a, b):
        assert len(row_a) == len(row_b)
        for x, y in zip(row_a, row_b):
            assert math.isfinite(x) and math.isfinite(y)
            worst = max(worst, abs(x - y))
    return worst

