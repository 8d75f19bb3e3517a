"""The checkpoint manager: what the Runner calls to save, load and resume.

One ``CheckpointManager`` per runner (``runner.checkpoints``). It is handed the parts a
checkpoint holds (:class:`~.parts.TrainingParts`: the Runner is one) and what the run asked to
load (:class:`~.parts.LoadRequest`), never the Runner's private state. It gathers the state
(:mod:`.state`), picks the backend by the strategy (full-state files, or DCP shards when the
strategy shards the model), writes inside the committed envelope (:mod:`.envelope`) directly or
in the background, and restores a checkpoint of either layout, written by any world size.

Every checkpoint's meta records the run's ``lineage``: the timestamp of the run that started
the chain of runs this one continues. A fresh run starts a lineage of its own; a resumed run
inherits the lineage of the checkpoint it resumed from (whatever its own timestamp), so
retention (``CheckpointHook(max_keep_ckpts=...)``) counts an interrupted-and-resumed run's
checkpoints together and never touches those of unrelated runs in the same directory.

Hooks that publish or prune checkpoints talk to the manager, not to runner attributes:
``saves`` counts save calls (the same on every rank), ``committed`` receives (rank 0) each
location once it is committed, ``deleted_elsewhere`` (set by a hook such as the Ray report
hook) tells retention which checkpoints another owner deletes, and :meth:`delete` is how they
delete one: only a committed checkpoint of this lineage, directly in the run's checkpoint
folder. A save never writes over a directory that holds another run's files or a checkpoint
that lost its commit record (see :meth:`CheckpointManager._clear_location`).
"""
from __future__ import annotations

import collections
import re
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .. import dist, storage
from . import agreement, envelope, full_state, sharded
from . import state as state_module
from .async_save import AsyncCheckpointer, copy_to_cpu
from .envelope import CheckpointError
from .parts import LoadRequest, TrainingParts
from .reading import (
    CheckpointKeyMismatch,
    check_keys,
    open_checkpoint,
    with_config_differences,
)


def _revise_keys(state: dict, revise_keys: Sequence[tuple[str, str]]) -> dict:
    for pattern, replacement in revise_keys:
        regex = re.compile(pattern)
        state = {regex.sub(replacement, key): value for key, value in state.items()}
    return state


class CheckpointManager:
    """Saves, loads and resumes the training state of one run (MMEngine's arguments).

    Args:
        parts: What a checkpoint holds and the run it belongs to (the Runner).
        request: What the run asked to load at its start (:meth:`load_or_resume`).
    """

    def __init__(self, parts: TrainingParts, request: LoadRequest | None = None):
        self.parts = parts
        self.request = request or LoadRequest()
        self.saves = 0
        self.committed: collections.deque[str] = collections.deque()
        self.deleted_elsewhere: Callable[[str], bool] | None = None
        self.resumed_from: str | None = None
        self._lineage: str | None = None
        self._async: AsyncCheckpointer | None = None
        self._has_loaded = False

    @property
    def lineage(self) -> str:
        """The checkpoint lineage this run continues: its own timestamp, or the lineage of the
        checkpoint it resumed from."""
        return self._lineage or self.parts.timestamp

    @property
    def directory(self) -> str:
        """Where this run's checkpoints live (the CheckpointHook's directory if there is one)."""
        for hook in self.parts.hooks:
            location = getattr(hook, "checkpoint_dir", None)
            if location:
                return location(self.parts) if callable(location) else location
        return storage.join(self.parts.work_dir, "checkpoints")

    # ---- saving -------------------------------------------------------------------------
    def state(self, save_optimizer: bool = True, save_param_scheduler: bool = True,
              meta: dict | None = None, by_epoch: bool = True) -> dict[str, Any]:
        """The checkpoint dict of the current training state (hooks may add entries)."""
        return state_module.collect(self.parts, self.lineage, self.directory, save_optimizer,
                                    save_param_scheduler, meta, by_epoch)

    def save(self, out_dir: str, filename: str, save_optimizer: bool = True,
             save_param_scheduler: bool = True, meta: dict | None = None, by_epoch: bool = True,
             asynchronous: bool = False,
             on_committed: Callable[[str], None] | None = None) -> str:
        """Every rank: save the training state as checkpoint ``filename`` under ``out_dir``.

        Rank 0 writes the shared files and commits once every rank has written its own. An
        existing checkpoint of the same name is replaced only if it belongs to this run's
        lineage (or was never committed); another run's committed checkpoint is kept, and this
        one is saved as ``<filename>-<lineage>`` beside it.

        Args:
            asynchronous: Return once the state is copied to CPU memory and write it in the
                background (at most one write in flight; a failure is raised by the next save
                or by :meth:`wait`).
            on_committed: Called with the location on rank 0 once the checkpoint is committed.

        Returns:
            The checkpoint's location.
        """
        runner = self.parts
        if asynchronous:
            self._checkpointer().wait()  # at most one write in flight; surface its failure
        checkpoint = self.state(save_optimizer, save_param_scheduler, meta, by_epoch)
        runner.call_hook("before_save_checkpoint", checkpoint=checkpoint)
        location = self._claim_location(str(out_dir), filename)
        sharded_layout = runner.strategy.sharded_state
        self.saves += 1
        finish = self._finisher(location, sharded_layout, on_committed)
        if sharded_layout:
            tensors = {"model": checkpoint.pop("state_dict")}
            if "optimizer" in checkpoint:
                tensors["optim"] = checkpoint.pop("optimizer")
            group = runner.strategy.checkpoint_group
            if asynchronous:
                future = sharded.async_save(sharded.shard_dir(location), tensors, group)
                small = copy_to_cpu(full_state.rank_share(checkpoint, runner.rank))
                self._checkpointer().submit(lambda: (future.result(), finish(small)),
                                            storage.describe(location))
                return location
            sharded.save(sharded.shard_dir(location), tensors, group)
        if asynchronous:
            snapshot = copy_to_cpu(full_state.rank_share(checkpoint, runner.rank))
            self._checkpointer().submit(lambda: finish(snapshot), storage.describe(location))
        else:
            finish(checkpoint)
            runner.strategy.barrier()
        return location

    def _claim_location(self, out_dir: str, filename: str) -> str:
        """Every rank: the location rank 0 chose for checkpoint ``filename`` (and emptied of
        a stale copy, :meth:`_clear_location`), once it is ready; rank 0's failure (the lease
        was taken over: write nothing) is raised on every rank, or the others would hang."""
        runner = self.parts
        box: list = [None, None]
        if runner.rank == 0:
            try:
                lease = runner.lease
                if lease is not None:
                    lease.check()
                box[0] = self._clear_location(out_dir, filename)
            except Exception as exc:  # noqa: BLE001 - raised on every rank below
                box[1] = exc
        dist.broadcast_object_list(box)  # no rank writes before a stale directory is gone
        location, failure = box
        if failure is not None:
            raise failure
        return location

    def _finisher(self, location: str, sharded_layout: bool,
                  on_committed: Callable[[str], None] | None) -> Callable[[dict], None]:
        """What completes this rank's save of ``location`` once its tensors are written: its
        small files and ``done`` marker, then (rank 0) the commit record."""
        rank, world = self.parts.rank, self.parts.world_size
        layout = envelope.SHARDED if sharded_layout else envelope.FULL
        committed = self.committed

        def finish(small: dict) -> None:
            records = full_state.write_rank_files(location, small, rank,
                                                  tensors=not sharded_layout)
            if sharded_layout:
                records.update(sharded.shard_records(location, rank))
            envelope.write_done_marker(location, rank, records)
            if rank == 0:
                envelope.commit(location, world, layout=layout)
                committed.append(location)
                if on_committed is not None:
                    on_committed(location)

        return finish

    def _clear_location(self, out_dir: str, filename: str) -> str:
        """Rank 0: where checkpoint ``filename`` of this run goes, emptied of a stale copy.

        The directory ``<out_dir>/<filename>`` is used if it is free, and replaced if it is
        empty, a committed checkpoint of this lineage, or an unfinished save of this lineage
        (its ``meta.json`` names the lineage and it lacks some rank's files: a save that
        crashed). Anything else is kept and this run's checkpoint goes to
        ``<filename>-<lineage>`` beside it: another run's committed checkpoint, a complete
        checkpoint that lost its commit record, another run's unfinished save, or files whose
        run cannot be read. Only entries of the run's checkpoint folder are ever replaced.

        Raises:
            CheckpointError: Neither name can be used.
        """
        logger = self.parts.logger
        kept = []
        for name in (filename, envelope.lineage_suffixed(filename, self.lineage)):
            location = storage.join(out_dir, name)
            if not storage.exists(location):
                return location
            reason = self._kept_because(location)
            if reason is None:
                logger.warning(f"replacing {storage.describe(location)}")
                if envelope.delete_checkpoint(location, self.directory):
                    return location
                reason = "it cannot be replaced (see the error above)"
            kept.append(f"{storage.describe(location)}: {reason}")
            logger.warning(f"keeping {storage.describe(location)} ({reason})"
                           + ("; this run's checkpoint is saved beside it" if name == filename
                              else ""))
        raise CheckpointError(f"cannot save checkpoint {filename!r} in "
                              f"{storage.describe(out_dir)}: " + "; ".join(kept))

    def _kept_because(self, location: str) -> str | None:
        """Why this run's save must not replace the existing ``location`` (None: it may)."""
        owner = envelope.owning_lineage(location)
        if owner is not None:
            return None if owner == self.lineage else \
                f"it is a checkpoint of another run ({owner or 'unreadable'})"
        if not storage.is_dir(location):
            return "it is a file, not a checkpoint directory"
        if not storage.listdir(location):
            return None
        if envelope.lacks_only_commit(location):
            return (f"it holds every file of a checkpoint but no {envelope.COMMIT_FILE}: its "
                    "commit record was lost")
        run = envelope.unfinished_save_of(location)
        if run == self.lineage:
            return None  # an unfinished save of this lineage (it crashed)
        return (f"it holds files of an unfinished save of another run ({run})" if run else
                f"it holds files but no readable {envelope.META_FILE}: its run is unknown")

    def delete(self, location: str) -> bool:
        """Rank 0: delete a committed checkpoint of this run's lineage from the run's
        checkpoint folder (retention, a replaced best); anything else is kept, with a logged
        error (see :func:`.envelope.delete_checkpoint`). Returns whether it was deleted."""
        return envelope.delete_checkpoint(location, self.directory, lineage=self.lineage)

    def _checkpointer(self) -> AsyncCheckpointer:
        if self._async is None:
            self._async = AsyncCheckpointer()
        return self._async

    def wait(self) -> None:
        """Wait for a background checkpoint write; raise if it failed."""
        if self._async is not None:
            self._async.wait()

    # ---- loading ------------------------------------------------------------------------
    def load(self, filename: str, map_location: str | torch.device = "cpu",
             strict: bool = False,
             revise_keys: Sequence[tuple[str, str]] = ((r"^module\.", ""),),
             weights_only: bool = True) -> dict:
        """Load model weights from a checkpoint (ours, full or sharded; an MMEngine ``.pth``; a
        state dict).

        Returns:
            The checkpoint dict (``meta`` and, for full-state checkpoints, the weights; the
            rest too unless ``weights_only``).
        """
        checkpoint, _ = self._load(filename, map_location, strict, revise_keys, weights_only)
        return checkpoint

    def _load(self, filename: str, map_location: Any, strict: bool,
              revise_keys: Sequence[tuple[str, str]], weights_only: bool,
              optim_wrapper: Any = None) -> tuple[dict, bool]:
        """Load the weights (and, for a sharded checkpoint, ``optim_wrapper``'s state with
        them); returns the checkpoint dict and whether the optimizer state was loaded."""
        runner = self.parts
        strategy = runner.strategy
        opened = open_checkpoint(filename)
        model = strategy.unwrap(runner.model)
        if opened.layout == envelope.SHARDED:
            # Every rank reads its own files before DCP's collective read: they agree first.
            checkpoint, failure = {}, None
            try:
                checkpoint = full_state.read_files(opened.location, opened.record, opened.meta,
                                                   map_location, runner.rank, weights_only)
                stored_keys = sharded.model_keys(opened.location)
            except Exception as exc:  # noqa: BLE001 - shared with every rank, then raised
                failure = exc
            agreement.raise_first_failure(failure, strategy.checkpoint_group)
        else:
            checkpoint = opened.read(map_location, runner.rank, weights_only)
        # Hooks see (and may adapt) the checkpoint before anything is loaded from it.
        runner.call_hook("after_load_checkpoint", checkpoint=checkpoint)
        loaded_optimizer = False
        try:
            if opened.layout == envelope.SHARDED:
                check_keys(stored_keys, model, filename, strict)
                result = strategy.load_sharded(opened.location, runner.model, optim_wrapper,
                                               strict=strict)
                loaded_optimizer = optim_wrapper is not None
            else:
                if "state_dict" not in checkpoint:
                    raise CheckpointError(f"{storage.describe(filename)} holds no model weights "
                                          f"('state_dict'); keys: {sorted(checkpoint)}")
                weights = _revise_keys(checkpoint["state_dict"], revise_keys)
                check_keys(set(weights), model, filename, strict)
                result = strategy.load_model_state_dict(runner.model, weights, strict=strict)
        except (CheckpointKeyMismatch, RuntimeError) as exc:
            if not isinstance(exc, CheckpointKeyMismatch) and \
                    "Error(s) in loading state_dict" not in str(exc):
                raise
            self._raise_with_config_differences(exc, checkpoint.get("meta") or {}, filename)
        missing = list(getattr(result, "missing_keys", []))
        unexpected = list(getattr(result, "unexpected_keys", []))
        if missing or unexpected:
            runner.logger.warning(f"weights from {storage.describe(filename)}: missing keys "
                                  f"{missing}, unexpected keys {unexpected}")
        runner.logger.info(f"loaded weights from {storage.describe(filename)}")
        return checkpoint, loaded_optimizer

    def _raise_with_config_differences(self, exc: Exception, meta: dict,
                                       filename: str) -> None:
        """Re-raise a weights/model mismatch, naming the model keys whose config differs
        between the checkpoint and this run (when the checkpoint recorded its config)."""
        error = with_config_differences(exc, meta, self.parts.cfg or {}, filename)
        if error is exc:
            raise exc
        raise error from exc

    def resume(self, filename: str, resume_optimizer: bool = True,
               resume_param_scheduler: bool = True, map_location: str = "default") -> None:
        """Restore the complete training state from a checkpoint and continue from it (a run
        that does not train, see :class:`~.parts.LoadRequest`, loads its weights only)."""
        runner = self.parts
        training = self.request.training
        wrapper = None
        if training and resume_optimizer and runner.optim_wrapper is not None:
            runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
            wrapper = runner.optim_wrapper
        checkpoint, optimizer_loaded = self._load(
            filename, "cpu", True, ((r"^module\.", ""),), weights_only=False,
            optim_wrapper=wrapper)
        self.resumed_from = str(filename)
        if not training:
            return  # val/test runs need the weights only
        meta = checkpoint.get("meta", {})
        # The continued run belongs to the checkpoint's lineage (older checkpoints have none:
        # their run's timestamp started it); a single-file checkpoint starts a new one.
        self._lineage = meta.get("lineage") or meta.get("timestamp") or None
        state_module.restore(runner, checkpoint, filename, self.directory, resume_optimizer,
                             resume_param_scheduler, optimizer_loaded)
        loop = runner.train_loop
        runner.logger.info(f"resumed from {storage.describe(filename)} at epoch {loop.epoch}, "
                           f"iter {loop.iter}")

    def resume_latest(self) -> None:
        """Resume from the most recently committed usable checkpoint, falling back past
        corrupt ones to the one committed before."""
        runner = self.parts
        root = self.directory
        # A run whose timestamp was given (by the Ray driver) resumes only its own checkpoints:
        # older runs that used the same work_dir may have got further.
        own = self.request.own_timestamp
        rejected: list[tuple[str, str]] = []
        candidates = envelope.list_checkpoints(root, timestamp=own, rejected=rejected)
        what = f"resume={self.request.resume!r}"
        if not candidates and rejected:
            raise envelope.unusable_checkpoints_error(root, rejected, what)
        if not candidates:
            whose = f" of run {own}" if own else ""
            runner.logger.info(f"{what}: no committed checkpoint{whose} in "
                               f"{storage.describe(root)}; training from scratch")
            return
        failures = []
        for location in reversed(candidates):
            runner.logger.info(f"{what}: resuming from {storage.describe(location)}, the "
                               "newest committed checkpoint"
                               + (" that is readable" if failures else ""))
            error = None
            try:
                self.resume(location)
            except Exception as exc:  # noqa: BLE001 - shared with every rank, then raised
                error = exc
            # Every rank resumes the same checkpoint: where one rank cannot read its files of
            # it (its rank_<r>.pt, say), all of them fall back together.
            error = agreement.first_failure(error, runner.strategy.checkpoint_group)
            if error is None:
                return
            if not isinstance(error, CheckpointError):
                raise error
            failures.append(f"{storage.describe(location)}: {error}")
            runner.logger.warning(f"skipping {storage.describe(location)}: {error}")
        raise CheckpointError(f"{what}: no usable checkpoint in {storage.describe(root)} "
                              "(nothing was deleted); " + "; ".join(failures))

    def load_or_resume(self) -> None:
        """Resume (``resume=True``/``'auto'``/location) or load ``load_from``, once per run."""
        if self._has_loaded:
            return
        self._has_loaded = True
        runner = self.parts
        resume, load_from = self.request.resume, self.request.load_from
        if resume in (True, "auto"):
            if load_from is not None:
                runner.logger.info(f"resume=True with load_from: resuming from "
                                   f"{storage.describe(load_from)}")
                self.resume(load_from)
            else:
                self.resume_latest()
            return
        if isinstance(resume, str) and resume:
            runner.logger.info(f"resume: resuming from {storage.describe(resume)} as requested")
            self.resume(resume)
            return
        if load_from is not None:
            try:
                self.load(load_from, strict=self.request.load_strict)
            except CheckpointKeyMismatch as exc:
                hint = "; set load_strict=False (e.g. --cfg-options load_strict=False) to load " \
                    "the matching keys only" if exc.partial else ""
                raise CheckpointKeyMismatch(f"load_from: {exc}{hint}", exc.partial) from None
