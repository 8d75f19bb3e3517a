"""Steps the parameter schedulers: per iteration, per epoch, or with validation metrics."""
from __future__ import annotations

from ..registry import HOOKS
from .hook import Hook


def _all_schedulers(runner) -> list:
    schedulers = runner.param_schedulers
    if schedulers is None:
        return []
    if isinstance(schedulers, dict):
        return [s for group in schedulers.values() for s in group]
    if isinstance(schedulers, list):
        return schedulers
    raise TypeError("runner.param_schedulers must be a list of schedulers or a dict of lists, "
                    f"got {type(schedulers).__name__}")


@HOOKS.register_module()
class ParamSchedulerHook(Hook):
    """Steps iteration-based schedulers after every iteration and epoch-based ones after every
    epoch; schedulers that need metrics (``need_val_args``) also step with the validation
    metrics after each validation."""

    priority = "LOW"

    def before_train(self, runner) -> None:
        schedulers = _all_schedulers(runner)
        self._by_iter = [s for s in schedulers if not s.by_epoch]
        # Metric-driven schedulers also step (without metrics) each epoch: that advances
        # their begin/end window, as in MMEngine.
        self._by_epoch = [s for s in schedulers if s.by_epoch]
        self._by_metric = [s for s in schedulers if s.by_epoch
                           and getattr(s, "need_val_args", False)]

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        for scheduler in self._by_iter:
            scheduler.step()

    def after_train_epoch(self, runner) -> None:
        for scheduler in self._by_epoch:
            scheduler.step()

    def after_val_epoch(self, runner, metrics=None) -> None:
        if metrics is None or not hasattr(self, "_by_metric"):
            return
        for scheduler in self._by_metric:
            scheduler.step(metrics)
