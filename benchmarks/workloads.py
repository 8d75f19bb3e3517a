"""The synthetic workload every benchmark trains: an in-memory dataset and an MLP.

Torch only (no raytrainer import): the bare side of ``ray_overhead.py`` imports it through
``ray_bench_lib``, and its start-up time is part of what is measured.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.data import Dataset

NUM_SAMPLES = 4096
IN_FEATURES = 64
NUM_CLASSES = 10


class SyntheticDataset(Dataset):
    """Random features and labels held in memory; a sample is ``dict(inputs, data_samples)``,
    as MMEngine's are. ``loaded`` counts the samples handed out (the resume benchmark checks
    that nothing is replayed)."""

    def __init__(self, size: int = NUM_SAMPLES, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.inputs = torch.randn(size, IN_FEATURES, generator=generator)
        self.labels = torch.randint(0, NUM_CLASSES, (size,), generator=generator)
        self.loaded = 0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        self.loaded += 1
        return dict(inputs=self.inputs[index], data_samples=self.labels[index])


def make_mlp(hidden: tuple[int, ...]) -> nn.Sequential:
    """The layers of raytrainer's ``MLPClassifier(in_features=64, hidden_dims=hidden)``."""
    sizes = (IN_FEATURES, *hidden)
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(sizes, sizes[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    layers.append(nn.Linear(sizes[-1], NUM_CLASSES))
    return nn.Sequential(*layers)
