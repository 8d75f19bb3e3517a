"""Top-k classification accuracy."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ...registry import METRICS
from ..metric import BaseMetric


def _as_tensor(value: Any) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else torch.as_tensor(value)


@METRICS.register_module()
class Accuracy(BaseMetric):
    """Top-k accuracy in percent, reported as ``accuracy/top1``, ``accuracy/top5`` ...

    ``process`` accepts either of the shapes models commonly return from ``predict``:
    ``(scores, labels)`` (a pair of batch tensors: scores ``(B, C)`` or predicted labels
    ``(B,)``, and ground truth ``(B,)``), or a list of per-sample dicts with ``pred_score``
    (or ``pred_label``) and ``gt_label``. Results are kept per sample so that padding added by
    a distributed sampler is dropped before the metric is computed.

    Args:
        topk: The k values to report.
    """

    default_prefix = "accuracy"

    def __init__(self, topk: int | Sequence[int] = (1,), collect_device: str = "cpu",
                 prefix: str | None = None, collect_dir: str | None = None):
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        self.topk = (topk,) if isinstance(topk, int) else tuple(topk)
        if not self.topk or any(k < 1 for k in self.topk):
            raise ValueError(f"Accuracy: topk must be positive integers, got {topk!r}")

    def computed_names(self) -> list[str]:
        return [f"top{k}" for k in self.topk]

    def _scores_and_labels(self, data_samples: Sequence) -> tuple[torch.Tensor, torch.Tensor]:
        if len(data_samples) == 2 and all(isinstance(x, torch.Tensor) for x in data_samples) \
                and data_samples[1].dim() == 1:
            return data_samples[0].detach(), data_samples[1].detach()
        if data_samples and all(isinstance(x, dict) for x in data_samples):
            key = "pred_score" if "pred_score" in data_samples[0] else "pred_label"
            if key not in data_samples[0] or "gt_label" not in data_samples[0]:
                raise KeyError("Accuracy: per-sample dicts need 'pred_score' or 'pred_label' and "
                               f"'gt_label', got keys {sorted(data_samples[0])}")
            preds = torch.stack([_as_tensor(s[key]).detach().reshape(-1) for s in data_samples])
            if key == "pred_label":
                preds = preds.reshape(-1)
            labels = torch.stack([_as_tensor(s["gt_label"]).reshape(-1)[0] for s in data_samples])
            return preds, labels
        raise TypeError("Accuracy expects (scores, labels) tensors or a list of dicts with "
                        "'pred_score'/'pred_label' and 'gt_label'")

    def process(self, data_batch: Any, data_samples: Sequence) -> None:
        preds, labels = self._scores_and_labels(data_samples)
        labels = labels.to(preds.device).long()
        if preds.dim() == 1:
            if max(self.topk) > 1:
                raise ValueError("Accuracy: top-k with k > 1 needs class scores, got labels")
            hits = (preds.long() == labels).unsqueeze(1)
        else:
            if max(self.topk) > preds.shape[1]:
                raise ValueError(f"Accuracy: topk={self.topk} asks for the top {max(self.topk)} "
                                 f"predictions, but the model scores {preds.shape[1]} classes; "
                                 "set the evaluator's topk to values <= "
                                 f"{preds.shape[1]} (val_evaluator.topk / test_evaluator.topk)")
            k_max = max(self.topk)
            top = preds.topk(k_max, dim=1).indices
            correct = top == labels.unsqueeze(1)
            hits = torch.stack([correct[:, :min(k, k_max)].any(dim=1) for k in self.topk], dim=1)
        self.results.extend(hits.cpu().tolist())

    def compute_metrics(self, results: list) -> dict[str, float]:
        if not results:
            return {f"top{k}": 0.0 for k in self.topk}
        hits = torch.tensor(results, dtype=torch.float64)
        means = hits.mean(dim=0) * 100.0
        return {f"top{k}": float(means[i]) for i, k in enumerate(self.topk)}
