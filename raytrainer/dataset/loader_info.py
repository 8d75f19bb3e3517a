"""What a built DataLoader is made of: its index sampler and its per-rank batch size.

The loops, the checkpoint state, the sampler seed hook and ``auto_scale_lr`` all ask these two
questions; they live here, beside the samplers, so none of those layers imports another for
them. Nothing here changes a loader.
"""
from __future__ import annotations

from typing import Any


def find_sampler(dataloader: Any):
    """The index sampler of a DataLoader (inside its batch sampler when there is one)."""
    batch_sampler = getattr(dataloader, "batch_sampler", None)
    if batch_sampler is not None and hasattr(batch_sampler, "sampler"):
        return batch_sampler.sampler
    return getattr(dataloader, "sampler", None)


def batch_size_of(dataloader: Any, default: int | None = 1) -> int | None:
    """Samples per batch on this rank; ``default`` when the loader does not say.

    The batch sampler is asked first: it is what cuts the batches. A torch DataLoader given
    ``batch_sampler=`` has ``batch_size=None``, and one given ``batch_size=`` builds a
    ``BatchSampler`` of that size, so for torch loaders both orders agree; where they differ (a
    loader-like object or a batch sampler whose size was changed after the loader was built) the
    loader's own ``batch_size`` describes what it was configured with, not what it yields.
    """
    size = getattr(getattr(dataloader, "batch_sampler", None), "batch_size", None)
    if size is None:
        size = getattr(dataloader, "batch_size", None)
    return int(size) if size else default
