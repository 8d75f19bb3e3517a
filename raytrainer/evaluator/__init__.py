"""Evaluation: the Evaluator, BaseMetric (with cross-rank result collection), metrics."""
from .evaluator import Evaluator
from .metric import BaseMetric, DumpResults
from .metrics import Accuracy, Perplexity

__all__ = ["Evaluator", "BaseMetric", "DumpResults", "Accuracy", "Perplexity"]
