"""What a checkpoint is made of: the contract between the checkpoint manager and its owner.

The :class:`~raytrainer.checkpoint.CheckpointManager` is handed exactly what a checkpoint holds
and what saving or restoring it needs, as TorchTitan hands its manager the model parts,
optimizers, lr schedulers and states, never the whole trainer. The Runner satisfies
:class:`TrainingParts` with its public attributes; anything else that does (a test, a custom
loop) can save and resume checkpoints without building a Runner. How the run asked to load
(``resume``, ``load_from``) is a separate, plain value: :class:`LoadRequest`.

This module only names the contract; it does no I/O.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch.nn as nn


class LoopProgress(Protocol):
    """A train loop as a checkpoint sees it: counters, its state and its dataloader (whose
    sampler holds the position inside the epoch)."""

    dataloader: Any

    @property
    def epoch(self) -> int: ...

    @property
    def iter(self) -> int: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class TrainingParts(Protocol):
    """Everything a checkpoint saves and restores, and the run it belongs to.

    - model and strategy: ``model`` (as the strategy prepared it) and ``strategy`` (state dicts,
      full or sharded, the process group, barriers);
    - optimization: ``optim_wrapper`` and ``param_schedulers`` (None when absent; resuming
      builds a wrapper still given as a config with ``build_optim_wrapper``),
      ``lr_scale_factor`` (``auto_scale_lr``'s factor, followed on another world size);
    - loop progress: ``train_loop_or_none`` (the built train loop, or None: saving never builds
      one) and ``train_loop`` (restoring builds it);
    - RNG and identity: the RNG generators are the process's own; ``seed``, ``deterministic``,
      ``timestamp``, ``experiment_name``, ``cfg``, ``work_dir``, ``rank`` and ``world_size``
      say which run and rank wrote a checkpoint;
    - the run's services: ``message_hub`` (saved), ``logger``, ``hooks`` (one may name the
      checkpoint folder: ``checkpoint_dir``), ``call_hook`` (``before_save_checkpoint``,
      ``after_load_checkpoint``) and ``lease`` (checked before a write; None when none).
    """

    model: nn.Module
    strategy: Any
    optim_wrapper: Any
    param_schedulers: Any
    lr_scale_factor: float | None
    message_hub: Any
    logger: logging.Logger
    cfg: Mapping | None

    @property
    def train_loop_or_none(self) -> LoopProgress | None: ...

    @property
    def train_loop(self) -> LoopProgress: ...

    @property
    def seed(self) -> int: ...

    @property
    def deterministic(self) -> bool: ...

    @property
    def timestamp(self) -> str: ...

    @property
    def experiment_name(self) -> str: ...

    @property
    def work_dir(self) -> str: ...

    @property
    def rank(self) -> int: ...

    @property
    def world_size(self) -> int: ...

    @property
    def hooks(self) -> list: ...

    @property
    def lease(self) -> Any: ...

    def build_optim_wrapper(self, optim_wrapper: Any) -> Any: ...

    def call_hook(self, fn_name: str, **kwargs: Any) -> None: ...


@dataclass(frozen=True)
class LoadRequest:
    """What a run asked to load when it starts (MMEngine's ``resume``/``load_from``).

    Args:
        resume: True/'auto' resumes the latest committed checkpoint of the run's folder; a
            location resumes that checkpoint; False resumes nothing.
        load_from: A checkpoint whose weights are loaded (or resumed, with ``resume=True``).
        load_strict: Whether ``load_from``'s keys must match the model's exactly.
        own_timestamp: Resume only checkpoints of the run with this timestamp (the Ray driver
            fixed it, so older runs in the same work_dir are not continued); None: any run's.
        training: Whether the run trains: a run that only validates or tests loads the
            weights of a resumed checkpoint and nothing else.
    """

    resume: bool | str = False
    load_from: str | None = None
    load_strict: bool = True
    own_timestamp: str | None = None
    training: bool = True
