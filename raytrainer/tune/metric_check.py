"""A sweep's metric, checked before Ray starts against what its trials can report.

Rank 0 reports every logged scalar under ``train/`` and each validation's metrics under
``val/`` (``test/`` for tests), plus ``epoch`` and ``iter``. A metric outside those can never
arrive, and a ``val/`` metric the config's ``val_evaluator`` does not produce cannot either,
when its metrics name what they produce in advance (``BaseMetric.computed_names``, as the
built-in ``Accuracy`` and ``Perplexity`` do). Either fails here, in seconds, with a
did-you-mean; a metric that cannot be judged yet is left to the trials' own check at their
first validation (:func:`raytrainer.tune.trial.check_metric_reported`).
"""
from __future__ import annotations

import difflib

from ..config import Config, ConfigError
from ..evaluator.evaluator import build_evaluator

REPORTED_PREFIXES = ("train/", "val/", "test/")
_POSITION_KEYS = ("epoch", "iter")


def validation_metrics(cfg: Config) -> list[str] | None:
    """The ``val/`` keys the config's ``val_evaluator`` will report, if known in advance
    (``[]`` without validation; None when a metric cannot say or cannot be built here)."""
    spec = cfg.get("val_evaluator")
    if spec is None:
        return []
    try:
        names = build_evaluator(spec, "val_evaluator").metric_names()
    except Exception:  # noqa: BLE001 - the run reports the evaluator's own error, keyed
        return None
    return None if names is None else [f"val/{name}" for name in names]


def _hint(metric: str, candidates: list[str]) -> str:
    close = [f"val/{metric}"] if f"val/{metric}" in candidates else \
        difflib.get_close_matches(metric, candidates, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_metric(cfg: Config, metric: str) -> None:
    """Fail when no trial of a sweep over ``cfg`` can ever report ``metric``.

    Raises:
        ConfigError: Naming the metric, what the trials report, and the closest match.
    """
    if metric in _POSITION_KEYS:
        return
    known = validation_metrics(cfg)
    candidates = known or []
    if not metric.startswith(REPORTED_PREFIXES):
        shown = f" (validation: {', '.join(candidates)})" if candidates else ""
        raise ConfigError(
            f"tune.metric {metric!r} is never reported: the trials report train/<scalar>, "
            f"val/<metric> and test/<metric>{shown}{_hint(metric, candidates)}")
    if metric.startswith("val/") and known is not None and metric not in known:
        produced = ", ".join(known) if known else "nothing (the config has no val_evaluator)"
        raise ConfigError(
            f"tune.metric {metric!r} is not a metric the config's val_evaluator produces; it "
            f"produces {produced}{_hint(metric, candidates)}")


__all__ = ["REPORTED_PREFIXES", "check_metric", "validation_metrics"]
