"""Samplers that shard a dataset across ranks and can resume mid-epoch without replaying data.

Both samplers produce, for a given seed, the same index order as MMEngine's samplers of the same
name, so a config trains identically on either engine. ``state_dict`` records where the stream
stands; ``load_state_dict`` makes the next ``__iter__`` start there directly.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sized

import torch
from torch.utils.data import Sampler

from ..dist import broadcast_object_list, get_rank, get_world_size
from ..registry import DATA_SAMPLERS
from ..utils.randomness import draw_seed


def _shared_seed(seed: int | None) -> int:
    """The given seed, or one drawn on rank 0 and shared with every rank."""
    if seed is not None:
        return int(seed)
    box = [draw_seed()]
    broadcast_object_list(box)
    return int(box[0])


@DATA_SAMPLERS.register_module()
class DefaultSampler(Sampler[int]):
    """Epoch-based sampler: shuffle with ``seed + epoch``, then give rank r every N-th index.

    Args:
        dataset: The dataset (only its length is used).
        shuffle: Shuffle each epoch.
        seed: Shuffle seed, the same on every rank; None draws one on rank 0.
        round_up: Repeat indices so every rank gets the same number of samples.
    """

    def __init__(self, dataset: Sized, shuffle: bool = True, seed: int | None = None,
                 round_up: bool = True):
        self.dataset = dataset
        self.shuffle = shuffle
        self.seed = _shared_seed(seed)
        self.round_up = round_up
        self.rank = get_rank()
        self.world_size = get_world_size()
        self.epoch = 0
        self._skip = 0
        size = len(dataset)
        if round_up:
            self.num_samples = math.ceil(size / self.world_size)
            self.total_size = self.num_samples * self.world_size
        else:
            self.num_samples = math.ceil((size - self.rank) / self.world_size)
            self.total_size = size

    def _epoch_indices(self) -> list[int]:
        size = len(self.dataset)
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(self.seed + self.epoch)
            indices = torch.randperm(size, generator=generator).tolist()
        else:
            indices = list(range(size))
        if self.round_up and indices:
            indices = (indices * (self.total_size // size + 1))[:self.total_size]
        return indices[self.rank:self.total_size:self.world_size]

    def __iter__(self) -> Iterator[int]:
        indices = self._epoch_indices()
        skip, self._skip = self._skip, 0
        return iter(indices[skip:])

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's shuffle (called by ``DistSamplerSeedHook`` before each epoch)."""
        self.epoch = epoch

    def skip_samples(self, num_samples: int) -> None:
        """Start the next iteration ``num_samples`` into this rank's index list (resume)."""
        if not 0 <= num_samples <= self.num_samples:
            raise ValueError(f"cannot skip {num_samples} samples of an epoch of "
                             f"{self.num_samples} on rank {self.rank}")
        self._skip = num_samples

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "world_size": self.world_size}

    def load_state_dict(self, state: dict) -> None:
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])


@DATA_SAMPLERS.register_module()
class InfiniteSampler(Sampler[int]):
    """Iteration-based sampler: one generator, back-to-back permutations, rank r takes every N-th.

    Args:
        dataset: The dataset (only its length is used).
        shuffle: Shuffle each pass over the data.
        seed: Seed of the single generator, the same on every rank; None draws one on rank 0.
    """

    is_infinite = True  # loops never see the end of an epoch

    def __init__(self, dataset: Sized, shuffle: bool = True, seed: int | None = None):
        self.dataset = dataset
        self.shuffle = shuffle
        self.seed = _shared_seed(seed)
        self.rank = get_rank()
        self.world_size = get_world_size()
        self.size = len(dataset)
        self._skip = 0

    def _infinite_indices(self) -> Iterator[int]:
        generator = torch.Generator()
        generator.manual_seed(self.seed)
        while True:
            if self.shuffle:
                yield from torch.randperm(self.size, generator=generator).tolist()
            else:
                yield from range(self.size)

    def __iter__(self) -> Iterator[int]:
        skip, self._skip = self._skip, 0
        # Skipping regenerates index permutations only (cheap); no sample is loaded.
        start = self.rank + skip * self.world_size
        return itertools.islice(self._infinite_indices(), start, None, self.world_size)

    def __len__(self) -> int:
        return self.size

    def set_epoch(self, epoch: int) -> None:
        """Epochs do not change an infinite stream (kept for hook compatibility)."""

    def skip_samples(self, num_samples: int) -> None:
        """Start the next iteration ``num_samples`` into this rank's infinite stream (resume)."""
        if num_samples < 0:
            raise ValueError(f"cannot skip a negative number of samples ({num_samples})")
        self._skip = num_samples

    def state_dict(self) -> dict:
        return {"seed": self.seed, "world_size": self.world_size}

    def load_state_dict(self, state: dict) -> None:
        self.seed = int(state["seed"])
