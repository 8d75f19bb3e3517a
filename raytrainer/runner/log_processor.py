"""Turn the message hub's scalars into one log event: a tag dict and a log line.

This module owns smoothing (windowed means, the ``custom_cfg`` statistics) and the text of the
log lines (``Epoch(train) [1][ 10/28]  lr: 1.0000e-02  eta: 0:00:30  time: ...``), which match
MMEngine's character for character so that log-reading habits and scripts carry over. It only
reads the runner (message hub, counters, dataloader lengths); deciding *when* to log and *where*
the results go belongs to :class:`~raytrainer.hooks.logger_hook.LoggerHook`.
"""
from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from raytrainer.hooks.hook import has_train_loop
from raytrainer.logging import HistoryBuffer
from raytrainer.registry import LOG_PROCESSORS

__all__ = ["LogProcessor", "has_train_loop"]

_MODES = ("train", "val", "test")
_STATISTICS = ("mean", "max", "min", "current")
_CUSTOM_KEYS = ("data_src", "method_name", "window_size", "log_name")
_TIME_KEYS = ("time", "data_time")


@dataclass(frozen=True)
class _CustomStat:
    """One validated ``custom_cfg`` entry: which statistic of which scalar, logged as what."""

    data_src: str
    method_name: str
    window_size: int | str | None
    log_name: str

    def compute(self, buffer: HistoryBuffer, runner, batch_idx: int) -> Any:
        if self.method_name == "current":
            return buffer.current()
        window = self.window_size
        if window == "epoch":
            window = batch_idx + 1
        elif window == "global":
            window = runner.iter + 1
        return buffer.statistics(self.method_name, window)


def _parse_custom_cfg(custom_cfg: Sequence[Mapping] | None, by_epoch: bool) -> list[_CustomStat]:
    """Validate ``custom_cfg`` once, so a bad entry fails at build time with its index named."""
    if custom_cfg is None:
        return []
    if isinstance(custom_cfg, Mapping) or not isinstance(custom_cfg, Sequence):
        raise TypeError("log_processor.custom_cfg must be a list of dicts, got "
                        f"{type(custom_cfg).__name__}")
    stats: list[_CustomStat] = []
    for i, entry in enumerate(custom_cfg):
        where = f"log_processor.custom_cfg[{i}]"
        if not isinstance(entry, Mapping):
            raise TypeError(f"{where} must be a dict, got {type(entry).__name__}")
        unknown = sorted(set(entry) - set(_CUSTOM_KEYS))
        if unknown:
            raise ValueError(f"{where} has unknown key(s) {unknown}; allowed keys are "
                             f"{list(_CUSTOM_KEYS)}")
        data_src = entry.get("data_src")
        if not isinstance(data_src, str) or not data_src:
            raise ValueError(f"{where} needs 'data_src', the name of a logged scalar such as "
                             f"'loss', got {data_src!r}")
        method = entry.get("method_name")
        if method not in _STATISTICS:
            raise ValueError(f"{where}: method_name must be one of {list(_STATISTICS)}, "
                             f"got {method!r}")
        window = entry.get("window_size")
        _check_window(where, method, window, by_epoch)
        log_name = entry.get("log_name", data_src)
        if not isinstance(log_name, str) or not log_name:
            raise ValueError(f"{where}: log_name must be a non-empty str, got {log_name!r}")
        stats.append(_CustomStat(data_src, method, window, log_name))
    _check_unique_log_names(stats)
    return stats


def _check_window(where: str, method: str, window: Any, by_epoch: bool) -> None:
    if window is None:
        return
    if method == "current":
        raise ValueError(f"{where}: method_name 'current' takes no window_size, got {window!r}")
    if isinstance(window, bool) or not isinstance(window, (int, str)):
        raise TypeError(f"{where}: window_size must be a positive int, 'epoch' or 'global', "
                        f"got {window!r}")
    if isinstance(window, int) and window <= 0:
        raise ValueError(f"{where}: window_size must be a positive int, got {window}")
    if isinstance(window, str) and window not in ("epoch", "global"):
        raise ValueError(f"{where}: window_size must be a positive int, 'epoch' or 'global', "
                         f"got {window!r}")
    if window == "epoch" and not by_epoch:
        raise ValueError(f"{where}: window_size='epoch' needs by_epoch=True; an iteration-based "
                         "log processor has no epochs (use an int or 'global')")


def _check_unique_log_names(stats: list[_CustomStat]) -> None:
    # Two entries with the same log_name would silently overwrite each other; an entry without
    # log_name replaces data_src itself, which can only happen once per scalar.
    seen: dict[str, _CustomStat] = {}
    for stat in stats:
        if stat.log_name in seen:
            raise ValueError(
                f"log_processor.custom_cfg logs '{stat.log_name}' twice (data_src "
                f"'{seen[stat.log_name].data_src}' and '{stat.data_src}'); give each entry a "
                "distinct log_name (an entry without log_name overwrites its data_src)")
        seen[stat.log_name] = stat


def _max_memory_mb() -> int | None:
    """Peak CUDA memory allocated since the last call, in MB; None without CUDA.

    The peak is reset after reading (as MMEngine does) so each log line shows the peak of its
    own interval, not of the whole run.
    """
    if not torch.cuda.is_available():
        return None
    peak = torch.cuda.max_memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    return int(peak) // (1024 * 1024)


def _format_eta(seconds: float) -> str:
    return str(datetime.timedelta(seconds=int(seconds)))


@LOG_PROCESSORS.register_module()
class LogProcessor:
    """Format the scalars in ``runner.message_hub`` for the logger and the visualizer.

    By default, a scalar whose name matches ``mean_pattern`` (losses, times, grad norm) is
    averaged over the last ``window_size`` values; any other scalar (lr, momentum, metrics) shows
    its latest value. ``custom_cfg`` adds or replaces statistics. With CUDA available the line
    and the tag also carry ``memory``, the peak MB allocated since the previous line; on CPU
    there is no memory entry (as in MMEngine).

    Args:
        window_size: How many of the latest values the default means cover.
        by_epoch: Format headers as ``Epoch(train) [e][i/n]`` (True) or ``Iter(train) [i/n]``.
        custom_cfg: A list of dicts, each with ``data_src`` (scalar name without the
            ``train/`` prefix), ``method_name`` (``'mean'``, ``'max'``, ``'min'`` or
            ``'current'``), optional ``window_size`` (a positive int, ``'epoch'`` for the current
            epoch's iterations, ``'global'`` for the whole run; omitted = whole history) and
            optional ``log_name`` (log under a new name; without it ``data_src`` is replaced).
        num_digits: Digits after the point for floats (and for lr's ``e`` notation).
        log_with_hierarchy: Keep ``train/``, ``val/`` prefixes in the returned tag (the log
            line never has them).
        mean_pattern: Regular expression for the scalars that the default smoothing averages.

    Raises:
        ValueError, TypeError: An argument or a ``custom_cfg`` entry is invalid; the message
            names the entry (``log_processor.custom_cfg[1]``).

    Example:
        >>> log_processor = dict(window_size=20, custom_cfg=[
        ...     dict(data_src='loss', method_name='mean', window_size='global',
        ...          log_name='loss_global')])
    """

    def __init__(self, window_size: int = 10, by_epoch: bool = True,
                 custom_cfg: Sequence[Mapping] | None = None, num_digits: int = 4,
                 log_with_hierarchy: bool = False,
                 mean_pattern: str = r".*(loss|time|data_time|grad_norm).*"):
        if isinstance(window_size, bool) or not isinstance(window_size, int) or window_size <= 0:
            raise ValueError(f"log_processor.window_size must be a positive int, "
                             f"got {window_size!r}")
        if isinstance(num_digits, bool) or not isinstance(num_digits, int) or num_digits < 0:
            raise ValueError(f"log_processor.num_digits must be an int >= 0, got {num_digits!r}")
        try:
            self.mean_pattern = re.compile(mean_pattern)
        except (re.error, TypeError) as exc:
            raise ValueError(f"log_processor.mean_pattern {mean_pattern!r} is not a valid "
                             f"regular expression: {exc}") from None
        self.window_size = window_size
        self.by_epoch = bool(by_epoch)
        self.num_digits = num_digits
        self.log_with_hierarchy = bool(log_with_hierarchy)
        self._custom_stats = _parse_custom_cfg(custom_cfg, self.by_epoch)
        self.custom_cfg = [dict(c) for c in custom_cfg] if custom_cfg else []

    def get_log_after_iter(self, runner, batch_idx: int, mode: str) -> tuple[dict, str]:
        """Summarise the scalars after a train, val or test iteration.

        Args:
            runner: The runner (reads ``message_hub``, ``iter``, ``epoch``, dataloader lengths).
            batch_idx: Index of the batch just processed in the current loop.
            mode: ``'train'``, ``'val'`` or ``'test'``.

        Returns:
            ``(tag, log_str)``: the values for the visualizer (scalars, plus ``epoch`` when
            logging by epoch in train/val, ``iter``, and ``memory`` on CUDA) and the log line.
        """
        _check_mode(mode, _MODES)
        log_tag = self._collect_scalars(self._custom_stats, runner, mode, batch_idx)
        tag = self._hierarchical(log_tag, mode)
        digits = self.num_digits
        lr_parts = [f"{key}: {log_tag.pop(key):.{digits}e}"
                    for key in [k for k in log_tag if k.endswith("lr")]]
        log_str = self._iter_header(runner, batch_idx, mode, tag)
        tag["iter"] = runner.iter + 1 if has_train_loop(runner) else 0
        log_str += " ".join(lr_parts) + "  "
        eta = runner.message_hub.get_info("eta")
        if eta is not None and all(key in log_tag for key in _TIME_KEYS):
            log_str += (f"eta: {_format_eta(eta)}  "
                        f"time: {log_tag.pop('time'):.{digits}f}  "
                        f"data_time: {log_tag.pop('data_time'):.{digits}f}  ")
        memory = _max_memory_mb()
        if memory is not None:
            log_str += f"memory: {memory}  "
            tag["memory"] = memory
        # Val/test iteration lines carry progress and timing only; their scalars are summarised
        # once per epoch by get_log_after_epoch.
        if mode == "train":
            log_str += "  ".join(f"{name}: {self._format_value(value)}"
                                 for name, value in log_tag.items())
        return tag, log_str

    def get_log_after_epoch(self, runner, batch_idx: int, mode: str,
                            with_non_scalar: bool = False) -> tuple[dict, str]:
        """Summarise a val or test epoch: metrics, then the epoch's mean time and data_time.

        Args:
            runner: The runner.
            batch_idx: The size of the window the ``'epoch'`` statistics cover is
                ``batch_idx + 1``; pass the index of the last batch.
            mode: ``'val'`` or ``'test'``.
            with_non_scalar: Also return the non-scalar results (``runtime_info`` entries under
                ``val/``/``test/``, e.g. a confusion matrix) in the tag.

        Returns:
            ``(tag, log_str)``.
        """
        _check_mode(mode, ("val", "test"))
        n = self._dataloader_len(runner, mode)
        if not self.by_epoch:
            log_str = f"Iter({mode}) [{n}/{n}]  "
        elif mode == "val":
            log_str = f"Epoch({mode}) [{self._epoch(runner, mode)}][{n}/{n}]  "
        else:
            log_str = f"Epoch({mode}) [{n}/{n}]  "
        stats = list(self._custom_stats)
        customised = {_strip(stat.data_src, f"{mode}/") for stat in stats}
        stats += [_CustomStat(key, "mean", "epoch", key) for key in _TIME_KEYS
                  if key not in customised]
        scalars = self._hierarchical(
            self._collect_scalars(stats, runner, mode, batch_idx), mode)
        time_keys = {*_TIME_KEYS, *(f"{mode}/{key}" for key in _TIME_KEYS)}
        tag = {k: v for k, v in scalars.items() if k not in time_keys}
        times = {k: v for k, v in scalars.items() if k in time_keys}
        non_scalars = self._collect_non_scalars(runner, mode)
        items = [*tag.items(), *non_scalars.items(), *times.items()]
        log_str += "  " + "  ".join(f"{name}: {self._format_value(value)}"
                                    for name, value in items)
        if with_non_scalar:
            tag.update(non_scalars)
        tag.update(times)
        return tag, log_str

    def _collect_scalars(self, stats: Sequence[_CustomStat], runner, mode: str,
                         batch_idx: int) -> dict:
        """The ``mode/`` scalars (prefix removed), smoothed by default then by ``stats``."""
        prefix = f"{mode}/"
        buffers = {key[len(prefix):]: buffer
                   for key, buffer in runner.message_hub.log_scalars.items()
                   if key.startswith(prefix)}
        tag: dict[str, Any] = {}
        for key, buffer in buffers.items():
            if self.mean_pattern.search(key) is not None:
                tag[key] = buffer.mean(self.window_size)
            else:
                tag[key] = buffer.current()
        for stat in stats:
            buffer = buffers.get(stat.data_src)
            if buffer is not None:
                tag[stat.log_name] = stat.compute(buffer, runner, batch_idx)
        return tag

    def _collect_non_scalars(self, runner, mode: str) -> dict:
        prefix = f"{mode}/"
        return {(key if self.log_with_hierarchy else key[len(prefix):]): value
                for key, value in runner.message_hub.runtime_info.items()
                if key.startswith(prefix)}

    def _hierarchical(self, tag: dict, mode: str) -> dict:
        """A copy of ``tag`` for the visualizer, with ``mode/`` prefixes if so configured."""
        if not self.log_with_hierarchy:
            return dict(tag)
        return {f"{mode}/{key}": value for key, value in tag.items()}

    def _iter_header(self, runner, batch_idx: int, mode: str, tag: dict) -> str:
        """``Epoch(train) [1][ 10/28]  `` or ``Iter(train) [ 10/600]  ``; sets ``tag['epoch']``.

        Counters are right-aligned to the width of their maximum so consecutive lines line up.
        """
        if not self.by_epoch:
            if mode == "train":
                total, current = runner.max_iters, runner.iter + 1
            else:
                total, current = self._dataloader_len(runner, mode), batch_idx + 1
            return f"Iter({mode}) [{str(current).rjust(len(str(total)))}/{total}]  "
        total = self._dataloader_len(runner, mode)
        progress = f"[{str(batch_idx + 1).rjust(len(str(total)))}/{total}]  "
        if mode == "test":
            return f"Epoch({mode}) {progress}"
        epoch = self._epoch(runner, mode)
        tag["epoch"] = epoch
        if has_train_loop(runner):
            # Three characters for "[", "]" and the separating space.
            epoch_str = f"[{epoch}]".rjust(len(str(runner.max_epochs)) + 3)
        else:
            epoch_str = f"[{epoch}]"
        return f"Epoch({mode}){epoch_str}{progress}"

    @staticmethod
    def _epoch(runner, mode: str) -> int:
        if mode == "train":
            return runner.epoch + 1
        # Validation runs after the train loop has already counted the finished epoch.
        return runner.epoch if has_train_loop(runner) else 0

    @staticmethod
    def _dataloader_len(runner, mode: str) -> int:
        return len(getattr(runner, f"{mode}_dataloader"))

    def _format_value(self, value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.{self.num_digits}f}"
        if isinstance(value, (torch.Tensor, np.ndarray)):
            return f"\n{value}\n"  # arrays print over several lines
        return str(value)


def _check_mode(mode: str, allowed: Sequence[str]) -> None:
    if mode not in allowed:
        raise ValueError(f"mode must be one of {list(allowed)}, got {mode!r}")


def _strip(key: str, prefix: str) -> str:
    return key[len(prefix):] if key.startswith(prefix) else key
