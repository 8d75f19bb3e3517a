"""EarlyStoppingHook: rule inference, the stop conditions, stopping a real run, resume."""
from __future__ import annotations

import io
import logging
import math
import uuid
from types import SimpleNamespace

import pytest
import torch

from raytrainer import storage
from raytrainer.hooks.early_stopping_hook import EarlyStoppingHook, infer_rule
from raytrainer.registry import HOOKS
from raytrainer.runner import Runner


@pytest.mark.parametrize("monitor,rule", [
    ("accuracy/top1", "greater"), ("mAP", "greater"), ("loss", "less"), ("val_loss", "less"),
    ("AUC", "greater")])
def test_rule_is_inferred_from_the_metric_name(monitor, rule):
    assert infer_rule(monitor) == rule
    assert EarlyStoppingHook(monitor).rule == rule


def test_unknown_metric_or_rule_is_an_error():
    with pytest.raises(ValueError, match="cannot tell whether 'f1_score'"):
        EarlyStoppingHook("f1_score")
    with pytest.raises(ValueError, match="rule must be 'greater' or 'less'"):
        EarlyStoppingHook("acc", rule="bigger")


def fake_runner() -> SimpleNamespace:
    loop = SimpleNamespace(stop_training=False)
    return SimpleNamespace(train_loop_or_none=loop, train_loop=loop, epoch=1, iter=10,
                           logger=logging.getLogger("test_early_stopping_hook"))


def feed(hook, scores, monitor="acc"):
    """Validate with each score in turn; returns the validation index that stopped, or None."""
    runner = fake_runner()
    for i, score in enumerate(scores, start=1):
        hook.after_val_epoch(runner, {monitor: score})
        if runner.train_loop.stop_training:
            return i
    return None


def test_patience_counts_validations_without_an_improvement_of_min_delta():
    hook = EarlyStoppingHook("acc", min_delta=0.5, patience=2)
    # 1.4 is not 0.5 better than 1.0; 1.5 is (reaching best + min_delta counts).
    assert feed(hook, [1.0, 1.4, 1.5, 1.6, 1.7, 1.8]) == 5
    assert hook.best_score == 1.5 and hook.wait_count == 2


def test_less_rule_and_stopping_threshold():
    assert feed(EarlyStoppingHook("loss", min_delta=0.0, patience=3),
                [3.0, 2.0, 2.5, 2.0, 1.99], monitor="loss") is None
    hook = EarlyStoppingHook("loss", stopping_threshold=0.5, patience=10)
    assert feed(hook, [2.0, 1.0, 0.4, 0.3], monitor="loss") == 3
    assert hook.best_score == 0.4


def test_non_finite_metric_stops_unless_check_finite_is_off():
    assert feed(EarlyStoppingHook("acc"), [0.5, math.nan]) == 2
    assert feed(EarlyStoppingHook("acc", check_finite=False, patience=1), [0.5, math.inf]) \
        is None


def test_missing_metric_warns_or_raises_when_strict():
    with pytest.warns(UserWarning, match="'acc' is not among the validation metrics"):
        assert feed(EarlyStoppingHook("acc"), [0.5], monitor="loss") is None
    with pytest.raises(RuntimeError, match="'acc' is not among.*strict=False"):
        feed(EarlyStoppingHook("acc", strict=True), [0.5], monitor="loss")


def test_standalone_validation_is_ignored():
    hook = EarlyStoppingHook("acc", patience=1)
    runner = SimpleNamespace(train_loop_or_none=None)
    hook.after_val_epoch(runner, {"acc": math.nan})  # no train loop: nothing to stop
    assert hook.wait_count == 0


def test_state_survives_a_weights_only_checkpoint():
    hook = EarlyStoppingHook("acc", patience=3)
    feed(hook, [0.9, 0.8, 0.7])
    checkpoint: dict = {}
    hook.before_save_checkpoint(None, checkpoint)
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    buffer.seek(0)
    restored = EarlyStoppingHook("acc", patience=3)
    restored.after_load_checkpoint(None, torch.load(buffer, weights_only=True))
    assert (restored.best_score, restored.wait_count) == (0.9, 2)
    assert feed(restored, [0.85]) == 1  # the third validation without improvement


def digits_runner(work_dir, hook: dict, lr: float, max_epochs: int = 10) -> Runner:
    def loader(split, shuffle):
        return dict(batch_size=128, dataset=dict(type="DigitsDataset", split=split),
                    sampler=dict(type="DefaultSampler", shuffle=shuffle),
                    collate_fn=dict(type="default_collate"))
    return Runner(
        model=dict(type="MLPClassifier", in_features=64, hidden_dims=(16,), num_classes=10),
        work_dir=str(work_dir), train_dataloader=loader("train", True),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs, val_interval=1),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=lr, momentum=0.9)),
        val_dataloader=loader("val", False), val_cfg=dict(), val_evaluator=dict(type="Accuracy"),
        custom_hooks=[hook], default_hooks=dict(checkpoint=dict(type="CheckpointHook",
                                                               interval=1)),
        randomness=dict(seed=0), experiment_name=f"early_{uuid.uuid4().hex[:8]}")


def test_a_run_that_stops_learning_stops_after_patience_validations(tmp_path):
    # lr=0: accuracy never changes, so validations 2 and 3 bring no improvement.
    runner = digits_runner(tmp_path, dict(type="EarlyStoppingHook", monitor="accuracy/top1",
                                          patience=2), lr=0.0)
    runner.train()
    assert runner.epoch == 3
    checkpoints = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert checkpoints == ["epoch_1", "epoch_2", "epoch_3"]
    log = storage.read_text(storage.join(runner.log_dir, f"{runner.timestamp}.log"))
    assert "early stopping after epoch 3" in log and "did not improve" in log


def test_a_run_stops_once_the_threshold_is_reached(tmp_path):
    hook = HOOKS.build(dict(type="EarlyStoppingHook", monitor="accuracy/top1",
                            stopping_threshold=50.0))
    runner = digits_runner(tmp_path, hook, lr=0.5)
    runner.train()
    assert runner.epoch < 10
    assert hook.best_score > 50.0
    log = storage.read_text(storage.join(runner.log_dir, f"{runner.timestamp}.log"))
    assert f"early stopping after epoch {runner.epoch}" in log
    assert "reached the stopping threshold" in log
