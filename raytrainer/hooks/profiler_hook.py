"""ProfilerHook: run ``torch.profiler`` over the first epochs or iterations of training.

The hook owns the profiler's lifetime (start before the first training step, stop after
``profile_times`` epochs/iterations or when training ends) and where its output goes: a Chrome
trace under ``<log_dir>/profiler/``, a key-averages table in the log, or TensorBoard traces.
Output locations may be storage URLs; traces are then written locally and copied out.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import torch
from torch import profiler as torch_profiler

from .. import storage
from ..registry import HOOKS
from .hook import DATA_BATCH, Hook

_TRACE_TYPES = ("log_trace", "tb_trace")


def _copy_out(local_dir: str, location: str) -> None:
    """Move every file of ``local_dir`` to the storage directory ``location``."""
    for name in sorted(os.listdir(local_dir)):
        path = os.path.join(local_dir, name)
        with open(path, "rb") as f:
            storage.write_bytes(storage.join(location, name), f.read())
        os.remove(path)


def _resolve(runner, location: str) -> str:
    """A relative output location is taken inside the run's log_dir."""
    if storage.is_url(location) or os.path.isabs(location):
        return location
    return storage.join(runner.log_dir, location)


@HOOKS.register_module()
class ProfilerHook(Hook):
    """Profile training steps with ``torch.profiler.profile``.

    Args:
        by_epoch: Count ``profile_times`` in epochs (True) or iterations.
        profile_times: How many epochs/iterations to profile, from the first one trained (also
            after a resume). The profiler is then stopped and training continues unprofiled.
        activity_with_cpu: Record CPU activity.
        activity_with_cuda: Record CUDA kernels.
        schedule: Keyword arguments of ``torch.profiler.schedule`` (``wait``, ``warmup``,
            ``active``, ``repeat``); None records every step.
        on_trace_ready: A callable taking the profiler, or ``dict(type='log_trace', **table_kw)``
            (log ``key_averages().table(**table_kw)``), or ``dict(type='tb_trace',
            dir_name=..., worker_name=..., use_gzip=...)`` (TensorBoard trace files; a relative
            ``dir_name`` is inside the log_dir, default ``tf_tracing_logs``).
        record_shapes: Record operator input shapes.
        profile_memory: Track tensor allocations.
        with_stack: Record source file and line of operators.
        with_flops: Estimate FLOPs of matrix multiplications and convolutions.
        json_trace_path: Where to write the Chrome trace (a path or URL). When None and there
            is no schedule and no handler that writes files itself (``tb_trace``, a callable),
            the trace goes to ``<log_dir>/profiler/trace_rank<rank>.json``.
    """

    priority = "VERY_LOW"

    def __init__(self, *, by_epoch: bool = True, profile_times: int = 1,
                 activity_with_cpu: bool = True, activity_with_cuda: bool = False,
                 schedule: dict | None = None,
                 on_trace_ready: Callable | dict | None = None, record_shapes: bool = False,
                 profile_memory: bool = False, with_stack: bool = False, with_flops: bool = False,
                 json_trace_path: str | None = None) -> None:
        if not torch.autograd.kineto_available():
            raise RuntimeError("ProfilerHook needs a PyTorch build with Kineto support")
        if int(profile_times) != profile_times or profile_times < 1:
            raise ValueError(f"ProfilerHook: profile_times must be a positive integer, got "
                             f"{profile_times!r}")
        if schedule is not None and not isinstance(schedule, dict):
            raise TypeError(f"ProfilerHook: schedule must be a dict of torch.profiler.schedule "
                            f"arguments, got {type(schedule).__name__}")
        _check_trace_config(on_trace_ready)
        self.by_epoch = bool(by_epoch)
        self.profile_times = int(profile_times)
        self.activities = [a for a, on in ((torch_profiler.ProfilerActivity.CPU,
                                            activity_with_cpu),
                                           (torch_profiler.ProfilerActivity.CUDA,
                                            activity_with_cuda)) if on]
        self.schedule = torch_profiler.schedule(**schedule) if schedule is not None else None
        self.on_trace_ready = on_trace_ready
        self.record_shapes = record_shapes
        self.profile_memory = profile_memory
        self.with_stack = with_stack
        self.with_flops = with_flops
        self.json_trace_path = json_trace_path
        self.profiler: torch_profiler.profile | None = None
        self.trace_location: str | None = None
        self._profiled = 0
        self._closed = False

    def before_train(self, runner) -> None:
        available = runner.max_epochs - runner.epoch if self.by_epoch else \
            runner.max_iters - runner.iter
        if self.profile_times > available:
            unit = "epochs" if self.by_epoch else "iterations"
            raise ValueError(f"ProfilerHook: profile_times={self.profile_times} but only "
                             f"{available} {unit} are left to train")
        self.profiler = torch_profiler.profile(
            activities=self.activities, schedule=self.schedule,
            on_trace_ready=self._trace_handler(runner), record_shapes=self.record_shapes,
            profile_memory=self.profile_memory, with_stack=self.with_stack,
            with_flops=self.with_flops)
        self.profiler.__enter__()
        unit = "epoch" if self.by_epoch else "iteration"
        runner.logger.info(f"profiling the next {self.profile_times} training {unit}(s)")

    def after_train_iter(self, runner, batch_idx: int, data_batch: DATA_BATCH = None,
                         outputs: dict | None = None) -> None:
        if self.profiler is None or self._closed:
            return
        self.profiler.step()
        if not self.by_epoch:
            self._profiled += 1
            if self._profiled >= self.profile_times:
                self._stop(runner)

    def after_train_epoch(self, runner) -> None:
        if self.profiler is None or self._closed:
            return
        if self.by_epoch:
            self._profiled += 1
            if self._profiled < self.profile_times:
                return
        # An iteration-based loop ends its only "epoch" when training ends.
        self._stop(runner)

    def after_train(self, runner) -> None:
        if self.profiler is not None and not self._closed:
            self._stop(runner)  # training stopped early (EarlyStoppingHook ...)

    def _stop(self, runner) -> None:
        self._closed = True
        self.profiler.__exit__(None, None, None)
        location = self._json_location(runner)
        if location is not None:
            self._export_chrome_trace(location)
            self.trace_location = location
            runner.logger.info(f"profiler: Chrome trace written to {location}")

    # ---- outputs -----------------------------------------------------------------------
    def _json_location(self, runner) -> str | None:
        if self.json_trace_path is not None:
            return str(self.json_trace_path)
        writes_itself = callable(self.on_trace_ready) or (
            isinstance(self.on_trace_ready, dict) and self.on_trace_ready["type"] == "tb_trace")
        if self.schedule is not None or writes_itself:
            return None
        return storage.join(runner.log_dir, "profiler", f"trace_rank{runner.rank}.json")

    def _export_chrome_trace(self, location: str) -> None:
        if not storage.is_url(location):
            os.makedirs(os.path.dirname(os.path.abspath(location)), exist_ok=True)
            self.profiler.export_chrome_trace(location)
            return
        local_dir = tempfile.mkdtemp(prefix="raytrainer-profiler-")
        try:
            # Keep the name: torch gzips a trace whose name ends in .gz.
            local = os.path.join(local_dir, os.path.basename(location.rstrip("/")))
            self.profiler.export_chrome_trace(local)
            with open(local, "rb") as f:
                storage.write_bytes(location, f.read())
        finally:
            shutil.rmtree(local_dir, ignore_errors=True)

    def _trace_handler(self, runner) -> Callable | None:
        config = self.on_trace_ready
        if config is None or callable(config):
            return config
        options = {k: v for k, v in config.items() if k != "type"}
        if config["type"] == "log_trace":
            def log_table(prof) -> None:
                runner.logger.info("profiler key averages:\n" +
                                   prof.key_averages().table(**options))
            return log_table
        return self._tensorboard_handler(runner, options)

    def _tensorboard_handler(self, runner, options: dict[str, Any]) -> Callable:
        location = _resolve(runner, str(options.pop("dir_name", "tf_tracing_logs")))
        if self.json_trace_path is not None:
            runner.logger.warning("ProfilerHook: tb_trace writes its own trace files; "
                                  "json_trace_path writes a second copy")
        runner.logger.info(f"profiler: TensorBoard traces go to {location}")
        if not storage.is_url(location):
            return torch_profiler.tensorboard_trace_handler(location, **options)
        local_dir = tempfile.mkdtemp(prefix="raytrainer-tb-trace-")
        write_local = torch_profiler.tensorboard_trace_handler(local_dir, **options)

        def write_and_copy(prof) -> None:
            write_local(prof)
            _copy_out(local_dir, location)
        return write_and_copy


def _check_trace_config(on_trace_ready: Any) -> None:
    if on_trace_ready is None or callable(on_trace_ready):
        return
    if not isinstance(on_trace_ready, dict):
        raise TypeError(f"ProfilerHook: on_trace_ready must be a callable, a dict or None, got "
                        f"{type(on_trace_ready).__name__}")
    if on_trace_ready.get("type") not in _TRACE_TYPES:
        raise ValueError(f"ProfilerHook: on_trace_ready type must be one of {_TRACE_TYPES}, got "
                         f"{on_trace_ready.get('type')!r}")


__all__ = ["ProfilerHook"]
