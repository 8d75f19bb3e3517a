"""BaseMetric: accumulate per-batch results, gather them across ranks, compute on rank 0."""
from __future__ import annotations

import io
import logging
from abc import ABCMeta, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch

from .. import storage
from ..config import warn_ignored
from ..dist import broadcast_object_list, collect_results, is_main_process
from ..logging import print_log
from ..registry import METRICS


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    if isinstance(value, tuple):
        return type(value)(_to_cpu(v) for v in value)
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    return value


class BaseMetric(metaclass=ABCMeta):
    """Base class of metrics.

    ``process`` appends to ``self.results`` for each batch; ``evaluate(size)`` gathers the
    results of every rank in dataset order, drops sampler padding beyond ``size`` (when results
    are per sample), runs ``compute_metrics`` on rank 0 and broadcasts the metrics dict.

    Args:
        collect_device: ``'cpu'`` or ``'gpu'``: where results are gathered.
        prefix: Prefix of the metric names (``'accuracy'`` → ``'accuracy/top1'``); defaults to
            the class attribute ``default_prefix``.
        collect_dir: Accepted for MMEngine compatibility (it warns once): results are gathered
            with collectives, so no shared directory is used.
    """

    default_prefix: str | None = None

    def __init__(self, collect_device: str = "cpu", prefix: str | None = None,
                 collect_dir: str | None = None):
        if collect_device not in ("cpu", "gpu"):
            raise ValueError(f"collect_device must be 'cpu' or 'gpu', got {collect_device!r}")
        if collect_dir is not None and collect_device != "cpu":
            raise ValueError("collect_dir can only be set with collect_device='cpu'")
        if collect_dir is not None:
            warn_ignored("BaseMetric.collect_dir", collect_dir)
        self._dataset_meta: dict | None = None
        self.collect_device = collect_device
        self.collect_dir = collect_dir
        self.results: list[Any] = []
        self.prefix = prefix or self.default_prefix
        if self.prefix is None:
            print_log(f"{type(self).__name__} has no prefix; its metric names are unprefixed",
                      logger="current", level=logging.DEBUG)

    @property
    def dataset_meta(self) -> dict | None:
        return self._dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, meta: dict | None) -> None:
        self._dataset_meta = meta

    @abstractmethod
    def process(self, data_batch: Any, data_samples: Sequence) -> None:
        """Turn one batch of predictions into entries of ``self.results``."""

    @abstractmethod
    def compute_metrics(self, results: list) -> dict[str, Any]:
        """Compute the metrics from the results of the whole dataset."""

    def metric_names(self) -> list[str] | None:
        """The names :meth:`evaluate` will return (prefixed), if known before any data is
        seen; None when they are not (a sweep then checks its metric only once reported).
        Subclasses that know them list their :meth:`compute_metrics` keys in
        :meth:`computed_names`."""
        names = self.computed_names()
        if names is None:
            return None
        return [f"{self.prefix}/{name}" if self.prefix else name for name in names]

    def computed_names(self) -> list[str] | None:
        """The keys :meth:`compute_metrics` returns, if known in advance (None: unknown)."""
        return None

    def evaluate(self, size: int) -> dict[str, Any]:
        """Gather every rank's results and return the metrics (the same dict on every rank).

        Args:
            size: Number of samples in the whole dataset.
        """
        if not self.results:
            print_log(f"{type(self).__name__}.evaluate: no results were processed; check that "
                      "process() appends to self.results", logger="current",
                      level=logging.WARNING)
        results = collect_results(self.results, size, self.collect_device)
        if is_main_process():
            metrics = self.compute_metrics(_to_cpu(results))
            if self.prefix:
                metrics = {f"{self.prefix}/{name}": value for name, value in metrics.items()}
            box = [metrics]
        else:
            box = [None]
        broadcast_object_list(box)
        self.results.clear()
        return box[0]


@METRICS.register_module()
class DumpResults(BaseMetric):
    """Save every prediction to a file (``torch.save`` format) instead of computing metrics.

    Args:
        out_file_path: Where to write; a path or storage URL ending in ``.pt`` or ``.pth``.
    """

    def __init__(self, out_file_path: str, collect_device: str = "cpu",
                 collect_dir: str | None = None):
        super().__init__(collect_device=collect_device, collect_dir=collect_dir)
        if not str(out_file_path).endswith((".pt", ".pth")):
            raise ValueError(f"DumpResults: out_file_path must end with .pt or .pth, got "
                             f"{out_file_path!r}")
        self.out_file_path = str(out_file_path)

    def process(self, data_batch: Any, data_samples: Sequence) -> None:
        self.results.extend(_to_cpu(list(data_samples)))

    def compute_metrics(self, results: list) -> dict:
        buffer = io.BytesIO()
        torch.save(results, buffer)
        storage.write_bytes(self.out_file_path, buffer.getvalue())
        print_log(f"predictions dumped to {self.out_file_path}", logger="current")
        return {}
