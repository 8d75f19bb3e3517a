"""CheckInvalidLossHook: a NaN/inf loss stops training with the iteration and loss terms."""
from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest
import torch

from raytrainer.hooks.check_invalid_loss_hook import CheckInvalidLossHook
from raytrainer.model import MLPClassifier
from raytrainer.registry import HOOKS
from raytrainer.runner import Runner


def check(hook, losses, interval_runner_iters):
    """Call the hook for each (iteration, outputs) pair."""
    for it, outputs in zip(interval_runner_iters, losses):
        hook.after_train_iter(SimpleNamespace(iter=it, epoch=0), it, outputs=outputs)


def test_finite_losses_pass():
    hook = CheckInvalidLossHook(interval=1)
    check(hook, [dict(loss=torch.tensor(0.5)), dict(loss=1.0)], [0, 1])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_loss_names_the_iteration_and_terms(bad):
    hook = HOOKS.build(dict(type="CheckInvalidLossHook", interval=1))
    outputs = dict(loss=torch.tensor(bad), loss_cls=torch.tensor(bad), acc=torch.tensor(0.25))
    with pytest.raises(FloatingPointError, match=r"iteration 4 \(epoch 1\)") as info:
        check(hook, [outputs], [3])
    assert f"loss={bad}" in str(info.value) and f"loss_cls={bad}" in str(info.value)
    assert "acc=0.25" in str(info.value)


def test_only_every_interval_th_iteration_is_checked():
    hook = CheckInvalidLossHook(interval=2)
    nan = dict(loss=torch.tensor(float("nan")))
    check(hook, [nan], [0])  # iteration 1: not checked
    with pytest.raises(FloatingPointError, match="iteration 2"):
        check(hook, [nan], [1])


def test_outputs_without_loss_and_bad_interval_are_errors():
    with pytest.raises(KeyError, match="must return a dict with 'loss'"):
        check(CheckInvalidLossHook(interval=1), [dict(total=torch.tensor(1.0))], [0])
    with pytest.raises(ValueError, match="interval must be a positive integer"):
        CheckInvalidLossHook(interval=0)


class NaNOnThirdStep(MLPClassifier):
    """An MLP whose auxiliary loss term is NaN on its third training step."""

    def __init__(self):
        super().__init__(in_features=64, hidden_dims=(8,), num_classes=10)
        self.loss_calls = 0

    def forward(self, inputs, data_samples=None, mode="tensor"):
        out = super().forward(inputs, data_samples, mode)
        if mode == "loss":
            self.loss_calls += 1
            out["loss_aux"] = torch.tensor(float("nan") if self.loss_calls == 3 else 0.5)
        return out


def test_a_real_run_stops_at_the_first_nan_iteration(tmp_path):
    loader = dict(batch_size=128, dataset=dict(type="DigitsDataset", split="train"),
                  sampler=dict(type="DefaultSampler", shuffle=True),
                  collate_fn=dict(type="default_collate"))
    model = NaNOnThirdStep()
    runner = Runner(
        model=model, work_dir=str(tmp_path), train_dataloader=loader,
        train_cfg=dict(by_epoch=True, max_epochs=1),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.1)),
        custom_hooks=[dict(type="CheckInvalidLossHook", interval=1)],
        default_hooks=dict(checkpoint=None), randomness=dict(seed=0),
        experiment_name=f"nan_{uuid.uuid4().hex[:8]}")
    # outputs['loss'] holds the finite cross-entropy term (a term named 'loss' takes that key),
    # so only checking every loss term catches the NaN.
    with pytest.raises(FloatingPointError, match=r"iteration 3 .*loss=\d.*loss_aux=nan"):
        runner.train()
    assert model.loss_calls == 3
