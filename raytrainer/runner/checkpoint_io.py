"""The runner's checkpoint methods: what the training state is, and how it is restored.

``CheckpointIO`` is mixed into the Runner. It gathers the state (model, optimizer, schedulers,
loop position, sampler, RNG, message hub, seed) into a checkpoint dict in MMEngine's shape
(``meta``, ``state_dict``, ``optimizer``, ``param_schedulers``, ``message_hub`` ...) so that
hooks see what they expect, and hands it to ``checkpoint.py`` for storage.
"""
from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any

import torch

from .. import __version__, storage
from ..model.wrappers import unwrap_model
from . import checkpoint as ckpt
from .loops import find_sampler
from .rng_state import get_rng_state, set_rng_state


def _revise_keys(state: dict, revise_keys: Sequence[tuple[str, str]]) -> dict:
    for pattern, replacement in revise_keys:
        regex = re.compile(pattern)
        state = {regex.sub(replacement, key): value for key, value in state.items()}
    return state


class CheckpointIO:
    """Save/load/resume methods of the Runner (MMEngine's names and arguments)."""

    @property
    def checkpoint_dir(self) -> str:
        """Where this run's checkpoints live (the CheckpointHook's directory if there is one)."""
        for hook in self._hooks:
            location = getattr(hook, "checkpoint_dir", None)
            if location:
                return location(self) if callable(location) else location
        return storage.join(self.work_dir, "checkpoints")

    def _checkpoint_meta(self, by_epoch: bool, meta: dict | None) -> dict:
        loop = self.train_loop_or_none
        progress = loop.state_dict() if loop is not None else \
            {"epoch": 0, "iter": 0, "inner_iter": 0}
        completed_epochs = progress["epoch"]
        if loop is not None and progress["inner_iter"] >= len(loop.dataloader):
            completed_epochs += 1
        info = dict(meta or {})
        info.setdefault("epoch", completed_epochs)
        info.setdefault("iter", progress["iter"])
        info.update(inner_iter=progress["inner_iter"], loop_epoch=progress["epoch"],
                    by_epoch=by_epoch, seed=self.seed, experiment_name=self.experiment_name,
                    timestamp=self.timestamp, world_size=self.world_size,
                    cfg=self.cfg.pretty_text if self.cfg else "",
                    time=time.strftime("%Y%m%d_%H%M%S"), raytrainer_version=__version__)
        if loop is not None and hasattr(loop.dataloader.dataset, "metainfo"):
            info["dataset_meta"] = loop.dataloader.dataset.metainfo
        return info

    def checkpoint_state(self, save_optimizer: bool = True, save_param_scheduler: bool = True,
                         meta: dict | None = None, by_epoch: bool = True) -> dict[str, Any]:
        """The checkpoint dict of the current training state (hooks may add entries)."""
        checkpoint: dict[str, Any] = {
            "meta": self._checkpoint_meta(by_epoch, meta),
            "state_dict": self.strategy.model_state_dict(self.model),
            "message_hub": self.message_hub.state_dict(),
            "rng": get_rng_state(),
        }
        loop = self.train_loop_or_none
        if loop is not None:
            checkpoint["loop"] = loop.state_dict()
            sampler = find_sampler(loop.dataloader)
            if hasattr(sampler, "state_dict"):
                checkpoint["sampler"] = sampler.state_dict()
        if save_optimizer and self.optim_wrapper is not None and \
                not isinstance(self.optim_wrapper, dict):
            checkpoint["optimizer"] = self.strategy.optim_state_dict(self.optim_wrapper)
        if save_param_scheduler and self.param_schedulers is not None and \
                not _unbuilt(self.param_schedulers):
            if isinstance(self.param_schedulers, dict):
                checkpoint["param_schedulers"] = {
                    name: [s.state_dict() for s in group]
                    for name, group in self.param_schedulers.items()}
            else:
                checkpoint["param_schedulers"] = [s.state_dict() for s in self.param_schedulers]
        return checkpoint

    def save_checkpoint(self, out_dir: str, filename: str, file_client_args=None,
                        save_optimizer: bool = True, save_param_scheduler: bool = True,
                        meta: dict | None = None, by_epoch: bool = True,
                        backend_args=None) -> str:
        """Save the training state as checkpoint ``filename`` under ``out_dir``.

        Returns:
            The checkpoint's location.
        """
        checkpoint = self.checkpoint_state(save_optimizer, save_param_scheduler, meta, by_epoch)
        self.call_hook("before_save_checkpoint", checkpoint=checkpoint)
        location = storage.join(str(out_dir), filename)
        if self.rank == 0:
            ckpt.save_checkpoint(location, checkpoint)
        self.strategy.barrier()
        return location

    def load_checkpoint(self, filename: str, map_location: str | torch.device = "cpu",
                        strict: bool = False,
                        revise_keys: Sequence[tuple[str, str]] = ((r"^module\.", ""),)) -> dict:
        """Load model weights from a checkpoint (ours, an MMEngine ``.pth``, or a state dict)."""
        checkpoint = ckpt.load_checkpoint(filename, map_location=map_location)
        if "state_dict" not in checkpoint:
            raise ckpt.CheckpointError(f"{filename} holds no model weights ('state_dict'); keys: "
                                       f"{sorted(checkpoint)}")
        state = _revise_keys(checkpoint["state_dict"], revise_keys)
        result = self.strategy.load_model_state_dict(self.model, state, strict=strict)
        missing = list(getattr(result, "missing_keys", []))
        unexpected = list(getattr(result, "unexpected_keys", []))
        if missing or unexpected:
            self.logger.warning(f"weights from {filename}: missing keys {missing}, unexpected "
                                f"keys {unexpected}")
        self.logger.info(f"loaded weights from {filename}")
        return checkpoint

    def resume(self, filename: str, resume_optimizer: bool = True,
               resume_param_scheduler: bool = True, map_location: str = "default") -> None:
        """Restore the complete training state from a checkpoint and continue from it."""
        checkpoint = self.load_checkpoint(filename, map_location="cpu", strict=True)
        if self._train_loop is None:
            return  # val/test runs need the weights only
        meta = checkpoint.get("meta", {})
        saved_world = meta.get("world_size", self.world_size)
        if saved_world != self.world_size:
            self.logger.warning(f"{filename} was saved with {saved_world} ranks, this run has "
                                f"{self.world_size}: data order after resume differs from an "
                                "uninterrupted run")
        loop = self.train_loop
        loop.load_state_dict(checkpoint.get("loop") or {
            "epoch": meta.get("epoch", 0), "iter": meta.get("iter", 0), "inner_iter": 0})
        sampler = find_sampler(loop.dataloader)
        if "sampler" in checkpoint and hasattr(sampler, "load_state_dict"):
            sampler.load_state_dict(checkpoint["sampler"])
        if "message_hub" in checkpoint:
            self.message_hub.load_state_dict(checkpoint["message_hub"])
        if resume_optimizer and "optimizer" in checkpoint:
            self.optim_wrapper = self.build_optim_wrapper(self.optim_wrapper)
            self.strategy.load_optim_state_dict(self.optim_wrapper, checkpoint["optimizer"])
        if resume_param_scheduler and "param_schedulers" in checkpoint and \
                self.param_schedulers is not None:
            self._load_scheduler_states(checkpoint["param_schedulers"])
        if "rng" in checkpoint:
            set_rng_state(checkpoint["rng"])
        self.call_hook("after_load_checkpoint", checkpoint=checkpoint)
        self.resumed_from = str(filename)
        self.logger.info(f"resumed from {filename} at epoch {loop.epoch}, iter {loop.iter}")

    def _load_scheduler_states(self, states: Any) -> None:
        if isinstance(self.param_schedulers, dict):
            for name, group in self.param_schedulers.items():
                for scheduler, state in zip(group, states[name]):
                    scheduler.load_state_dict(state)
        else:
            if len(states) != len(self.param_schedulers):
                raise ckpt.CheckpointError(
                    f"the checkpoint has {len(states)} parameter schedulers, the config "
                    f"builds {len(self.param_schedulers)}")
            for scheduler, state in zip(self.param_schedulers, states):
                scheduler.load_state_dict(state)

    def load_or_resume(self) -> None:
        """Resume (``resume=True``/``'auto'``/location) or load ``load_from``, once per run."""
        if self._has_loaded:
            return
        self._has_loaded = True
        resume = self._resume
        if resume in (True, "auto"):
            target = self._load_from or ckpt.latest_checkpoint(self.checkpoint_dir)
            if target is None:
                self.logger.info(f"resume={resume!r}: no committed checkpoint in "
                                 f"{self.checkpoint_dir}; training from scratch")
            else:
                self.logger.info(f"resume={resume!r}: resuming from {target}, the latest "
                                 "committed checkpoint")
                self.resume(target)
            return
        if isinstance(resume, str) and resume:
            self.logger.info(f"resume: resuming from {resume} as requested")
            self.resume(resume)
            return
        if self._load_from is not None:
            self.load_checkpoint(self._load_from)


def _unbuilt(schedulers: Any) -> bool:
    if isinstance(schedulers, dict):
        return "type" in schedulers or any(_unbuilt(v) for v in schedulers.values())
    if isinstance(schedulers, list):
        return any(isinstance(s, dict) for s in schedulers)
    return False


__all__ = ["CheckpointIO", "unwrap_model"]
