"""The model summary logged when training starts: counts, frozen parameters, sizes, rows."""
from __future__ import annotations

import torch.nn as nn

from raytrainer.model.summary import human, model_summary
from raytrainer.runner import Runner
from tests.runner.helpers import digits_loader


def test_counts_trainable_and_frozen_parameters_and_the_bytes_of_weights_and_buffers():
    model = nn.Sequential(nn.Linear(64, 32), nn.BatchNorm1d(32), nn.Linear(32, 10))
    model[0].weight.requires_grad_(False)  # 2048 frozen
    # 2080 + 64 + 330 parameters (9,896 bytes); buffers: running mean and var (64 floats) and
    # a long counter (264 bytes)
    assert model_summary(model).splitlines() == [
        "model Sequential: 2.5 K parameters (426 trainable, 2.0 K frozen), 10.2 KB of "
        "weights and buffers",
        "  0  Linear       2.1 K",
        "  1  BatchNorm1d  64",
        "  2  Linear       330"]


def test_human_counts():
    assert [human(n) for n in (7, 999, 1234, 3_400_000, 7.2e9)] == \
        ["7", "999", "1.2 K", "3.4 M", "7.2 B"]


def test_many_children_are_cut_after_twelve_rows():
    lines = model_summary(nn.Sequential(*[nn.ReLU() for _ in range(15)])).splitlines()
    assert len(lines) == 1 + 12 + 1 and lines[-1] == "  ... and 3 more modules"


def test_training_logs_the_summary(tmp_path):
    from raytrainer.model import MLPClassifier  # noqa: F401 - registered

    runner = Runner(model=dict(type="MLPClassifier"), work_dir=str(tmp_path),
                    train_dataloader=digits_loader(batch_size=64),
                    train_cfg=dict(by_epoch=True, max_epochs=1),
                    optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.1)),
                    default_hooks=dict(checkpoint=None))
    runner.train()
    log = open(tmp_path / runner.timestamp / f"{runner.timestamp}.log").read()
    expected = model_summary(runner.model).splitlines()[0]
    assert f" - INFO - {expected}\n" in log
    assert "trainable, 0 frozen)" in expected
