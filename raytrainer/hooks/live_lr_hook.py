"""Sets the learning rate of a resumed optimizer to the config's (a PBT explore step).

Resuming restores the optimizer's learning rate from the checkpoint. A sweep trial that
continues another trial's checkpoint with a perturbed ``optim_wrapper.optimizer.lr`` adds this
hook, which rescales the live rate (every parameter group, their ``initial_lr`` and the
parameter schedulers' base values) by ``lr`` / the checkpoint's base rate, so schedules and
per-group multipliers keep their shape.
"""
from __future__ import annotations

from ..registry import HOOKS
from .hook import Hook


@HOOKS.register_module()
class LiveLrHook(Hook):
    """Rescales the resumed optimizer's learning rate to ``lr`` before training continues.

    Args:
        lr: The base learning rate the resumed run continues with.
    """

    priority = "VERY_HIGH"

    def __init__(self, lr: float):
        self.lr = float(lr)

    def before_train(self, runner) -> None:
        groups = runner.optim_wrapper.optimizer.param_groups
        base = groups[0].get("initial_lr", groups[0]["lr"])
        factor = self.lr / base
        for group in groups:
            group["lr"] *= factor
            if "initial_lr" in group:
                group["initial_lr"] *= factor
        schedulers = runner.param_schedulers or []
        if isinstance(schedulers, dict):
            schedulers = [s for group in schedulers.values() for s in group]
        for scheduler in schedulers:
            if getattr(scheduler, "param_name", "lr") == "lr" and hasattr(scheduler, "base_values"):
                scheduler.base_values = [value * factor for value in scheduler.base_values]
        runner.logger.info(f"learning rate set to base {self.lr:g} (x{factor:.4g} of the "
                           "resumed checkpoint's)")
