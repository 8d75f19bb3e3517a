"""Training, validation and test loops.

A loop owns iteration order and counters (epoch, iter, position inside the epoch) and calls the
runner's hooks around each step; it never builds components (the runner does) or touches storage.
Resuming sets the counters and asks the sampler to start at the right position, so no batch is
loaded twice.
"""
from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..dataset.loader_info import batch_size_of, find_sampler
from ..logging import print_log
from ..registry import LOOPS
from ..utils.rng_state import preserve_torch_rng
from .batch_check import mismatch_error


class BaseLoop:
    """A loop over one dataloader (built from a config with the run's seed if needed)."""

    def __init__(self, runner, dataloader: DataLoader | Mapping, key: str = "dataloader"):
        self._runner = runner
        self.dataloader = runner.build_dataloader(dataloader, key=key)

    @property
    def runner(self):
        return self._runner

    def run(self) -> Any:
        raise NotImplementedError


def _dynamic_intervals(start: int, milestones: Sequence[tuple[int, int]] | None):
    if milestones is None:
        return [0], [start]
    if not all(isinstance(m, (tuple, list)) and len(m) == 2 for m in milestones):
        raise ValueError("dynamic_intervals must be a list of (milestone, interval) pairs, got "
                         f"{milestones!r}")
    points = sorted((int(m), int(i)) for m, i in milestones)
    return [0] + [m for m, _ in points], [start] + [i for _, i in points]


def _skip_batches(dataloader: DataLoader, num_batches: int) -> None:
    """Make the dataloader's next pass start ``num_batches`` in, without loading them."""
    if num_batches == 0:
        return
    sampler = find_sampler(dataloader)
    if not hasattr(sampler, "skip_samples"):
        raise RuntimeError(
            f"cannot resume in the middle of an epoch: sampler {type(sampler).__name__} has no "
            "skip_samples(); use DefaultSampler/InfiniteSampler or resume at an epoch boundary")
    sampler.skip_samples(num_batches * batch_size_of(dataloader))


def _skip_global(dataloader: DataLoader, consumed: int) -> int | None:
    """Make the dataloader's next pass start after ``consumed`` samples of the global order
    (resume on another world size or batch size); returns this rank's samples left in the
    pass (-1: endless), or None if its sampler cannot do that."""
    sampler = find_sampler(dataloader)
    if not hasattr(sampler, "skip_global"):
        return None
    return sampler.skip_global(consumed)


class _TrainLoop(BaseLoop):
    """Counters and validation scheduling shared by the epoch- and iteration-based loops."""

    def __init__(self, runner, dataloader, val_begin: int, val_interval: int,
                 dynamic_intervals: Sequence[tuple[int, int]] | None):
        super().__init__(runner, dataloader, key="train_dataloader")
        self._epoch = 0
        self._iter = 0
        self._inner_iter = 0
        self._step_done = False
        self._first_step_ok = False
        self.val_begin = val_begin
        self.val_interval = val_interval
        self.stop_training = False
        self.dynamic_milestones, self.dynamic_intervals = _dynamic_intervals(
            val_interval, dynamic_intervals)
        dataset = self.dataloader.dataset
        if hasattr(dataset, "metainfo"):
            runner.visualizer.dataset_meta = dataset.metainfo

    @property
    def epoch(self) -> int:
        return self._epoch

    @property
    def iter(self) -> int:
        return self._iter

    @property
    def inner_iter(self) -> int:
        """Batches already done in the current epoch."""
        return self._inner_iter

    @property
    def max_epochs(self) -> int:
        return self._max_epochs

    @property
    def max_iters(self) -> int:
        return self._max_iters

    def _update_val_interval(self, progress: int) -> None:
        step = bisect.bisect(self.dynamic_milestones, progress + 1)
        self.val_interval = self.dynamic_intervals[step - 1]

    def run_iter(self, batch_idx: int, data_batch: Any) -> None:
        runner = self.runner
        lease = runner.lease
        if lease is not None and runner.world_size == 1:
            lease.check()  # lost or not renewed: stop now, not at the next checkpoint save
        runner.call_hook("before_train_iter", batch_idx=batch_idx, data_batch=data_batch)
        try:
            outputs = runner.model.train_step(data_batch, optim_wrapper=runner.optim_wrapper)
        except (RuntimeError, ValueError) as exc:
            mismatch = None if self._first_step_ok else mismatch_error(
                exc, data_batch, runner, "train_dataloader", self.dataloader.dataset)
            if mismatch is None:
                raise
            raise mismatch from exc
        self._first_step_ok = True
        self._inner_iter += 1
        self._step_done = True
        runner.call_hook("after_train_iter", batch_idx=batch_idx, data_batch=data_batch,
                         outputs=outputs)
        self._step_done = False
        self._iter += 1

    def state_dict(self) -> dict:
        """Progress for a checkpoint: the epoch, and iterations/batches COMPLETED so far.

        Hooks run after a step but before the loop counts it, so a step finished inside
        ``after_train_iter`` is counted here.
        """
        return {"epoch": self._epoch, "iter": self._iter + int(self._step_done),
                "inner_iter": self._inner_iter, "epoch_length": len(self.dataloader),
                "batch_size": batch_size_of(self.dataloader),
                "world_size": self.runner.world_size}

    def _samples_per_iter_changed(self, state: dict) -> bool:
        """Whether the checkpoint's run took a different number of samples per iteration
        (another world size or batch size): its position must then be counted in samples."""
        saved = (state.get("world_size"), state.get("batch_size"))
        return None not in saved and \
            saved != (self.runner.world_size, batch_size_of(self.dataloader))

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError


@LOOPS.register_module()
class EpochBasedTrainLoop(_TrainLoop):
    """Train for ``max_epochs`` epochs, validating every ``val_interval`` epochs from ``val_begin``.

    Args:
        runner: The runner.
        dataloader: A DataLoader or its config.
        max_epochs: Number of epochs.
        val_begin: First epoch after which validation may run.
        val_interval: Validate every this many epochs.
        dynamic_intervals: ``[(epoch, interval), ...]`` switching the interval at milestones.
    """

    def __init__(self, runner, dataloader, max_epochs: int, val_begin: int = 1,
                 val_interval: int = 1, dynamic_intervals=None):
        super().__init__(runner, dataloader, val_begin, val_interval, dynamic_intervals)
        if int(max_epochs) != max_epochs or max_epochs < 1:
            raise ValueError(f"train_cfg.max_epochs must be a positive integer, got {max_epochs!r}")
        self._max_epochs = int(max_epochs)
        self._max_iters = self._max_epochs * len(self.dataloader)
        self._resume_skip = 0
        self._resume_in_samples = False

    def run(self) -> torch.nn.Module:
        runner = self.runner
        runner.call_hook("before_train")
        while self._epoch < self._max_epochs and not self.stop_training:
            self.run_epoch()
            self._update_val_interval(self._epoch)
            if runner.val_loop is not None and self._epoch >= self.val_begin and \
                    (self._epoch % self.val_interval == 0 or self._epoch == self._max_epochs):
                runner.val_loop.run()
        runner.call_hook("after_train")
        return runner.model

    def run_epoch(self) -> None:
        runner = self.runner
        runner.call_hook("before_train_epoch")
        runner.model.train()
        start, self._resume_skip = self._resume_skip, 0
        in_samples, self._resume_in_samples = self._resume_in_samples, False
        self._inner_iter = start
        if start or in_samples:
            # Resuming mid-epoch: start the sampler at the saved position and keep the
            # generators as an uninterrupted run has them (it created its iterator earlier).
            if not in_samples:  # else the sampler was positioned by load_state_dict
                _skip_batches(self.dataloader, start)
            with preserve_torch_rng():
                batches = iter(self.dataloader)
        else:
            batches = iter(self.dataloader)
        for batch_idx, data_batch in enumerate(batches, start):
            self.run_iter(batch_idx, data_batch)
            if self.stop_training:
                break
        runner.call_hook("after_train_epoch")
        self._epoch += 1
        self._inner_iter = 0

    def load_state_dict(self, state: dict) -> None:
        """Continue at ``state``'s position; a checkpoint taken at the end of an epoch resumes
        at the start of the next one."""
        self._epoch, self._iter = int(state["epoch"]), int(state["iter"])
        inner = int(state.get("inner_iter", 0))
        if inner >= int(state.get("epoch_length") or len(self.dataloader)):
            self._epoch, inner = self._epoch + 1, 0
        if inner and self._samples_per_iter_changed(state):
            # Another world size or batch size: continue the epoch's global sample order
            # after what the saved run consumed, split over this run's ranks.
            consumed = inner * int(state["batch_size"]) * int(state["world_size"])
            left = _skip_global(self.dataloader, consumed)
            if left is not None:
                batches_left = math.ceil(left / batch_size_of(self.dataloader))
                inner = max(0, len(self.dataloader) - batches_left)
                self._resume_in_samples = True
        self._resume_skip = inner
        self._inner_iter = inner


class _InfiniteIterator:
    """Restart a finite dataloader forever, advancing its sampler's epoch each pass."""

    def __init__(self, dataloader: DataLoader, epoch: int = 0, skip_batches: int = 0,
                 skip_samples: int | None = None):
        self._dataloader = dataloader
        self.epoch = epoch
        self._set_epoch()
        if skip_batches or skip_samples:
            if skip_samples is not None:
                _skip_global(dataloader, skip_samples)
            else:
                _skip_batches(dataloader, skip_batches)
            with preserve_torch_rng():
                self._iterator = iter(dataloader)
        else:
            self._iterator = iter(dataloader)

    def _set_epoch(self) -> None:
        sampler = find_sampler(self._dataloader)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.epoch)

    def __iter__(self) -> Iterator:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._iterator)
        except StopIteration:
            self.epoch += 1
            self._set_epoch()
            self._iterator = iter(self._dataloader)
            return next(self._iterator)


@LOOPS.register_module()
class IterBasedTrainLoop(_TrainLoop):
    """Train for ``max_iters`` iterations, validating every ``val_interval`` iterations.

    Args:
        runner: The runner.
        dataloader: A DataLoader or its config (``InfiniteSampler`` or ``DefaultSampler``).
        max_iters: Number of iterations.
        val_begin: First iteration after which validation may run.
        val_interval: Validate every this many iterations.
        dynamic_intervals: ``[(iter, interval), ...]`` switching the interval at milestones.
    """

    def __init__(self, runner, dataloader, max_iters: int, val_begin: int = 1,
                 val_interval: int = 1000, dynamic_intervals=None):
        super().__init__(runner, dataloader, val_begin, val_interval, dynamic_intervals)
        if int(max_iters) != max_iters or max_iters < 1:
            raise ValueError(f"train_cfg.max_iters must be a positive integer, got {max_iters!r}")
        self._max_iters = int(max_iters)
        self._max_epochs = 1
        self._iterator: _InfiniteIterator | None = None
        self._resume_samples: int | None = None

    def _make_iterator(self) -> _InfiniteIterator:
        sampler = find_sampler(self.dataloader)
        consumed, self._resume_samples = self._resume_samples, None
        if getattr(sampler, "is_infinite", False):
            if consumed is not None and hasattr(sampler, "skip_global"):
                return _InfiniteIterator(self.dataloader, 0, skip_samples=consumed)
            return _InfiniteIterator(self.dataloader, 0, self._iter)
        # A finite sampler: the position is (pass over the data, batch inside the pass).
        if consumed is not None and hasattr(sampler, "skip_global"):
            size = len(self.dataloader.dataset)
            return _InfiniteIterator(self.dataloader, consumed // size,
                                     skip_samples=consumed % size)
        length = len(self.dataloader)
        return _InfiniteIterator(self.dataloader, self._iter // length, self._iter % length)

    def run(self) -> torch.nn.Module:
        runner = self.runner
        runner.call_hook("before_train")
        runner.call_hook("before_train_epoch")
        if self._iterator is None:
            self._iterator = self._make_iterator()
        if self._iter > 0:
            print_log(f"resuming at iteration {self._iter}: the sampler starts at its saved "
                      "position (no batches are replayed)", logger="current", level=logging.INFO)
        # Train mode is set once and again after each validation (as the epoch loop does per
        # epoch) rather than every iteration: Module.train() walks the whole model.
        runner.model.train()
        while self._iter < self._max_iters and not self.stop_training:
            data_batch = next(self._iterator)
            self.run_iter(self._iter, data_batch)
            self._update_val_interval(self._iter)
            if runner.val_loop is not None and self._iter >= self.val_begin and \
                    (self._iter % self.val_interval == 0 or self._iter == self._max_iters):
                runner.val_loop.run()
                runner.model.train()
        runner.call_hook("after_train_epoch")
        runner.call_hook("after_train")
        return runner.model

    def load_state_dict(self, state: dict) -> None:
        self._epoch, self._iter = int(state["epoch"]), int(state["iter"])
        self._inner_iter = self._iter
        self._iterator = None
        self._resume_samples = None
        if self._iter and self._samples_per_iter_changed(state):
            # Another world size or batch size: continue the global sample stream after
            # what the saved run consumed.
            self._resume_samples = self._iter * int(state["batch_size"]) * \
                int(state["world_size"])


class _EvalLoop(BaseLoop):
    """Run the model over a dataloader and feed the evaluator (shared by val and test)."""

    mode = "val"

    def __init__(self, runner, dataloader, evaluator, fp16: bool = False):
        super().__init__(runner, dataloader, key=f"{self.mode}_dataloader")
        self.evaluator = runner.build_evaluator(evaluator, key=f"{self.mode}_evaluator")
        dataset = self.dataloader.dataset
        if hasattr(dataset, "metainfo"):
            self.evaluator.dataset_meta = dataset.metainfo
            runner.visualizer.dataset_meta = dataset.metainfo
        self.fp16 = fp16
        self.last_metrics: dict | None = None
        self._first_step_ok = False

    def run(self) -> dict:
        # Evaluation draws nothing from the generators training uses, so a run resumed after
        # a validation continues with the same random numbers as one that never stopped.
        with preserve_torch_rng():
            return self._run()

    def _run(self) -> dict:
        runner, mode = self.runner, self.mode
        runner.call_hook(f"before_{mode}")
        runner.call_hook(f"before_{mode}_epoch")
        runner.model.eval()
        for batch_idx, data_batch in enumerate(self.dataloader):
            self.run_iter(batch_idx, data_batch)
        metrics = self.evaluator.evaluate(len(self.dataloader.dataset))
        self.last_metrics = metrics
        runner.call_hook(f"after_{mode}_epoch", metrics=metrics)
        runner.call_hook(f"after_{mode}")
        return metrics

    @torch.no_grad()
    def run_iter(self, batch_idx: int, data_batch: Any) -> None:
        runner, mode = self.runner, self.mode
        runner.call_hook(f"before_{mode}_iter", batch_idx=batch_idx, data_batch=data_batch)
        with runner.strategy.autocast(enabled=self.fp16):
            step = runner.model.val_step if mode == "val" else runner.model.test_step
            try:
                outputs = step(data_batch)
            except (RuntimeError, ValueError) as exc:
                mismatch = None if self._first_step_ok else mismatch_error(
                    exc, data_batch, runner, f"{mode}_dataloader", self.dataloader.dataset)
                if mismatch is None:
                    raise
                raise mismatch from exc
        self._first_step_ok = True
        self.evaluator.process(data_samples=outputs, data_batch=data_batch)
        runner.call_hook(f"after_{mode}_iter", batch_idx=batch_idx, data_batch=data_batch,
                         outputs=outputs)


@LOOPS.register_module()
class ValLoop(_EvalLoop):
    """Validate over ``val_dataloader`` and return the metrics dict.

    Args:
        runner: The runner.
        dataloader: A DataLoader or its config.
        evaluator: An Evaluator, a metric config, or a list of them.
        fp16: Run the model under autocast (fp16 on GPU, bf16 on CPU).
    """

    mode = "val"


@LOOPS.register_module()
class TestLoop(_EvalLoop):
    """Test over ``test_dataloader`` and return the metrics dict (arguments as ``ValLoop``)."""

    mode = "test"
