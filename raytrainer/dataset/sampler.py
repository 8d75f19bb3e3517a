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
        self._global_skip: int | None = None
        size = len(dataset)
        if round_up:
            self.num_samples = math.ceil(size / self.world_size)
            self.total_size = self.num_samples * self.world_size
        else:
            self.num_samples = math.ceil((size - self.rank) / self.world_size)
            self.total_size = size

    def _epoch_order(self) -> list[int]:
        """The epoch's global order (the same for every world size)."""
        size = len(self.dataset)
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(self.seed + self.epoch)
            return torch.randperm(size, generator=generator).tolist()
        return list(range(size))

    def _epoch_indices(self) -> list[int]:
        indices = self._epoch_order()
        size = len(indices)
        if self.round_up and indices:
            indices = (indices * (self.total_size // size + 1))[:self.total_size]
        return indices[self.rank:self.total_size:self.world_size]

    def _share_after(self, consumed: int) -> list[int]:
        """This rank's indices of what is left of the epoch after its first ``consumed``
        samples in the global order, split over the current world size."""
        order = self._epoch_order()
        rest = order[min(consumed, len(order)):]
        if self.round_up and rest and len(rest) % self.world_size:
            pad = self.world_size - len(rest) % self.world_size
            rest = rest + (order * (pad // len(order) + 1))[:pad]
        return rest[self.rank::self.world_size]

    def __iter__(self) -> Iterator[int]:
        if self._global_skip is not None:
            consumed, self._global_skip = self._global_skip, None
            self._skip = 0
            return iter(self._share_after(consumed))
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

    def skip_global(self, consumed: int) -> int:
        """Start the next iteration after the epoch's first ``consumed`` samples in the global
        order, however many ranks consumed them (resume on another world size): the rest of
        the epoch is split over this world size, so no sample is repeated or skipped.

        Returns:
            How many samples this rank yields in the rest of the epoch.
        """
        if consumed < 0:
            raise ValueError(f"cannot skip a negative number of samples ({consumed})")
        self._global_skip = consumed
        return len(self._share_after(consumed))

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
        self._global_skip: int | None = None

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
        consumed, self._global_skip = self._global_skip, None
        # Skipping regenerates index permutations only (cheap); no sample is loaded.
        start = self.rank + (skip * self.world_size if consumed is None else consumed)
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

    def skip_global(self, consumed: int) -> int:
        """Start the next iteration after the stream's first ``consumed`` samples, however many
        ranks consumed them (resume on another world size); returns -1 (the stream is endless).
        """
        if consumed < 0:
            raise ValueError(f"cannot skip a negative number of samples ({consumed})")
        self._global_skip = consumed
        return -1

    def state_dict(self) -> dict:
        return {"seed": self.seed, "world_size": self.world_size}

    def load_state_dict(self, state: dict) -> None:
        self.seed = int(state["seed"])
