"""LoggerHook: decides when a log event happens and sends it to the logger and the visualizer.

This hook owns the logging schedule (every ``interval`` iterations, epoch ends, the experiment
name every ``interval_exp_name`` iterations), the test-results JSON file, and copying the run's
log files to ``out_dir`` at the end. What a log line says is the log processor's business
(:mod:`raytrainer.runner.log_processor`); where scalars are stored is the visualizer's.
"""
from __future__ import annotations

import json
import logging
import posixpath
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from raytrainer import storage
from raytrainer.hooks.hook import DATA_BATCH, Hook, has_train_loop
from raytrainer.registry import HOOKS

__all__ = ["LoggerHook"]


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"LoggerHook: {name} must be an int, got {value!r}")
    if value <= 0:
        raise ValueError(f"LoggerHook: {name} must be greater than 0, got {value}")


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"LoggerHook: {name} must be a bool, got {value!r}")


def _json_ready(value: Any) -> Any:
    """``value`` with tensors/arrays as lists and anything JSON cannot hold dropped (None)."""
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return None


@HOOKS.register_module()
class LoggerHook(Hook):
    """Log training progress, send scalars to the visualizer, and publish the logs at the end.

    Train lines are written after every ``interval``-th iteration of an epoch, and after the
    epoch's last iteration too unless ``ignore_last`` (an epoch no longer than ``interval`` is
    always logged at its end). Each train line's tag goes to ``runner.visualizer`` at
    ``step=runner.iter + 1``; val metrics go at ``step=epoch`` (or ``iter``, see
    ``log_metric_by_epoch``).

    Args:
        interval: Log every this many iterations.
        ignore_last: Skip the log of an epoch's last iterations when fewer than ``interval``
            remain after the last regular log.
        interval_exp_name: Log ``Exp name: ...`` every this many iterations (and at the end of
            each epoch), so the experiment is easy to find in a long log.
        out_dir: Where to copy the run's log files after the run (a path or URL), into
            ``<out_dir>/<basename of work_dir>/<timestamp>/``. None copies nothing.
        out_suffix: Which files of ``runner.log_dir`` (searched recursively) to copy, by name
            ending.
        keep_local: Keep the originals after copying them to ``out_dir``.
        log_metric_by_epoch: Record val metrics at ``step=epoch`` for epoch-based runs;
            iteration-based runs (``log_processor.by_epoch=False``) and ``False`` use
            ``step=iter``.

    Raises:
        TypeError, ValueError: An argument has the wrong type or value (named in the message).
    """

    priority = "BELOW_NORMAL"

    def __init__(self, interval: int = 10, ignore_last: bool = True,
                 interval_exp_name: int = 1000, out_dir: str | None = None,
                 out_suffix: str | Sequence[str] = (".json", ".log", ".py", "yaml"),
                 keep_local: bool = True, log_metric_by_epoch: bool = True):
        _check_positive_int("interval", interval)
        _check_positive_int("interval_exp_name", interval_exp_name)
        _check_bool("ignore_last", ignore_last)
        _check_bool("keep_local", keep_local)
        _check_bool("log_metric_by_epoch", log_metric_by_epoch)
        if out_dir is not None and not isinstance(out_dir, str):
            out_dir = str(out_dir)  # a pathlib.Path
        if isinstance(out_suffix, str):
            out_suffix = (out_suffix,)
        if not isinstance(out_suffix, Sequence) or not all(isinstance(s, str)
                                                             for s in out_suffix):
            raise TypeError(f"LoggerHook: out_suffix must be a str or a list of str, got "
                            f"{out_suffix!r}")
        self.interval = interval
        self.ignore_last = ignore_last
        self.interval_exp_name = interval_exp_name
        self.out_dir = out_dir
        self.out_suffix = tuple(out_suffix)
        self.keep_local = keep_local
        self.log_metric_by_epoch = log_metric_by_epoch
        self.json_log_path: str | None = None
        self._run_out_dir: str | None = None
        self._train_length: int | None = None

    def before_run(self, runner) -> None:
        """Name this run's JSON log and its copy destination under ``out_dir``."""
        self.json_log_path = f"{runner.timestamp}.json"
        if self.out_dir is None:
            return
        basename = posixpath.basename(str(runner.work_dir).rstrip("/"))
        self._run_out_dir = storage.join(self.out_dir, basename, str(runner.timestamp))
        runner.logger.info(f"Text logs will be saved to {self._run_out_dir} after the run.")

    def after_train_iter(self, runner, batch_idx: int, data_batch: DATA_BATCH = None,
                         outputs: dict | None = None) -> None:
        """Log the experiment name and the train line when their intervals come round."""
        # This runs every iteration: the dataloader's length is read once per epoch.
        length = self._train_length
        if length is None:
            length = self._train_length = len(runner.train_dataloader)
        end_of_epoch = batch_idx + 1 == length
        if self.every_n_train_iters(runner, self.interval_exp_name) or end_of_epoch:
            # the log file's marker (as MMEngine's); the console shows the run's name once
            runner.logger.info(f"Exp name: {runner.experiment_name}", extra={"file_only": True})
        if not self.every_n_inner_iters(batch_idx, self.interval):
            # A short epoch (<= interval) would otherwise never be logged with ignore_last.
            if not end_of_epoch or (self.ignore_last and length > self.interval):
                return
        tag, log_str = runner.log_processor.get_log_after_iter(runner, batch_idx, "train")
        runner.logger.info(log_str)
        runner.visualizer.add_scalars(tag, step=runner.iter + 1,
                                      file_path=self._json_name(runner))

    def before_train_epoch(self, runner) -> None:
        self._train_length = None  # a new epoch may come from another dataloader

    def after_val_iter(self, runner, batch_idx: int, data_batch: DATA_BATCH = None,
                       outputs=None) -> None:
        if self.every_n_inner_iters(batch_idx, self.interval):
            _, log_str = runner.log_processor.get_log_after_iter(runner, batch_idx, "val")
            runner.logger.info(log_str)

    def after_test_iter(self, runner, batch_idx: int, data_batch: DATA_BATCH = None,
                        outputs=None) -> None:
        if self.every_n_inner_iters(batch_idx, self.interval):
            _, log_str = runner.log_processor.get_log_after_iter(runner, batch_idx, "test")
            runner.logger.info(log_str)

    def after_val_epoch(self, runner, metrics: dict[str, float] | None = None) -> None:
        """Log the val summary and record its scalars at the epoch (or iteration) step."""
        last_batch = len(runner.val_dataloader) - 1
        tag, log_str = runner.log_processor.get_log_after_epoch(runner, last_batch, "val")
        runner.logger.info(log_str)
        trained = has_train_loop(runner)
        by_epoch = getattr(runner.log_processor, "by_epoch", True)
        if self.log_metric_by_epoch and by_epoch:
            step = runner.epoch if trained else 0
        else:
            step = runner.iter if trained else 0
        runner.visualizer.add_scalars(tag, step=step, file_path=self._json_name(runner))

    def after_test_epoch(self, runner, metrics: dict[str, float] | None = None) -> None:
        """Log the test summary and write it, non-scalar results included, to ``<timestamp>.json``
        in the log dir (rank 0)."""
        last_batch = len(runner.test_dataloader) - 1
        tag, log_str = runner.log_processor.get_log_after_epoch(runner, last_batch, "test",
                                                                with_non_scalar=True)
        runner.logger.info(log_str)
        if runner.rank == 0:
            location = storage.join(str(runner.log_dir), self._json_name(runner))
            storage.write_text(location, json.dumps(_json_ready(tag)))

    def after_run(self, runner) -> None:
        """Close the visualizer, then copy the log files to ``out_dir`` (rank 0)."""
        runner.visualizer.close()
        if self._run_out_dir is None or runner.rank != 0:
            return
        copied = self._copy_logs(runner)
        if self.keep_local or not copied:
            return
        _close_file_handlers(runner.logger)
        for location in copied:
            fs, path = storage.get_filesystem(location)
            fs.rm(path)
        runner.logger.info(f"Removed {len(copied)} log file(s) from {runner.log_dir} "
                           f"(keep_local=False); they are in {self._run_out_dir}")

    def _copy_logs(self, runner) -> list[str]:
        """Copy every ``out_suffix`` file under the log dir; return the copied locations."""
        log_dir = str(runner.log_dir)
        fs, root = storage.get_filesystem(log_dir)
        root = root.rstrip("/")
        copied = []
        for path in sorted(fs.find(root)):
            relative = path[len(root) + 1:]
            if not relative.endswith(self.out_suffix):
                continue
            source = storage.join(log_dir, relative)
            target = storage.join(self._run_out_dir, relative)
            storage.write_bytes(target, storage.read_bytes(source))
            runner.logger.info(f"The file {source} has been uploaded to {target}.")
            copied.append(source)
        return copied

    def _json_name(self, runner) -> str:
        return self.json_log_path or f"{runner.timestamp}.json"


def _close_file_handlers(logger: logging.Logger) -> None:
    # The files are about to be deleted: stop writing to them (and release them on Windows).
    for handler in list(logger.handlers):
        stream = getattr(handler, "stream", None)
        if isinstance(handler, logging.StreamHandler) and stream not in (sys.stdout, sys.stderr):
            handler.close()
            logger.removeHandler(handler)
