"""Perplexity of a language model: exp of the mean negative log-likelihood per token."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from ...registry import METRICS
from ..metric import BaseMetric


@METRICS.register_module()
class Perplexity(BaseMetric):
    """``perplexity = exp(nll)`` where ``nll = total NLL / total tokens`` (nats per token).

    ``process`` accepts what a language model's ``predict`` returns: ``(nll, num_tokens)``
    (two batch tensors of shape ``(B,)``: each sequence's summed negative log-likelihood in
    nats and its number of predicted tokens, as ``CharTransformer`` returns), or a list of
    per-sample dicts with ``nll`` and ``num_tokens``. Results are kept per sequence, so
    padding added by a distributed sampler is dropped before the totals are taken and a
    distributed evaluation gives the single-process value.

    The metric names are unprefixed (``perplexity``, ``nll``; logged as ``val/perplexity``,
    ``val/nll``) unless ``prefix`` is given. The mean NLL is deliberately not called ``loss``:
    the log processor smooths every scalar whose name matches its ``mean_pattern`` (which
    matches ``loss``) over the last validations, so a metric of that name would be logged as
    an average over epochs instead of its value.
    """

    def computed_names(self) -> list[str]:
        return ["perplexity", "nll"]

    def _nll_and_tokens(self, data_samples: Sequence) -> tuple[torch.Tensor, torch.Tensor]:
        if len(data_samples) == 2 and all(isinstance(x, torch.Tensor) and x.dim() == 1
                                          for x in data_samples):
            return data_samples[0].detach(), data_samples[1].detach()
        if data_samples and all(isinstance(x, dict) for x in data_samples):
            if not {"nll", "num_tokens"} <= set(data_samples[0]):
                raise KeyError("Perplexity: per-sample dicts need 'nll' and 'num_tokens', got "
                               f"keys {sorted(data_samples[0])}")
            return (torch.stack([torch.as_tensor(s["nll"]).reshape(()) for s in data_samples]),
                    torch.stack([torch.as_tensor(s["num_tokens"]).reshape(())
                                 for s in data_samples]))
        raise TypeError("Perplexity expects (nll, num_tokens) tensors of shape (B,) or a list "
                        "of dicts with 'nll' and 'num_tokens'")

    def process(self, data_batch: Any, data_samples: Sequence) -> None:
        nll, num_tokens = self._nll_and_tokens(data_samples)
        if nll.shape != num_tokens.shape:
            raise ValueError(f"Perplexity: nll has shape {tuple(nll.shape)} but num_tokens "
                             f"has shape {tuple(num_tokens.shape)}")
        self.results.extend(zip(nll.double().cpu().tolist(), num_tokens.cpu().tolist()))

    def compute_metrics(self, results: list) -> dict[str, float]:
        total_tokens = sum(tokens for _, tokens in results)
        if total_tokens <= 0:
            return {"perplexity": float("nan"), "nll": float("nan")}
        mean_nll = math.fsum(nll for nll, _ in results) / total_tokens
        return {"perplexity": math.exp(mean_nll), "nll": mean_nll}
