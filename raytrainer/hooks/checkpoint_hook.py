"""Saves checkpoints at intervals, keeps the best by a metric, and prunes old ones.

Retention (``max_keep_ckpts=K``) runs each time a regular checkpoint (``epoch_N``/``iter_N``)
is committed and considers only the checkpoints of the run's lineage (``meta.json``'s
``lineage``: the first run's timestamp, inherited by every run resumed from one of its
checkpoints), in commit order. It keeps the K most recently committed, the new one among
them, and deletes older ones only after the new one is committed, so the checkpoint a run
resumed from (or the only committed one) survives until a newer one exists. Checkpoints of
other runs that share the directory are never deleted, even if they got further. ``best_*``
checkpoints are kept apart: each new best replaces the previous best once it is committed.
Every deletion goes through ``runner.checkpoints.delete``: only a committed checkpoint of the
lineage, directly in the run's checkpoint folder (never a link), is ever deleted.

On Ray Train the regular checkpoints in the run directory are registered with Ray, whose
``CheckpointConfig(num_to_keep=K)`` deletes them (see ``raytrainer.launch.worker.report_hook``);
this hook deletes everything else (``best_*``, checkpoints under an ``out_dir`` outside the
run directory, and leftovers that Ray never registered) by the rules above.
"""
from __future__ import annotations

import logging
import math
import posixpath
from collections.abc import Sequence

from .. import checkpoint as ckpt
from .. import storage
from ..checkpoint.folder import checkpoint_dir_for
from ..config import warn_ignored
from ..registry import HOOKS
from .hook import Hook

_RULES = {"greater": lambda a, b: a > b, "less": lambda a, b: a < b}
_INITIAL = {"greater": -math.inf, "less": math.inf}
_GREATER_KEYS = ("acc", "top", "AR@", "auc", "precision", "mAP", "mDice", "mIoU", "mAcc", "aAcc")
_LESS_KEYS = ("loss",)


@HOOKS.register_module()
class CheckpointHook(Hook):
    """Save the training state every ``interval`` epochs (or iterations).

    Checkpoints go to ``<work_dir>/checkpoints/<epoch_N|iter_N>/`` (or
    ``<out_dir>/<work_dir name>/checkpoints/``) and count only once committed.

    Args:
        interval: Save every this many epochs/iterations; -1 saves only the last (if
            ``save_last``).
        by_epoch: Count ``interval`` in epochs (after each epoch) or iterations.
        save_optimizer: Include the optimizer state.
        save_param_scheduler: Include the scheduler states.
        out_dir: Root for checkpoints instead of the work_dir (a path or URL).
        max_keep_ckpts: Keep at most this many regular checkpoints of this run's lineage
            (-1: all), the most recently committed. Older ones are deleted only after a newer
            one is committed; other runs' checkpoints in the directory are not counted.
        save_last: Always save after the last epoch/iteration.
        save_best: Metric name(s) (or ``'auto'``: the first metric) whose best value keeps a
            ``best_<metric>_<epoch_N|iter_N>`` checkpoint.
        rule: ``'greater'`` or ``'less'`` (one, or one per ``save_best`` key); inferred from the
            metric name when None.
        greater_keys, less_keys: Names used to infer ``rule``.
        filename_tmpl: Name template, ``'epoch_{}'``/``'iter_{}'`` by default.
        save_begin: First epoch/iteration at which interval saving starts.
        async_save: Block training only while the state is copied to CPU memory and write
            the checkpoint on a background thread (one write in flight at a time; a failed
            write is raised at the next save or at the end of training).
    """

    priority = "VERY_LOW"

    def __init__(self, interval: int = -1, by_epoch: bool = True, save_optimizer: bool = True,
                 save_param_scheduler: bool = True, out_dir: str | None = None,
                 max_keep_ckpts: int = -1, save_last: bool = True,
                 save_best: str | Sequence[str] | None = None,
                 rule: str | Sequence[str] | None = None,
                 greater_keys: Sequence[str] | None = None,
                 less_keys: Sequence[str] | None = None, file_client_args=None,
                 filename_tmpl: str | None = None, backend_args=None,
                 published_keys=None, save_begin: int = 0, async_save: bool = False):
        if not isinstance(interval, int) or isinstance(interval, bool) or interval == 0 or \
                interval < -1:
            raise ValueError(f"CheckpointHook: interval must be a positive integer or -1 (no "
                             f"periodic saving), got {interval!r}")
        if max_keep_ckpts == 0 or max_keep_ckpts < -1:
            raise ValueError(f"CheckpointHook: max_keep_ckpts must be -1 or positive, got "
                             f"{max_keep_ckpts}")
        for name, value in (("file_client_args", file_client_args),
                            ("backend_args", backend_args), ("published_keys", published_keys)):
            if value is not None:
                warn_ignored(f"CheckpointHook.{name}", value)
        self.interval = interval
        self.by_epoch = by_epoch
        self.save_optimizer = save_optimizer
        self.save_param_scheduler = save_param_scheduler
        self.out_dir = out_dir
        self.max_keep_ckpts = max_keep_ckpts
        self.save_last = save_last
        self.save_begin = save_begin
        self.async_save = async_save
        self.filename_tmpl = filename_tmpl or ("epoch_{}" if by_epoch else "iter_{}")
        self.greater_keys = tuple(greater_keys or _GREATER_KEYS)
        self.less_keys = tuple(less_keys or _LESS_KEYS)
        self.key_indicators = [save_best] if isinstance(save_best, str) else \
            list(save_best or [])
        rules = [rule] if rule is None or isinstance(rule, str) else list(rule)
        if len(rules) == 1:
            rules = rules * max(len(self.key_indicators), 1)
        if self.key_indicators and len(rules) != len(self.key_indicators):
            raise ValueError(f"CheckpointHook: got {len(rules)} rules for "
                             f"{len(self.key_indicators)} save_best keys")
        for r in rules:
            if r is not None and r not in _RULES:
                raise ValueError(f"CheckpointHook: rule must be 'greater', 'less' or None, got "
                                 f"{r!r}")
        self.rules = [self._infer_rule(k, r) if k != "auto" else r
                      for k, r in zip(self.key_indicators, rules)]
        self._root: str | None = None

    def _infer_rule(self, key: str, rule: str | None) -> str:
        if rule is not None:
            return rule
        lowered = key.lower()
        greater = [k.lower() for k in self.greater_keys]
        less = [k.lower() for k in self.less_keys]
        if lowered in greater:
            return "greater"
        if lowered in less:
            return "less"
        if any(k in lowered for k in greater):
            return "greater"
        if any(k in lowered for k in less):
            return "less"
        raise ValueError(f"CheckpointHook: cannot infer whether {key!r} should be greater or "
                         "less; set rule='greater' or rule='less'")

    def checkpoint_dir(self, runner) -> str:
        """The directory this hook writes checkpoints into."""
        if self._root is None:
            self._root = checkpoint_dir_for(runner.work_dir, self.out_dir)
        return self._root

    def before_train(self, runner) -> None:
        mode = "in the background" if self.async_save else "synchronously"
        runner.logger.info(f"checkpoints will be saved {mode} to "
                           f"{storage.describe(self.checkpoint_dir(runner))}")

    def after_train(self, runner) -> None:
        runner.wait_for_checkpoint()  # a failed background save fails the run

    def after_train_epoch(self, runner) -> None:
        if not self.by_epoch:
            return
        if self.every_n_epochs(runner, self.interval, self.save_begin) or \
                (self.save_last and self.is_last_train_epoch(runner)):
            self._save(runner, self.filename_tmpl.format(runner.epoch + 1))

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if self.by_epoch:
            return
        if self.every_n_train_iters(runner, self.interval, self.save_begin) or \
                (self.save_last and self.is_last_train_iter(runner)):
            self._save(runner, self.filename_tmpl.format(runner.iter + 1))

    def after_val_epoch(self, runner, metrics=None) -> None:
        if not self.key_indicators or not metrics or runner.train_loop_or_none is None:
            return
        self._save_best(runner, metrics)

    def _write(self, runner, name: str, on_committed=None) -> str:
        return runner.save_checkpoint(self.checkpoint_dir(runner), name,
                                      save_optimizer=self.save_optimizer,
                                      save_param_scheduler=self.save_param_scheduler,
                                      by_epoch=self.by_epoch, asynchronous=self.async_save,
                                      on_committed=on_committed)

    def _save(self, runner, name: str) -> str:
        def committed(location: str) -> None:
            runner.logger.info(f"saved checkpoint {storage.describe(location)}")
            if self.max_keep_ckpts > 0:
                self._prune(runner, self.checkpoint_dir(runner), location)

        location = self._write(runner, name, committed)
        runner.message_hub.update_info("last_ckpt", location)
        return location

    def _prune(self, runner, root: str, newest: str) -> None:
        """Delete this lineage's checkpoints committed before ``newest`` (just committed)
        beyond the ``max_keep_ckpts`` most recent, except those another owner deletes."""
        lineage = ckpt.list_checkpoints(root, warn=False, lineage=runner.checkpoints.lineage)
        names = [posixpath.basename(location.rstrip("/")) for location in lineage]
        newest_name = posixpath.basename(newest.rstrip("/"))
        if newest_name not in names:
            return  # not listed (deleted meanwhile?): nothing is known to be newer
        older = lineage[:names.index(newest_name)]
        keep_older = self.max_keep_ckpts - 1
        elsewhere = runner.checkpoints.deleted_elsewhere
        for old in older[:max(len(older) - keep_older, 0)]:
            if elsewhere is not None and elsewhere(old):
                continue  # Ray Train deletes the checkpoints it registered
            if runner.checkpoints.delete(old):
                runner.logger.info(f"max_keep_ckpts={self.max_keep_ckpts}: removed "
                                   f"{storage.describe(old)}")

    def _save_best(self, runner, metrics: dict) -> None:
        hub = runner.message_hub
        if "auto" in self.key_indicators:
            first = next(iter(metrics))
            index = self.key_indicators.index("auto")
            self.key_indicators[index] = first
            self.rules[index] = self._infer_rule(first, self.rules[index])
        progress = runner.epoch if self.by_epoch else runner.iter
        single = len(self.key_indicators) == 1
        for key, rule in zip(self.key_indicators, self.rules):
            if key not in metrics:
                runner.logger.log(logging.WARNING, f"save_best: metric {key!r} is not among "
                                  f"the validation metrics {sorted(metrics)}")
                continue
            score_key = "best_score" if single else f"best_score_{key}"
            path_key = "best_ckpt" if single else f"best_ckpt_{key}"
            best = hub.get_info(score_key, _INITIAL[rule])
            score = float(metrics[key])
            if not _RULES[rule](score, best):
                continue
            previous = hub.get_info(path_key)
            name = f"best_{key}_{self.filename_tmpl.format(progress)}".replace("/", "_")

            def committed(location: str, previous=previous, key=key, score=score) -> None:
                runner.logger.info(f"best {key} = {score:.4f}: saved "
                                   f"{storage.describe(location)}")
                # The old best goes only once the new one is committed (and only if it is
                # this lineage's checkpoint in this run's folder).
                if previous and previous != location:
                    runner.checkpoints.delete(previous)

            hub.update_info(score_key, score)
            hub.update_info(path_key, self._write(runner, name, committed))
