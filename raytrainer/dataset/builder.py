"""Build a DataLoader from a config dict: dataset, sampler, batch sampler, collate and seeding."""
from __future__ import annotations

import copy
import functools
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..dist import get_rank
from ..registry import DATA_SAMPLERS, DATASETS, FUNCTIONS, build_from_cfg


@FUNCTIONS.register_module()
def worker_init_fn(worker_id: int, num_workers: int, rank: int, seed: int) -> None:
    """Seed a dataloader worker with ``num_workers * rank + worker_id + seed`` (MMEngine's rule)."""
    worker_seed = num_workers * rank + worker_id + seed
    np.random.seed(worker_seed % 2**32)
    random.seed(worker_seed)
    torch.manual_seed(worker_seed)


def _resolve_function(cfg: Any, key: str):
    if cfg is None or callable(cfg):
        return cfg
    if not isinstance(cfg, Mapping) or "type" not in cfg:
        raise TypeError(f"'{key}' must be a function or a dict with 'type', got {cfg!r}")
    args = dict(cfg)
    fn = args.pop("type")
    if isinstance(fn, str):
        resolved = FUNCTIONS.get(fn)
        if resolved is None:
            matches = FUNCTIONS.close_matches(fn)
            hint = f"; did you mean {matches[0]!r}?" if matches else ""
            raise KeyError(f"'{key}.type': {fn!r} is not registered in the function registry"
                           f"{hint}")
        fn = resolved
    return functools.partial(fn, **args) if args else fn


def build_dataloader(dataloader: DataLoader | Mapping, seed: int | None = None,
                     diff_rank_seed: bool = False, key: str = "dataloader") -> DataLoader:
    """Build a DataLoader from a config dict (an existing DataLoader is returned unchanged).

    Config keys: ``dataset`` (dict or object), ``sampler`` (dict or object, default
    ``DefaultSampler``; its seed defaults to the run's seed), optional ``batch_sampler``,
    ``collate_fn`` (default ``pseudo_collate``), ``worker_init_fn`` (default seeds each worker
    from the run's seed), and any ``torch.utils.data.DataLoader`` argument.

    Args:
        dataloader: The config or a ready DataLoader.
        seed: The run's seed.
        diff_rank_seed: Ranks use different seeds; the sampler then draws its own shared seed.
        key: The config key, for error messages (``'train_dataloader'``).
    """
    if isinstance(dataloader, DataLoader):
        return dataloader
    if not isinstance(dataloader, Mapping):
        raise TypeError(f"'{key}' must be a DataLoader or a dict, got {type(dataloader).__name__}")
    cfg = copy.copy(dict(dataloader))
    if "dataset" not in cfg:
        raise KeyError(f"'{key}' has no 'dataset'; got keys {sorted(cfg)}")
    dataset = build_from_cfg(cfg.pop("dataset"), DATASETS, key=f"{key}.dataset")
    if hasattr(dataset, "full_init"):
        dataset.full_init()

    sampler_seed = None if diff_rank_seed else seed
    sampler_cfg = cfg.pop("sampler", dict(type="DefaultSampler", shuffle=False))
    sampler = build_from_cfg(sampler_cfg, DATA_SAMPLERS,
                             dict(dataset=dataset, seed=sampler_seed), key=f"{key}.sampler")
    batch_sampler_cfg = cfg.pop("batch_sampler", None)
    batch_sampler = None
    if batch_sampler_cfg is not None:
        batch_sampler = build_from_cfg(
            batch_sampler_cfg, DATA_SAMPLERS,
            dict(sampler=sampler, batch_size=cfg.pop("batch_size", 1)),
            key=f"{key}.batch_sampler")

    num_workers = cfg.get("num_workers", 0)
    init_fn = _resolve_function(cfg.pop("worker_init_fn", None), f"{key}.worker_init_fn")
    if init_fn is None and seed is not None:
        init_fn = functools.partial(worker_init_fn, num_workers=num_workers, rank=get_rank(),
                                    seed=seed)
    collate_fn = _resolve_function(cfg.pop("collate_fn", dict(type="pseudo_collate")),
                                   f"{key}.collate_fn")
    try:
        return DataLoader(dataset, sampler=None if batch_sampler else sampler,
                          batch_sampler=batch_sampler, collate_fn=collate_fn,
                          worker_init_fn=init_fn, **cfg)
    except TypeError as exc:
        raise TypeError(f"'{key}': {exc}") from exc
