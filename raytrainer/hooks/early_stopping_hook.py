"""EarlyStoppingHook: end training when a validation metric stops improving.

The hook owns the stopping decision and its bookkeeping (best score, validations without
improvement), which it stores in checkpoints so that a resumed run stops where an uninterrupted
one would. It only sets ``runner.train_loop.stop_training``; the loop decides how to stop.
"""
from __future__ import annotations

import math
import warnings

from ..registry import HOOKS
from .hook import Hook

_RULES = {"greater": lambda a, b: a > b, "less": lambda a, b: a < b}
_GREATER_KEYS = ("acc", "top", "AR@", "auc", "precision", "mAP", "mDice", "mIoU", "mAcc", "aAcc")
_LESS_KEYS = ("loss",)
CHECKPOINT_KEY = "early_stopping"


def infer_rule(monitor: str) -> str:
    """``'greater'`` or ``'less'`` from a metric name: exact key names first, then substrings.

    Raises:
        ValueError: The name matches neither list.
    """
    name = monitor.lower()
    greater = [k.lower() for k in _GREATER_KEYS]
    less = [k.lower() for k in _LESS_KEYS]
    if name in greater:
        return "greater"
    if name in less:
        return "less"
    if any(k in name for k in greater):
        return "greater"
    if any(k in name for k in less):
        return "less"
    raise ValueError(f"EarlyStoppingHook: cannot tell whether {monitor!r} should increase or "
                     "decrease; set rule='greater' or rule='less'")


@HOOKS.register_module()
class EarlyStoppingHook(Hook):
    """Stop training when ``monitor`` has not improved for ``patience`` validations.

    Args:
        monitor: Metric name in the validation results (``'accuracy/top1'``).
        rule: ``'greater'`` or ``'less'`` is better; inferred from ``monitor`` when None
            (``acc``/``top``/``mAP``... are greater, ``loss`` is less).
        min_delta: The smallest change that counts as an improvement.
        strict: Raise when ``monitor`` is missing from the metrics (else warn and skip).
        check_finite: Stop when the metric becomes NaN or infinite.
        patience: Validations without improvement after which training stops.
        stopping_threshold: Stop as soon as the metric is better than this value.
    """

    priority = "LOWEST"

    def __init__(self, monitor: str, rule: str | None = None, min_delta: float = 0.1,
                 strict: bool = False, check_finite: bool = True, patience: int = 5,
                 stopping_threshold: float | None = None) -> None:
        if rule is not None and rule not in _RULES:
            raise ValueError(f"EarlyStoppingHook: rule must be 'greater' or 'less', got {rule!r}")
        if patience < 1:
            raise ValueError(f"EarlyStoppingHook: patience must be >= 1, got {patience}")
        self.monitor = monitor
        self.rule = rule or infer_rule(monitor)
        # Signed so that "best + min_delta" is always the score that must be beaten.
        self.min_delta = abs(min_delta) if self.rule == "greater" else -abs(min_delta)
        self.strict = strict
        self.check_finite = check_finite
        self.patience = patience
        self.stopping_threshold = stopping_threshold
        self.wait_count = 0
        self.best_score = -math.inf if self.rule == "greater" else math.inf

    def _check_stop_condition(self, score: float) -> tuple[bool, str]:
        """Update the bookkeeping with ``score``; returns ``(stop, reason)``."""
        better = _RULES[self.rule]
        if self.check_finite and not math.isfinite(score):
            return True, (f"{self.monitor} = {score} is not finite (best so far: "
                          f"{self.best_score:.4f})")
        if self.stopping_threshold is not None and better(score, self.stopping_threshold):
            self.best_score = score
            return True, (f"{self.monitor} = {score:.4f} reached the stopping threshold "
                          f"({self.rule} than {self.stopping_threshold})")
        if not better(self.best_score + self.min_delta, score):
            # Reaching best + min_delta exactly counts as an improvement (as in MMEngine).
            self.best_score = score
            self.wait_count = 0
            return False, ""
        self.wait_count += 1
        if self.wait_count >= self.patience:
            return True, (f"{self.monitor} did not improve by {abs(self.min_delta)} in the last "
                          f"{self.wait_count} validations (best: {self.best_score:.4f})")
        return False, ""

    def after_val_epoch(self, runner, metrics: dict[str, float] | None = None) -> None:
        loop = runner.train_loop_or_none
        if loop is None:
            return  # a standalone runner.val(): there is no training to stop
        metrics = metrics or {}
        if self.monitor not in metrics:
            message = (f"EarlyStoppingHook: metric {self.monitor!r} is not among the validation "
                       f"metrics {sorted(metrics)}")
            if self.strict:
                raise RuntimeError(message + "; fix 'monitor' or set strict=False")
            warnings.warn(message + "; skipping the early-stopping check", stacklevel=2)
            return
        stop, reason = self._check_stop_condition(float(metrics[self.monitor]))
        if stop:
            loop.stop_training = True
            runner.logger.info(f"early stopping after epoch {runner.epoch}, iteration "
                               f"{runner.iter}: {reason}")

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        states = checkpoint.setdefault(CHECKPOINT_KEY, {})
        states[self.monitor] = {"best_score": float(self.best_score),
                                "wait_count": int(self.wait_count)}

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get(CHECKPOINT_KEY, {}).get(self.monitor)
        if state is not None:
            self.best_score = float(state["best_score"])
            self.wait_count = int(state["wait_count"])


__all__ = ["EarlyStoppingHook", "infer_rule"]
