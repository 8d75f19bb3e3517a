"""EMAHook: keeps an averaged copy of the model, evaluates with it, and checkpoints it.

The hook owns when the average is updated, swapping averaged weights into the model for
validation/test, and the ``ema_state_dict`` entry of checkpoints. The averaging rules live in
``raytrainer.model.averaged_model``.

Checkpoint layout (MMEngine's, so checkpoints move between the two): ``state_dict`` holds the
AVERAGED weights, ready to deploy, and ``ema_state_dict`` holds ``steps`` plus the raw training
weights under ``module.<name>``. Resuming swaps them back, so training continues exactly.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from ..model.averaged_model import BaseAveragedModel
from ..model.wrappers import unwrap_model
from ..registry import HOOKS, MODELS
from .hook import DATA_BATCH, Hook

_PREFIX = "module."


@HOOKS.register_module()
class EMAHook(Hook):
    """Maintain an exponential moving average (or another average) of the model's weights.

    Validation and test run on the averaged weights; checkpoints store them as ``state_dict``.

    Args:
        ema_type: Averaged model type registered in ``MODELS`` (``'ExponentialMovingAverage'``,
            ``'MomentumAnnealingEMA'``, ``'StochasticWeightAverage'`` or your own).
        strict_load: Require the checkpoint's keys to match the averaged model's exactly.
        begin_iter: Start averaging at this iteration (the average mirrors the model before).
        begin_epoch: Start averaging at this epoch; not together with ``begin_iter``.
        **kwargs: Arguments of the averaged model (``momentum``, ``interval``, ``gamma``,
            ``update_buffers`` ...).
    """

    priority = "NORMAL"

    def __init__(self, ema_type: str = "ExponentialMovingAverage", strict_load: bool = False,
                 begin_iter: int = 0, begin_epoch: int = 0, **kwargs) -> None:
        if begin_iter < 0 or begin_epoch < 0:
            raise ValueError(f"EMAHook: begin_iter and begin_epoch must be >= 0, got "
                             f"begin_iter={begin_iter}, begin_epoch={begin_epoch}")
        if begin_iter and begin_epoch:
            raise ValueError("EMAHook: set begin_iter or begin_epoch, not both")
        self.ema_cfg = dict(type=ema_type, **kwargs)
        self.strict_load = strict_load
        self.begin_iter = begin_iter
        self.begin_epoch = begin_epoch
        self.enabled_by_epoch = begin_epoch > 0
        self.src_model: nn.Module | None = None
        self.ema_model: BaseAveragedModel | None = None
        self._swapped = False

    # ---- building and updating --------------------------------------------------------
    def before_run(self, runner) -> None:
        model = unwrap_model(runner.model)
        if self.ema_model is not None and self.src_model is model:
            return  # train() then test() on one runner: keep the average trained so far
        self.src_model = model
        self.ema_model = MODELS.build(self.ema_cfg, model=model)

    def before_train(self, runner) -> None:
        if self.enabled_by_epoch and self.begin_epoch > runner.max_epochs:
            raise ValueError(f"EMAHook: begin_epoch={self.begin_epoch} is after the last epoch "
                             f"({runner.max_epochs})")
        if not self.enabled_by_epoch and self.begin_iter > runner.max_iters:
            raise ValueError(f"EMAHook: begin_iter={self.begin_iter} is after the last "
                             f"iteration ({runner.max_iters})")

    def after_train_iter(self, runner, batch_idx: int, data_batch: DATA_BATCH = None,
                         outputs: dict | None = None) -> None:
        if self._ema_started(runner):
            self.ema_model.update_parameters(self.src_model)
        else:
            self._copy_source_into_average()

    def _ema_started(self, runner) -> bool:
        if self.enabled_by_epoch:
            return runner.epoch + 1 >= self.begin_epoch
        return runner.iter + 1 >= self.begin_iter

    @torch.no_grad()
    def _copy_source_into_average(self) -> None:
        source = self.src_model.state_dict()
        for name, tensor in self.ema_model.module.state_dict().items():
            tensor.copy_(source[name])

    # ---- evaluating with the average --------------------------------------------------
    def before_val_epoch(self, runner) -> None:
        self._swap_in()

    def after_val_epoch(self, runner, metrics: dict[str, float] | None = None) -> None:
        self._swap_out()

    def before_test_epoch(self, runner) -> None:
        self._swap_in()

    def after_test_epoch(self, runner, metrics: dict[str, float] | None = None) -> None:
        self._swap_out()

    def _swap_in(self) -> None:
        if self._swapped:
            return
        if int(self.ema_model.steps) == 0:
            # Never updated: the average of no steps is the model itself. This also covers a
            # val/test run whose weights came from ``load_from`` after the copy was taken.
            self._copy_source_into_average()
        self._swap_parameters()
        self._swapped = True

    def _swap_out(self) -> None:
        if self._swapped:
            self._swap_parameters()
            self._swapped = False

    @torch.no_grad()
    def _swap_parameters(self) -> None:
        averaged, source = self.ema_model.module, self.src_model
        pairs = list(zip(averaged.parameters(), source.parameters()))
        if self.ema_model.update_buffers:
            pairs += list(zip(averaged.buffers(), source.buffers()))
        for avg, src in pairs:
            saved = avg.detach().clone()
            avg.copy_(src)
            src.copy_(saved)

    # ---- checkpoints ------------------------------------------------------------------
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint["ema_state_dict"] = {name: tensor.detach().cpu() for name, tensor in
                                        self.ema_model.state_dict().items()}
        if not self._swapped:
            # Swap the dict entries (not the model's tensors) so ``state_dict`` is the average.
            # While swapped in for evaluation the model already holds the average.
            _swap_state_dicts(checkpoint)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Restore the average and the raw weights from a checkpoint this hook saved.

        raytrainer calls this hook from ``Runner.resume`` after the model has loaded
        ``state_dict`` (the averaged weights), so the raw weights are loaded back here.
        """
        if self.ema_model is None:
            return
        if "ema_state_dict" not in checkpoint:
            runner.logger.warning("EMAHook: the checkpoint has no 'ema_state_dict'; the average "
                                  "starts from a copy of its 'state_dict'")
            self.ema_model.module.load_state_dict(copy.deepcopy(checkpoint["state_dict"]),
                                                  strict=self.strict_load)
            return
        _swap_state_dicts(checkpoint)
        self.ema_model.load_state_dict(checkpoint["ema_state_dict"], strict=self.strict_load)
        self.src_model.load_state_dict(checkpoint["state_dict"], strict=False)
        self._swapped = False


def _swap_state_dicts(checkpoint: dict) -> None:
    """Exchange ``state_dict[name]`` and ``ema_state_dict['module.' + name]`` entries."""
    model_state, ema_state = checkpoint["state_dict"], checkpoint["ema_state_dict"]
    for key in list(ema_state):
        name = key[len(_PREFIX):]
        if key.startswith(_PREFIX) and name in model_state:
            ema_state[key], model_state[name] = model_state[name], ema_state[key]


__all__ = ["EMAHook"]
