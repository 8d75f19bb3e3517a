"""EmptyCacheHook: empties the CUDA cache exactly at the configured points, never without CUDA."""
from __future__ import annotations

import pytest
import torch

from raytrainer.hooks.empty_cache_hook import EmptyCacheHook
from raytrainer.registry import HOOKS


@pytest.fixture
def calls(monkeypatch):
    """Pretend CUDA is up and count empty_cache() calls."""
    counter = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: counter.append(1))
    return counter


def run_points(hook):
    """One train epoch of two iterations, one val epoch and one test epoch."""
    for mode in ("train", "val", "test"):
        getattr(hook, f"before_{mode}_epoch")(None)
        for i in range(2):
            getattr(hook, f"after_{mode}_iter")(None, i)
        if mode == "train":
            hook.after_train_epoch(None)
        else:
            getattr(hook, f"after_{mode}_epoch")(None, {})


@pytest.mark.parametrize("kwargs,expected", [
    (dict(), 3),  # after each of the 3 epochs
    (dict(before_epoch=True), 6),
    (dict(after_epoch=False, after_iter=True), 6),
    (dict(before_epoch=True, after_iter=True), 12),
    (dict(after_epoch=False), 0),
])
def test_empties_the_cache_at_the_chosen_points(calls, kwargs, expected):
    run_points(HOOKS.build(dict(type="EmptyCacheHook", **kwargs)))
    assert len(calls) == expected


def test_without_cuda_nothing_is_called(monkeypatch):
    counter = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: counter.append(1))
    run_points(EmptyCacheHook(before_epoch=True, after_iter=True))
    assert counter == []


def test_only_the_shared_points_are_registered():
    stages = EmptyCacheHook().get_triggered_stages()
    assert "after_train_iter" in stages and "before_val_epoch" in stages
    assert "before_run" not in stages and "after_train_iter" in stages
