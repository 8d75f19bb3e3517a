"""EMAHook: updates, evaluation on averaged weights, checkpoint layout, exact resume."""
from __future__ import annotations

import logging
import uuid
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from raytrainer.checkpoint import load_checkpoint
from raytrainer.hooks.ema_hook import EMAHook
from raytrainer.hooks.hook import Hook
from raytrainer.registry import HOOKS
from raytrainer.runner import Runner


# ---- unit level: a stand-in runner --------------------------------------------------------
def fake_runner(model: nn.Module, **counters) -> SimpleNamespace:
    values = dict(iter=0, epoch=0, max_iters=100, max_epochs=10)
    values.update(counters)
    return SimpleNamespace(model=model, logger=logging.getLogger("test_ema_hook"), **values)


def step(model: nn.Module, value: float) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(value)


def test_registered_and_builds_the_configured_average():
    hook = HOOKS.build(dict(type="EMAHook", ema_type="MomentumAnnealingEMA", momentum=0.1,
                            gamma=10))
    model = nn.Linear(2, 2)
    hook.before_run(fake_runner(model))
    assert type(hook.ema_model).__name__ == "MomentumAnnealingEMA"
    assert hook.ema_model.gamma == 10 and hook.ema_model.momentum == 0.1
    assert hook.src_model is model


def test_begin_iter_mirrors_the_model_until_averaging_starts():
    model = nn.Linear(2, 2)
    hook = EMAHook(momentum=0.5, begin_iter=2)  # averaging starts once 2 iterations are done
    runner = fake_runner(model)
    hook.before_run(runner)
    step(model, 1.0)
    hook.after_train_iter(runner, 0)
    torch.testing.assert_close(hook.ema_model.module.weight, model.weight)
    assert int(hook.ema_model.steps) == 0
    runner.iter = 1
    step(model, 1.0)
    hook.after_train_iter(runner, 1)  # the first averaging update copies
    assert int(hook.ema_model.steps) == 1
    before = model.weight.detach().clone()
    runner.iter = 2
    step(model, 2.0)
    hook.after_train_iter(runner, 2)
    torch.testing.assert_close(hook.ema_model.module.weight, (before + model.weight) / 2)


def test_begin_epoch_and_begin_iter_are_checked():
    with pytest.raises(ValueError, match="not both"):
        EMAHook(begin_iter=1, begin_epoch=1)
    with pytest.raises(ValueError, match=">= 0"):
        EMAHook(begin_iter=-1)
    hook = EMAHook(begin_epoch=4)
    with pytest.raises(ValueError, match="begin_epoch=4 is after the last epoch"):
        hook.before_train(fake_runner(nn.Linear(2, 2), max_epochs=3))


def test_validation_swaps_the_average_in_and_back_out():
    model = nn.Linear(3, 2)
    hook = EMAHook(momentum=0.5)
    runner = fake_runner(model)
    hook.before_run(runner)
    hook.after_train_iter(runner, 0)
    step(model, 1.0)
    hook.after_train_iter(runner, 1)
    raw = model.weight.detach().clone()
    average = hook.ema_model.module.weight.detach().clone()
    assert not torch.equal(raw, average)
    hook.before_val_epoch(runner)
    torch.testing.assert_close(model.weight, average)
    hook.after_val_epoch(runner, {})
    torch.testing.assert_close(model.weight, raw)
    torch.testing.assert_close(hook.ema_model.module.weight, average)
    hook.before_test_epoch(runner)
    torch.testing.assert_close(model.weight, average)
    hook.after_test_epoch(runner, {})
    torch.testing.assert_close(model.weight, raw)


def test_checkpoint_round_trip_restores_average_and_raw_weights():
    model = nn.Linear(3, 2)
    hook = EMAHook(momentum=0.5)
    runner = fake_runner(model)
    hook.before_run(runner)
    for i in range(3):
        step(model, float(i))
        hook.after_train_iter(runner, i)
    raw = {k: v.detach().clone() for k, v in model.state_dict().items()}
    average = {k: v.detach().clone() for k, v in hook.ema_model.module.state_dict().items()}
    checkpoint = {"state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()}}
    hook.before_save_checkpoint(runner, checkpoint)
    # MMEngine's layout: state_dict is the average, ema_state_dict keeps the raw weights.
    torch.testing.assert_close(checkpoint["state_dict"], average)
    torch.testing.assert_close(checkpoint["ema_state_dict"]["module.weight"], raw["weight"])
    assert int(checkpoint["ema_state_dict"]["steps"]) == 3

    # A fresh run: the runner loads state_dict (the average) into the model, then the hook.
    new_model = nn.Linear(3, 2)
    new_hook = EMAHook(momentum=0.5)
    new_runner = fake_runner(new_model)
    new_hook.before_run(new_runner)
    new_model.load_state_dict(checkpoint["state_dict"])
    new_hook.after_load_checkpoint(new_runner, checkpoint)
    torch.testing.assert_close(new_model.state_dict(), raw)
    torch.testing.assert_close(new_hook.ema_model.module.state_dict(), average)
    assert int(new_hook.ema_model.steps) == 3


def test_checkpoint_saved_while_swapped_keeps_the_same_layout():
    model = nn.Linear(3, 2)
    hook = EMAHook(momentum=0.5)
    runner = fake_runner(model)
    hook.before_run(runner)
    hook.after_train_iter(runner, 0)
    step(model, 1.0)
    hook.after_train_iter(runner, 1)
    raw = model.weight.detach().clone()
    average = hook.ema_model.module.weight.detach().clone()
    hook.before_val_epoch(runner)  # e.g. a save_best checkpoint written during validation
    checkpoint = {"state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()}}
    hook.before_save_checkpoint(runner, checkpoint)
    torch.testing.assert_close(checkpoint["state_dict"]["weight"], average)
    torch.testing.assert_close(checkpoint["ema_state_dict"]["module.weight"], raw)


def test_checkpoint_without_ema_state_starts_the_average_from_state_dict(caplog):
    model = nn.Linear(3, 2)
    hook = EMAHook(momentum=0.5)
    runner = fake_runner(model)
    hook.before_run(runner)
    saved = {k: torch.full_like(v, 7.0) for k, v in model.state_dict().items()}
    with caplog.at_level(logging.WARNING, logger="test_ema_hook"):
        hook.after_load_checkpoint(runner, {"state_dict": saved})
    assert "no 'ema_state_dict'" in caplog.text
    torch.testing.assert_close(hook.ema_model.module.state_dict(), saved)


# ---- with a real Runner -------------------------------------------------------------------
class RecordWeights(Hook):
    """Records the first layer's weight when validation starts and at each epoch's end."""

    priority = "LOW"  # after EMAHook (NORMAL) has swapped

    def __init__(self):
        self.at_val: list[torch.Tensor] = []
        self.metrics: list[dict] = []

    def before_val_epoch(self, runner):
        self.at_val.append(runner.model.net[0].weight.detach().clone())

    def after_val_epoch(self, runner, metrics=None):
        self.metrics.append(dict(metrics))


def digits_runner(work_dir, hooks, max_epochs=2, **kwargs) -> Runner:
    loader = dict(batch_size=32, dataset=dict(type="DigitsDataset", split="train"),
                  sampler=dict(type="DefaultSampler", shuffle=True),
                  collate_fn=dict(type="default_collate"))
    val_loader = dict(batch_size=64, dataset=dict(type="DigitsDataset", split="val"),
                      sampler=dict(type="DefaultSampler", shuffle=False),
                      collate_fn=dict(type="default_collate"))
    return Runner(
        model=dict(type="MLPClassifier", in_features=64, hidden_dims=(32,), num_classes=10),
        work_dir=str(work_dir), train_dataloader=loader,
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs, val_interval=1),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.1, momentum=0.9)),
        val_dataloader=val_loader, val_cfg=dict(), val_evaluator=dict(type="Accuracy"),
        custom_hooks=hooks, default_hooks=dict(checkpoint=dict(type="CheckpointHook",
                                                               interval=1)),
        randomness=dict(seed=0), experiment_name=f"ema_{uuid.uuid4().hex[:8]}", **kwargs)


def ema_hook_of(runner: Runner) -> EMAHook:
    return next(h for h in runner.hooks if isinstance(h, EMAHook))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two epochs with EMA (momentum 0.01), a checkpoint after each epoch."""
    work_dir = tmp_path_factory.mktemp("ema_straight")
    probe = RecordWeights()
    runner = digits_runner(work_dir, [dict(type="EMAHook", momentum=0.01), probe])
    runner.train()
    return SimpleNamespace(runner=runner, hook=ema_hook_of(runner), probe=probe,
                           work_dir=work_dir)


def test_training_validates_and_checkpoints_the_average(trained):
    runner, hook, probe = trained.runner, trained.hook, trained.probe
    assert int(hook.ema_model.steps) == runner.max_iters == 90
    last = load_checkpoint(str(trained.work_dir / "checkpoints" / "epoch_2"))
    average = hook.ema_model.module.state_dict()
    raw = runner.model.state_dict()
    for name in raw:
        torch.testing.assert_close(last["state_dict"][name], average[name], msg=name)
        torch.testing.assert_close(last["ema_state_dict"]["module." + name], raw[name])
    assert not torch.equal(average["net.0.weight"], raw["net.0.weight"])
    # Each validation ran on the average saved just before it, not on the raw weights.
    for epoch, weight in enumerate(probe.at_val, start=1):
        saved = load_checkpoint(str(trained.work_dir / "checkpoints" / f"epoch_{epoch}"))
        torch.testing.assert_close(weight, saved["state_dict"]["net.0.weight"])
        assert not torch.equal(weight, saved["ema_state_dict"]["module.net.0.weight"])


def test_resume_continues_the_average_exactly(trained, tmp_path):
    resumed = digits_runner(tmp_path, [dict(type="EMAHook", momentum=0.01)],
                            resume=str(trained.work_dir / "checkpoints" / "epoch_1"))
    resumed.train()
    hook = ema_hook_of(resumed)
    assert resumed.resumed_from is not None and int(hook.ema_model.steps) == 90
    torch.testing.assert_close(hook.ema_model.state_dict(), trained.hook.ema_model.state_dict(),
                               rtol=0, atol=0)
    torch.testing.assert_close(resumed.model.state_dict(), trained.runner.model.state_dict(),
                               rtol=0, atol=0)


def test_test_run_from_an_ema_checkpoint_evaluates_the_average(trained, tmp_path):
    val_loader = dict(batch_size=64, dataset=dict(type="DigitsDataset", split="val"),
                      sampler=dict(type="DefaultSampler", shuffle=False),
                      collate_fn=dict(type="default_collate"))
    runner = Runner(
        model=dict(type="MLPClassifier", in_features=64, hidden_dims=(32,), num_classes=10),
        work_dir=str(tmp_path), test_dataloader=val_loader, test_cfg=dict(),
        test_evaluator=dict(type="Accuracy"), custom_hooks=[dict(type="EMAHook")],
        load_from=str(trained.work_dir / "checkpoints" / "epoch_2"),
        randomness=dict(seed=0), experiment_name=f"ema_test_{uuid.uuid4().hex[:8]}")
    metrics = runner.test()
    assert metrics["accuracy/top1"] == pytest.approx(trained.probe.metrics[-1]["accuracy/top1"])
