"""Publishes loop counters, learning rates, losses and metrics to the message hub."""
from __future__ import annotations

import torch

from ..registry import HOOKS
from .hook import Hook


def _is_scalar(value) -> bool:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return True
    return isinstance(value, torch.Tensor) and value.numel() == 1


@HOOKS.register_module()
class RuntimeInfoHook(Hook):
    """Keeps ``runner.message_hub`` current: epoch/iter info, ``train/lr``, ``train/<loss>``,
    ``val/<metric>`` and ``test/<metric>``, so that loggers and user hooks read one place."""

    priority = "VERY_HIGH"

    def before_run(self, runner) -> None:
        cfg = getattr(runner, "cfg", None)
        runner.message_hub.update_info_dict(dict(
            cfg=cfg.pretty_text if cfg else "", seed=runner.seed,
            experiment_name=runner.experiment_name))
        self._stage_before_val = None

    def before_train(self, runner) -> None:
        hub = runner.message_hub
        hub.update_info("loop_stage", "train")
        hub.update_info("epoch", runner.epoch)
        hub.update_info("iter", runner.iter)
        hub.update_info("max_epochs", runner.max_epochs)
        hub.update_info("max_iters", runner.max_iters)
        dataset = runner.train_dataloader.dataset
        if hasattr(dataset, "metainfo"):
            hub.update_info("dataset_meta", dataset.metainfo)

    def after_train(self, runner) -> None:
        runner.message_hub.pop_info("loop_stage")

    def before_train_epoch(self, runner) -> None:
        runner.message_hub.update_info("epoch", runner.epoch)

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        hub = runner.message_hub
        hub.update_info("iter", runner.iter)
        lrs = runner.optim_wrapper.get_lr()
        if not isinstance(lrs, dict):
            raise TypeError("optim_wrapper.get_lr() must return a dict of lr lists, got "
                            f"{type(lrs).__name__}")
        for name, values in lrs.items():
            hub.update_scalar(f"train/{name}", values[0])

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if outputs:
            hub = runner.message_hub
            for key, value in outputs.items():
                hub.update_scalar(f"train/{key}", value)

    def before_val(self, runner) -> None:
        self._stage_before_val = runner.message_hub.get_info("loop_stage")
        runner.message_hub.update_info("loop_stage", "val")

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._publish(runner, "val", metrics)

    def after_val(self, runner) -> None:
        if getattr(self, "_stage_before_val", None) == "train":
            runner.message_hub.update_info("loop_stage", "train")
        else:
            runner.message_hub.pop_info("loop_stage")
        self._stage_before_val = None

    def before_test(self, runner) -> None:
        runner.message_hub.update_info("loop_stage", "test")

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._publish(runner, "test", metrics)

    def after_test(self, runner) -> None:
        runner.message_hub.pop_info("loop_stage")

    @staticmethod
    def _publish(runner, mode: str, metrics) -> None:
        for key, value in (metrics or {}).items():
            if _is_scalar(value):
                runner.message_hub.update_scalar(f"{mode}/{key}", value)
            else:
                runner.message_hub.update_info(f"{mode}/{key}", value)
