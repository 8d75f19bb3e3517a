"""Evaluator: feeds model outputs to one or several metrics and merges their results."""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ..dataset.collate import pseudo_collate
from ..registry import EVALUATOR, METRICS, build_from_cfg
from .metric import BaseMetric


def _chunks(items: Iterator, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@EVALUATOR.register_module()
class Evaluator:
    """Compose metrics.

    Args:
        metrics: A metric, a metric config, or a list of either.
    """

    def __init__(self, metrics: BaseMetric | dict | Sequence):
        if isinstance(metrics, (dict, BaseMetric)) or not isinstance(metrics, Sequence):
            metrics = [metrics]
        self.metrics: list[BaseMetric] = [build_from_cfg(m, METRICS, key="metrics")
                                          for m in metrics]
        self._dataset_meta: dict | None = None

    @property
    def dataset_meta(self) -> dict | None:
        return self._dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, meta: dict | None) -> None:
        self._dataset_meta = meta
        for metric in self.metrics:
            metric.dataset_meta = meta

    def process(self, data_samples: Sequence, data_batch: Any = None) -> None:
        """Give one batch of model outputs (and the batch itself) to every metric."""
        samples = [s.to_dict() if hasattr(s, "to_dict") else s for s in data_samples]
        for metric in self.metrics:
            metric.process(data_batch, samples)

    def metric_names(self) -> list[str] | None:
        """Every name :meth:`evaluate` will return, if each metric knows its names in advance
        (:meth:`BaseMetric.metric_names`); else None."""
        names: list[str] = []
        for metric in self.metrics:
            known = metric.metric_names() if hasattr(metric, "metric_names") else None
            if known is None:
                return None
            names += known
        return names

    def evaluate(self, size: int) -> dict[str, Any]:
        """Merge every metric's results; two metrics producing the same name is an error."""
        merged: dict[str, Any] = {}
        for metric in self.metrics:
            for name, value in metric.evaluate(size).items():
                if name in merged:
                    raise ValueError(f"two metrics both produce {name!r}; give them different "
                                     "prefixes")
                merged[name] = value
        return merged

    def offline_evaluate(self, data_samples: Sequence, data: Sequence | None = None,
                         chunk_size: int = 1) -> dict[str, Any]:
        """Evaluate saved predictions (and optionally the matching inputs) without a model.

        Args:
            data_samples: All predictions, one entry per sample.
            data: The matching dataset samples, same length.
            chunk_size: How many samples are processed per ``process`` call.
        """
        if data is not None and len(data) != len(data_samples):
            raise ValueError(f"offline_evaluate: data_samples has {len(data_samples)} entries but "
                             f"data has {len(data)}")
        data_chunks = _chunks(iter(data), chunk_size) if data is not None else None
        size = 0
        for outputs in _chunks(iter(data_samples), chunk_size):
            batch = pseudo_collate(next(data_chunks)) if data_chunks is not None else None
            size += len(outputs)
            self.process(outputs, batch)
        return self.evaluate(size)


def build_evaluator(evaluator: Any, key: str = "evaluator") -> Evaluator:
    """An Evaluator from an Evaluator, a metric (config), a list of them, or an evaluator
    config with ``metrics`` (``dict(type='Evaluator', metrics=[...])``)."""
    if isinstance(evaluator, Evaluator):
        return evaluator
    if isinstance(evaluator, Mapping) and "metrics" in evaluator:
        cfg = dict(evaluator)
        cfg.setdefault("type", "Evaluator")
        return build_from_cfg(cfg, EVALUATOR, key=key)
    return Evaluator(evaluator)
