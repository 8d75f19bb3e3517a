"""The runner's checkpoint methods: what the training state is, and how it is restored.

``CheckpointIO`` is mixed into the Runner. It gathers the state (model, optimizer, schedulers,
loop position, sampler, RNG, message hub, seed) into a checkpoint dict in MMEngine's shape
(``meta``, ``state_dict``, ``optimizer``, ``param_schedulers``, ``message_hub`` ...) so that
hooks see what they expect, hands it to ``checkpoint.py`` for storage (directly, or on a
background thread), and restores it on resume.

Every checkpoint's meta records the run's ``lineage``: the timestamp of the run that started
the chain of runs this one continues. A fresh run starts a lineage of its own; a resumed run
inherits the lineage of the checkpoint it resumed from (whatever its own timestamp), so
retention (``CheckpointHook(max_keep_ckpts=...)``) counts an interrupted-and-resumed run's
checkpoints together and never touches those of unrelated runs in the same directory.
"""
from __future__ import annotations

import collections
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .. import __version__, dist, storage
from . import checkpoint as ckpt
from .async_checkpoint import AsyncCheckpointer, copy_to_cpu
from .config_diff import model_key_differences
from .loops import find_sampler
from .rng_state import get_rng_state, set_rng_state


def _revise_keys(state: dict, revise_keys: Sequence[tuple[str, str]]) -> dict:
    for pattern, replacement in revise_keys:
        regex = re.compile(pattern)
        state = {regex.sub(replacement, key): value for key, value in state.items()}
    return state


def _listed(keys: list[str], limit: int = 5) -> str:
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return f"{keys[:limit]}{more}"


def _check_keys(state: dict, model: torch.nn.Module, filename: str, strict: bool) -> None:
    """Refuse weights none of whose keys the model has, or (``strict``) any mismatch.

    Raises:
        CheckpointKeyMismatch: naming the file, the model and the keys that differ.
    """
    expected = set(model.state_dict())
    given = set(state)
    missing, unexpected = sorted(expected - given), sorted(given - expected)
    what = f"the weights in {storage.describe(filename)} do not fit {type(model).__name__}"
    if expected and not expected & given:
        raise CheckpointKeyMismatch(
            f"{what}: none of its {len(given)} keys ({_listed(sorted(given))}) is a key of the "
            f"model ({_listed(sorted(expected))}); is it a checkpoint of this model?")
    if strict and (missing or unexpected):
        raise CheckpointKeyMismatch(
            f"{what}: missing keys {_listed(missing)}, unexpected keys {_listed(unexpected)}",
            partial=True)


class CheckpointKeyMismatch(ValueError):
    """A checkpoint's weights are not the model's (wrong file or wrong model config).

    ``partial`` tells whether some keys matched (a non-strict load could use them).
    """

    def __init__(self, message: str, partial: bool = False):
        super().__init__(message)
        self.partial = partial


def _unbuilt(schedulers: Any) -> bool:
    if isinstance(schedulers, dict):
        return "type" in schedulers or any(_unbuilt(v) for v in schedulers.values())
    if isinstance(schedulers, list):
        return any(isinstance(s, dict) for s in schedulers)
    return False


class CheckpointIO:
    """Save/load/resume methods of the Runner (MMEngine's names and arguments).

    ``checkpoint_saves`` counts save calls (the same on every rank); ``committed_checkpoints``
    receives, on rank 0, each location once its commit record is written (possibly from the
    background writer), for hooks that publish checkpoints elsewhere (Ray Train).
    ``checkpoint_deleted_elsewhere``, when a hook sets it (RayReportHook), tells whether
    another owner deletes the checkpoint at a location (Ray Train's checkpoint manager deletes
    what it registered), so the CheckpointHook's retention leaves it alone.
    """

    _async_checkpointer: AsyncCheckpointer | None = None
    _lineage: str | None = None
    checkpoint_saves: int = 0
    committed_checkpoints: collections.deque
    checkpoint_deleted_elsewhere: Callable[[str], bool] | None = None

    @property
    def lineage(self) -> str:
        """The checkpoint lineage this run continues: its own timestamp, or the lineage of the
        checkpoint it resumed from."""
        return self._lineage or self.timestamp

    @property
    def checkpoint_dir(self) -> str:
        """Where this run's checkpoints live (the CheckpointHook's directory if there is one)."""
        for hook in self._hooks:
            location = getattr(hook, "checkpoint_dir", None)
            if location:
                return location(self) if callable(location) else location
        return storage.join(self.work_dir, "checkpoints")

    # ---- saving -------------------------------------------------------------------------
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
                    timestamp=self.timestamp, lineage=self.lineage,
                    world_size=self.world_size,
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
            ckpt.RANK_STATE_KEY: {"rng": get_rng_state(), "rank": self.rank},
        }
        loop = self.train_loop_or_none
        if loop is not None:
            checkpoint["loop"] = loop.state_dict()
            sampler = find_sampler(loop.dataloader)
            if hasattr(sampler, "state_dict"):
                checkpoint["sampler"] = sampler.state_dict()
        if save_optimizer and self.optim_wrapper is not None and \
                hasattr(self.optim_wrapper, "state_dict"):
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
                        meta: dict | None = None, by_epoch: bool = True, backend_args=None,
                        asynchronous: bool = False,
                        on_committed: Callable[[str], None] | None = None) -> str:
        """Save the training state as checkpoint ``filename`` under ``out_dir``.

        Every rank calls this. Rank 0 writes the shared files and commits once every rank has
        written its own. An existing checkpoint of the same name is replaced only if it belongs
        to this run's lineage (or was never committed); another run's committed checkpoint is
        kept, and this one is saved as ``<filename>-<lineage>`` beside it.

        Args:
            asynchronous: Return as soon as the state is copied to CPU memory and write it on a
                background thread (at most one write in flight; a failure is raised by the next
                save or by ``wait_for_checkpoint``).
            on_committed: Called with the location on rank 0 once the checkpoint is committed.

        Returns:
            The checkpoint's location.
        """
        if asynchronous:
            self._checkpointer().wait()  # at most one write in flight; surface its failure
        checkpoint = self.checkpoint_state(save_optimizer, save_param_scheduler, meta, by_epoch)
        self.call_hook("before_save_checkpoint", checkpoint=checkpoint)
        box: list = [None, None]
        if self.rank == 0:
            try:
                if self._lease is not None:
                    self._lease.check()  # another run took the work_dir over: write nothing
                box[0] = self._clear_location(str(out_dir), filename)
            except Exception as exc:  # every rank must stop, or the others would hang
                box[1] = exc
        dist.broadcast_object_list(box)  # no rank writes before a stale directory is gone
        location, failure = box
        if failure is not None:
            raise failure
        rank, world = self.rank, self.world_size

        self.checkpoint_saves += 1
        committed = self.committed_checkpoints

        def write(state=checkpoint):
            ckpt.write_rank_files(location, state, rank)
            if rank == 0:
                ckpt.commit(location, world)
                committed.append(location)
                if on_committed is not None:
                    on_committed(location)

        if asynchronous:
            snapshot = copy_to_cpu(checkpoint)
            self._checkpointer().submit(lambda: write(snapshot), storage.describe(location))
        else:
            write()
            self.strategy.barrier()
        return location

    def _clear_location(self, out_dir: str, filename: str) -> str:
        """Rank 0: where checkpoint ``filename`` of this run goes, emptied of a stale copy.

        A directory of the same name is replaced if it is uncommitted or of this lineage; a
        committed checkpoint of another run (or one whose owner cannot be read) is never
        touched: this run's goes to ``<filename>-<lineage>`` instead.
        """
        location = storage.join(out_dir, filename)
        owner = ckpt.owning_lineage(location) if storage.exists(location) else None
        if owner is not None and owner != self.lineage:
            distinct = storage.join(out_dir, ckpt.lineage_suffixed(filename, self.lineage))
            self.logger.info(f"{storage.describe(location)} is a checkpoint of another run "
                             f"({owner or 'unreadable'}); kept, and this run's is saved as "
                             f"{storage.describe(distinct)}")
            location = distinct
            owner = ckpt.owning_lineage(location) if storage.exists(location) else None
            if owner is not None and owner != self.lineage:
                raise ckpt.CheckpointError(f"cannot save {storage.describe(location)}: it is a "
                                           f"checkpoint of another run ({owner or 'unreadable'})")
        if storage.exists(location):
            self.logger.warning(f"replacing {storage.describe(location)}")
            ckpt.delete_checkpoint(location)
        return location

    def _checkpointer(self) -> AsyncCheckpointer:
        if self._async_checkpointer is None:
            self._async_checkpointer = AsyncCheckpointer()
        return self._async_checkpointer

    def wait_for_checkpoint(self) -> None:
        """Wait for a background checkpoint write; raise if it failed."""
        if self._async_checkpointer is not None:
            self._async_checkpointer.wait()

    # ---- loading ------------------------------------------------------------------------
    def load_checkpoint(self, filename: str, map_location: str | torch.device = "cpu",
                        strict: bool = False,
                        revise_keys: Sequence[tuple[str, str]] = ((r"^module\.", ""),),
                        weights_only: bool = True) -> dict:
        """Load model weights from a checkpoint (ours, an MMEngine ``.pth``, or a state dict).

        Returns:
            The checkpoint dict (only ``meta`` and the weights unless ``weights_only=False``).
        """
        checkpoint = ckpt.load_checkpoint(filename, map_location=map_location, rank=self.rank,
                                          weights_only=weights_only)
        # Hooks see (and may adapt) the checkpoint before anything is loaded from it.
        self.call_hook("after_load_checkpoint", checkpoint=checkpoint)
        if "state_dict" not in checkpoint:
            raise ckpt.CheckpointError(f"{storage.describe(filename)} holds no model weights "
                                       f"('state_dict'); keys: {sorted(checkpoint)}")
        state = _revise_keys(checkpoint["state_dict"], revise_keys)
        try:
            _check_keys(state, self.strategy.unwrap(self.model), filename, strict)
            result = self.strategy.load_model_state_dict(self.model, state, strict=strict)
        except (CheckpointKeyMismatch, RuntimeError) as exc:
            if not isinstance(exc, CheckpointKeyMismatch) and \
                    "Error(s) in loading state_dict" not in str(exc):
                raise
            self._raise_with_config_differences(exc, checkpoint.get("meta") or {}, filename)
        missing = list(getattr(result, "missing_keys", []))
        unexpected = list(getattr(result, "unexpected_keys", []))
        if missing or unexpected:
            self.logger.warning(f"weights from {storage.describe(filename)}: missing keys "
                                f"{missing}, unexpected keys {unexpected}")
        self.logger.info(f"loaded weights from {storage.describe(filename)}")
        return checkpoint

    def _raise_with_config_differences(self, exc: Exception, meta: dict,
                                       filename: str) -> None:
        """Re-raise a weights/model mismatch, naming the model keys whose config differs
        between the checkpoint and this run (when the checkpoint recorded its config)."""
        differences = model_key_differences(meta.get("cfg") or "", self.cfg or {})
        if not differences:
            raise exc
        reason = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        if not reason.startswith("the weights in"):
            reason = f"the weights in {storage.describe(filename)} do not fit the model: {reason}"
        raise CheckpointKeyMismatch(
            f"{reason}; the checkpoint's config differs in the model keys: "
            + "; ".join(differences), partial=getattr(exc, "partial", True)) from exc

    def resume(self, filename: str, resume_optimizer: bool = True,
               resume_param_scheduler: bool = True, map_location: str = "default") -> None:
        """Restore the complete training state from a checkpoint and continue from it."""
        checkpoint = self.load_checkpoint(filename, strict=True, weights_only=False)
        self.resumed_from = str(filename)
        if self._train_loop is None:
            return  # val/test runs need the weights only
        meta = checkpoint.get("meta", {})
        # The continued run belongs to the checkpoint's lineage (older checkpoints have none:
        # their run's timestamp started it); a single-file checkpoint starts a new one.
        self._lineage = meta.get("lineage") or meta.get("timestamp") or None
        saved_world = meta.get("world_size", self.world_size)
        if saved_world != self.world_size:
            self.logger.warning(f"{storage.describe(filename)} was saved by {saved_world} ranks, "
                                f"this run has {self.world_size}: the data order after resuming "
                                "differs from an uninterrupted run")
        if meta.get("seed") is not None and meta["seed"] != self.seed:
            self.logger.warning(f"the checkpoint's seed {meta['seed']} differs from this run's "
                                f"seed {self.seed}; continuing with the checkpoint's RNG states")
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
        rank_state = checkpoint.get(ckpt.RANK_STATE_KEY, {})
        if "rng" in rank_state:
            set_rng_state(rank_state["rng"])
        else:
            self.logger.warning(f"{storage.describe(filename)} has no RNG state for rank "
                                f"{self.rank}; random numbers after resuming differ")
        self.logger.info(f"resumed from {storage.describe(filename)} at epoch {loop.epoch}, "
                         f"iter {loop.iter}")

    def _load_scheduler_states(self, states: Any) -> None:
        if isinstance(self.param_schedulers, dict):
            for name, group in self.param_schedulers.items():
                for scheduler, state in zip(group, states[name]):
                    scheduler.load_state_dict(state)
            return
        if len(states) != len(self.param_schedulers):
            raise ckpt.CheckpointError(
                f"the checkpoint has {len(states)} parameter schedulers, the config builds "
                f"{len(self.param_schedulers)}")
        for scheduler, state in zip(self.param_schedulers, states):
            scheduler.load_state_dict(state)

    def _resume_latest(self) -> None:
        """Resume from the most recently committed usable checkpoint, falling back past
        corrupt ones to the one committed before."""
        root = self.checkpoint_dir
        # A run whose timestamp was given (by the Ray driver) resumes only its own checkpoints:
        # older runs that used the same work_dir may have got further.
        own = self.timestamp if self._timestamp_given else None
        rejected: list[tuple[str, str]] = []
        candidates = ckpt.list_checkpoints(root, timestamp=own, rejected=rejected)
        if not candidates and rejected:
            raise ckpt.unusable_checkpoints_error(root, rejected, f"resume={self._resume!r}")
        if not candidates:
            whose = f" of run {own}" if own else ""
            self.logger.info(f"resume={self._resume!r}: no committed checkpoint{whose} in "
                             f"{storage.describe(root)}; training from scratch")
            return
        failures = []
        for location in reversed(candidates):
            try:
                self.logger.info(f"resume={self._resume!r}: resuming from "
                                 f"{storage.describe(location)}, the newest committed checkpoint"
                                 + (" that is readable" if failures else ""))
                self.resume(location)
                return
            except ckpt.CheckpointError as exc:
                failures.append(f"{storage.describe(location)}: {exc}")
                self.logger.warning(f"skipping {storage.describe(location)}: {exc}")
        raise ckpt.CheckpointError(
            f"resume={self._resume!r}: no usable checkpoint in {storage.describe(root)} (nothing "
            "was deleted); " + "; ".join(failures))

    def load_or_resume(self) -> None:
        """Resume (``resume=True``/``'auto'``/location) or load ``load_from``, once per run."""
        if self._has_loaded:
            return
        self._has_loaded = True
        resume = self._resume
        if resume in (True, "auto"):
            if self._load_from is not None:
                self.logger.info(f"resume=True with load_from: resuming from "
                                 f"{storage.describe(self._load_from)}")
                self.resume(self._load_from)
            else:
                self._resume_latest()
            return
        if isinstance(resume, str) and resume:
            self.logger.info(f"resume: resuming from {storage.describe(resume)} as requested")
            self.resume(resume)
            return
        if self._load_from is not None:
            try:
                self.load_checkpoint(self._load_from, strict=self._load_strict)
            except CheckpointKeyMismatch as exc:
                hint = "; set load_strict=False (e.g. --cfg-options load_strict=False) to load " \
                    "the matching keys only" if exc.partial else ""
                raise CheckpointKeyMismatch(f"load_from: {exc}{hint}", exc.partial) from None
