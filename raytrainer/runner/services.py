"""The run's services, set up once per rank: seed, logger, visualizer, log processor, config dump.

Each is decided the same way on every rank (rank 0 draws what is random and shares it) and
named after the run; the Runner calls these while it is created. Nothing here trains.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .. import dist
from .. import storage as store
from ..config import Config, ConfigError
from ..logging import MMLogger
from ..registry import LOG_PROCESSORS, VISUALIZERS, build_from_cfg
from ..utils.randomness import draw_seed, set_random_seed


def shared(value: Any) -> Any:
    """Rank 0's value of ``value`` on every rank."""
    box = [value]
    dist.broadcast_object_list(box)
    return box[0]


def decide_seed(randomness: dict, cfg: Config, rank: int) -> int:
    """Check ``randomness``, draw its seed on rank 0 when it is None, seed every generator.

    The drawn seed is written into ``randomness`` and into ``cfg`` (the config dump and the
    checkpoints), so the run can be repeated.
    """
    unknown = set(randomness) - {"seed", "deterministic", "diff_rank_seed"}
    if unknown:
        raise KeyError(f"randomness has unknown keys {sorted(unknown)}; expected seed, "
                       "deterministic, diff_rank_seed")
    seed = randomness.get("seed")
    if seed is None:
        seed = shared(draw_seed())
        randomness["seed"] = seed
    elif not isinstance(seed, int):
        raise TypeError(f"randomness.seed must be an int or None, got {seed!r}")
    cfg.setdefault("randomness", {})
    cfg["randomness"]["seed"] = seed
    set_random_seed(seed, deterministic=randomness.get("deterministic", False),
                    diff_rank_seed=randomness.get("diff_rank_seed", False), rank=rank)
    return seed


def build_logger(name: str, log_dir: str, timestamp: str, rank: int,
                 log_level: str | int) -> MMLogger:
    """The run's logger, appending to ``<log_dir>/<timestamp>[_rank<r>].log``; an instance
    left by an earlier run of the same name is closed first."""
    suffix = "" if rank == 0 else f"_rank{rank}"
    log_file = store.join(log_dir, f"{timestamp}{suffix}.log")
    if MMLogger.check_instance_created(name):
        MMLogger.get_instance(name).close()
        MMLogger.drop_instance(name)
    return MMLogger.get_instance(name, log_file=log_file, log_level=log_level, file_mode="a",
                                 rank=rank)


def build_visualizer(visualizer: Any, name: str, log_dir: str):
    """The visualizer (a local JSON backend by default), saving under ``log_dir``."""
    if visualizer is None:
        visualizer = dict(type="Visualizer", vis_backends=[dict(type="LocalVisBackend")])
    if not isinstance(visualizer, Mapping):
        return visualizer
    cfg = dict(visualizer)
    cfg.setdefault("name", name)
    cfg.setdefault("save_dir", log_dir)
    return build_from_cfg(cfg, VISUALIZERS, key="visualizer")


def build_log_processor(log_processor: Any):
    """A LogProcessor from its config (None: the defaults), or the one given."""
    if log_processor is None or isinstance(log_processor, Mapping):
        return build_from_cfg(dict(type="LogProcessor", **(log_processor or {})),
                              LOG_PROCESSORS, key="log_processor")
    return log_processor


def dump_config(cfg: Config, work_dir: str, timestamp: str, logger) -> None:
    """Write ``cfg`` to ``work_dir`` under its file's name (``<timestamp>.py`` without one); a
    value that cannot be written is logged, it must not stop training."""
    name = os.path.basename(cfg.filename) if cfg.filename else f"{timestamp}.py"
    if not name.endswith((".py", ".json", ".yaml", ".yml")):
        name += ".py"
    location = store.join(work_dir, name)
    try:
        cfg.dump(location)
    except ConfigError as exc:
        logger.warning(f"config not dumped to {location}: {exc}")
