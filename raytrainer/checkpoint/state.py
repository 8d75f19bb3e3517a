"""What a checkpoint holds, gathered from a runner and given back to one.

The ``runner`` argument is anything with the attributes :class:`.parts.TrainingParts` names
(the Runner is one); this module reads nothing else of it.

A checkpoint dict has MMEngine's shape so hooks see what they expect: ``meta`` (counters, seed,
config text, world size, lineage ...), ``state_dict`` (model weights: full tensors, or this
rank's shards under a sharded strategy), ``optimizer``, ``param_schedulers``, ``message_hub``,
``loop`` (position), ``sampler`` and ``rank_state`` (this rank's RNG generators). Hooks add
entries in ``before_save_checkpoint`` (EMA weights ...) and read them back in
``after_load_checkpoint``.

Restoring on another world size (or per-rank batch size) is supported: the loop continues the
epoch's global sample order after what the saved run consumed, and ``auto_scale_lr``'s factor
follows the new batch (see :func:`describe_rescale`).
"""
from __future__ import annotations

import posixpath
import time
from typing import Any

from .. import __version__, storage
from ..dataset.loader_info import batch_size_of, find_sampler
from ..optim import wrappers_of
from ..utils.numerics import numerics_state, restore_numerics
from ..utils.rng_state import get_rng_state, set_rng_state
from . import envelope
from .envelope import CheckpointError
from .full_state import RANK_STATE_KEY


def _unbuilt(schedulers: Any) -> bool:
    if isinstance(schedulers, dict):
        return "type" in schedulers or any(_unbuilt(v) for v in schedulers.values())
    if isinstance(schedulers, list):
        return any(isinstance(s, dict) for s in schedulers)
    return False


def meta_of(runner, lineage: str, by_epoch: bool, meta: dict | None) -> dict:
    """The ``meta`` entry: where training stands and which run (and config) wrote it."""
    loop = runner.train_loop_or_none
    progress = loop.state_dict() if loop is not None else \
        {"epoch": 0, "iter": 0, "inner_iter": 0}
    completed_epochs = progress["epoch"]
    if loop is not None and progress["inner_iter"] >= len(loop.dataloader):
        completed_epochs += 1
    info = dict(meta or {})
    info.setdefault("epoch", completed_epochs)
    info.setdefault("iter", progress["iter"])
    info.update(inner_iter=progress["inner_iter"], loop_epoch=progress["epoch"],
                by_epoch=by_epoch, seed=runner.seed, experiment_name=runner.experiment_name,
                timestamp=runner.timestamp, lineage=lineage, world_size=runner.world_size,
                strategy=type(runner.strategy).__name__,
                lr_scale_factor=runner.lr_scale_factor,
                cfg=runner.cfg.pretty_text if runner.cfg else "",
                time=time.strftime("%Y%m%d_%H%M%S"), raytrainer_version=__version__)
    if loop is not None:
        info["batch_size"] = batch_size_of(loop.dataloader)
        if hasattr(loop.dataloader.dataset, "metainfo"):
            info["dataset_meta"] = loop.dataloader.dataset.metainfo
    return info


def is_checkpoint_reference(key: str) -> bool:
    """Whether the message hub's runtime info ``key`` names a checkpoint (``last_ckpt``,
    ``best_ckpt``, ``best_ckpt_<metric>``)."""
    return key in ("last_ckpt", "best_ckpt") or key.startswith("best_ckpt_")


def _hub_state(runner, directory: str) -> dict:
    """The message hub's state with each checkpoint reference stored by its name in the run's
    checkpoint folder ``directory``, so a copied or moved work_dir resolves it to its own
    checkpoint (:func:`_resolve_references`)."""
    state = runner.message_hub.state_dict()
    info = state["runtime_info"]
    for key in [key for key in info if is_checkpoint_reference(key)]:
        value = info.pop(key)
        if isinstance(value, str) and envelope.is_direct_child(value, directory):
            info[key] = posixpath.basename(value.rstrip("/"))
        else:
            runner.logger.warning(f"message hub {key}={value!r} is not in the run's checkpoint "
                                  f"folder {storage.describe(directory)}; not saved")
    return state


def _resolve_references(runner, hub_state: dict, directory: str, where: str) -> dict:
    """``hub_state`` with each checkpoint reference resolved in the run's checkpoint folder
    ``directory``. A reference stored as a path (checkpoints written before references were
    names, or crafted) stands for its last component in ``directory``; one with no usable
    name is dropped. Either way a warning says so."""
    info = dict(hub_state.get("runtime_info") or {})
    for key in [key for key in info if is_checkpoint_reference(key)]:
        value = info.pop(key)
        name = posixpath.basename(value.rstrip("/")) if isinstance(value, str) else ""
        if name in ("", ".", ".."):
            runner.logger.warning(f"{where}: message hub {key}={value!r} names no checkpoint; "
                                  "dropped")
            continue
        info[key] = storage.join(directory, name)
        if name != value and not envelope.is_direct_child(value, directory):
            runner.logger.warning(f"{where}: message hub {key}={value!r} is a path outside "
                                  f"this run's checkpoint folder; taken as {info[key]}")
    return {**hub_state, "runtime_info": info}


def collect(runner, lineage: str, directory: str, save_optimizer: bool = True,
            save_param_scheduler: bool = True, meta: dict | None = None,
            by_epoch: bool = True) -> dict[str, Any]:
    """The checkpoint dict of the runner's current training state (``directory``: the run's
    checkpoint folder, which checkpoint references in the message hub are relative to)."""
    strategy = runner.strategy
    checkpoint: dict[str, Any] = {
        "meta": meta_of(runner, lineage, by_epoch, meta),
        "state_dict": strategy.model_state_dict(runner.model),
        "message_hub": _hub_state(runner, directory),
        RANK_STATE_KEY: {"rng": get_rng_state(), "rank": runner.rank,
                         "numerics": numerics_state()},
    }
    loop = runner.train_loop_or_none
    if loop is not None:
        checkpoint["loop"] = loop.state_dict()
        sampler = find_sampler(loop.dataloader)
        if hasattr(sampler, "state_dict"):
            checkpoint["sampler"] = sampler.state_dict()
    wrapper = runner.optim_wrapper
    if save_optimizer and wrapper is not None and hasattr(wrapper, "state_dict"):
        checkpoint["optimizer"] = strategy.optim_state_dict(wrapper)
    schedulers = runner.param_schedulers
    if save_param_scheduler and schedulers is not None and not _unbuilt(schedulers):
        if isinstance(schedulers, dict):
            checkpoint["param_schedulers"] = {
                name: [s.state_dict() for s in group] for name, group in schedulers.items()}
        else:
            checkpoint["param_schedulers"] = [s.state_dict() for s in schedulers]
    return checkpoint


def load_scheduler_states(runner, states: Any) -> None:
    """Give each built parameter scheduler its saved state."""
    schedulers = runner.param_schedulers
    if isinstance(schedulers, dict):
        for name, group in schedulers.items():
            for scheduler, state in zip(group, states[name]):
                scheduler.load_state_dict(state)
        return
    if len(states) != len(schedulers):
        raise CheckpointError(f"the checkpoint has {len(states)} parameter schedulers, the "
                              f"config builds {len(schedulers)}")
    for scheduler, state in zip(schedulers, states):
        scheduler.load_state_dict(state)


def _rescale_lr(runner, ratio: float) -> None:
    """Multiply every learning rate the optimizer and the lr schedulers hold by ``ratio``."""
    for item in wrappers_of(runner.optim_wrapper):
        for group in item.optimizer.param_groups:
            for key in ("lr", "initial_lr"):
                if key in group:
                    group[key] = group[key] * ratio
    schedulers = runner.param_schedulers or []
    groups = schedulers.values() if isinstance(schedulers, dict) else [schedulers]
    for group in groups:
        for scheduler in group:
            if getattr(scheduler, "param_name", None) != "lr":
                continue
            scheduler.base_values = [value * ratio for value in scheduler.base_values]
            last = getattr(scheduler, "_last_value", None)
            if last:
                scheduler._last_value = [value * ratio for value in last]


def describe_rescale(runner, meta: dict, where: str) -> None:
    """Log what changed when a checkpoint saved on another world size (or batch size) is
    resumed, and move ``auto_scale_lr``'s factor to the new effective batch."""
    loop = runner.train_loop
    saved_world = int(meta.get("world_size", runner.world_size))
    batch = batch_size_of(loop.dataloader)
    saved_batch = int(meta.get("batch_size") or batch)
    if (saved_world, saved_batch) == (runner.world_size, batch):
        return
    message = (f"{where} was saved by {saved_world} rank(s) x {saved_batch} samples per batch "
               f"(effective batch {saved_world * saved_batch}); this run has "
               f"{runner.world_size} x {batch} (effective batch {runner.world_size * batch}). "
               "Model and optimizer state are resharded; the epoch continues its sample order "
               "where the saved run stopped")
    old, new = meta.get("lr_scale_factor"), runner.lr_scale_factor
    if old and new and old != new:
        _rescale_lr(runner, new / old)
        message += f"; auto_scale_lr: lr factor {old:g} -> {new:g}"
    runner.logger.info(message)


def restore(runner, checkpoint: dict, location: str, directory: str,
            resume_optimizer: bool = True, resume_param_scheduler: bool = True,
            optimizer_loaded: bool = False) -> None:
    """Give the runner the training state of ``checkpoint`` (its weights are already loaded).

    Args:
        directory: The run's checkpoint folder: checkpoint references in the message hub
            (``best_ckpt`` ...) name checkpoints there, whichever folder wrote them.
        optimizer_loaded: The optimizer state was loaded already (sharded checkpoints load it
            together with the weights).
    """
    meta = checkpoint.get("meta", {})
    where = storage.describe(location)
    if meta.get("seed") is not None and meta["seed"] != runner.seed:
        runner.logger.warning(f"the checkpoint's seed {meta['seed']} differs from this run's "
                              f"seed {runner.seed}; continuing with the checkpoint's RNG states")
    loop = runner.train_loop
    loop.load_state_dict(checkpoint.get("loop") or {
        "epoch": meta.get("epoch", 0), "iter": meta.get("iter", 0), "inner_iter": 0})
    sampler = find_sampler(loop.dataloader)
    if "sampler" in checkpoint and hasattr(sampler, "load_state_dict"):
        sampler.load_state_dict(checkpoint["sampler"])
    if "message_hub" in checkpoint:
        runner.message_hub.load_state_dict(
            _resolve_references(runner, checkpoint["message_hub"], directory, where))
    if envelope.is_direct_child(location, directory):
        # the checkpoint holds the last_ckpt of before its own save: it is the newest itself
        runner.message_hub.update_info("last_ckpt", str(location).rstrip("/"))
    if resume_optimizer and "optimizer" in checkpoint and not optimizer_loaded:
        runner.strategy.load_optim_state_dict(runner.optim_wrapper, checkpoint["optimizer"])
    if resume_param_scheduler and "param_schedulers" in checkpoint and \
            runner.param_schedulers is not None:
        load_scheduler_states(runner, checkpoint["param_schedulers"])
    if resume_optimizer:
        describe_rescale(runner, meta, where)
    rank_state = checkpoint.get(RANK_STATE_KEY, {})
    restore_numerics(rank_state.get("numerics") or {}, runner.deterministic, where,
                     runner.logger)
    if "rng" in rank_state:
        set_rng_state(rank_state["rng"])
    else:
        runner.logger.warning(f"{where} has no RNG state for rank {runner.rank}; random "
                              "numbers after resuming differ")
