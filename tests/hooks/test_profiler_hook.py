"""ProfilerHook: how long it profiles, where traces go (local, URL, log, TensorBoard)."""
from __future__ import annotations

import glob
import json
import logging
import os
import uuid
from collections import Counter
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from raytrainer import storage
from raytrainer.hooks.profiler_hook import ProfilerHook
from raytrainer.registry import HOOKS
from raytrainer.runner import Runner

STEP_EVENT = "Optimizer.step#SGD.step"


def fake_runner(log_dir, max_iters=4, max_epochs=2, iter=0) -> SimpleNamespace:
    return SimpleNamespace(logger=logging.getLogger("test_profiler_hook"), log_dir=str(log_dir),
                           rank=0, max_iters=max_iters, max_epochs=max_epochs, iter=iter,
                           epoch=0)


def train(hook: ProfilerHook, runner, iters: int, iters_per_epoch: int | None = None) -> None:
    """Drive the hook around real SGD steps the way a train loop does."""
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    hook.before_train(runner)
    for i in range(iters):
        optimizer.zero_grad()
        model(torch.randn(3, 4)).sum().backward()
        optimizer.step()
        hook.after_train_iter(runner, i)
        runner.iter += 1
        if iters_per_epoch and (i + 1) % iters_per_epoch == 0:
            hook.after_train_epoch(runner)
            runner.epoch += 1
    hook.after_train(runner)


def step_events(trace: dict) -> int:
    return Counter(e.get("name") for e in trace["traceEvents"])[STEP_EVENT]


def test_profiles_profile_times_iterations_then_stops(tmp_path):
    hook = HOOKS.build(dict(type="ProfilerHook", by_epoch=False, profile_times=2))
    runner = fake_runner(tmp_path, max_iters=5)
    train(hook, runner, 5)
    assert hook.trace_location == str(tmp_path / "profiler" / "trace_rank0.json")
    with open(hook.trace_location) as f:
        trace = json.load(f)
    assert step_events(trace) == 2  # the 3 later steps ran unprofiled


def test_by_epoch_profiles_the_first_epoch_only(tmp_path):
    hook = ProfilerHook(by_epoch=True, profile_times=1)
    train(hook, fake_runner(tmp_path, max_iters=6, max_epochs=2), 6, iters_per_epoch=3)
    with open(hook.trace_location) as f:
        assert step_events(json.load(f)) == 3


def test_profile_times_counts_from_a_resumed_position(tmp_path):
    hook = ProfilerHook(by_epoch=False, profile_times=2)
    train(hook, fake_runner(tmp_path, max_iters=10, iter=7), 3)
    with open(hook.trace_location) as f:
        assert step_events(json.load(f)) == 2


def test_training_that_ends_early_still_closes_the_profiler(tmp_path):
    hook = ProfilerHook(by_epoch=False, profile_times=4)
    train(hook, fake_runner(tmp_path, max_iters=4), 2)  # e.g. EarlyStoppingHook stopped it
    with open(hook.trace_location) as f:
        assert step_events(json.load(f)) == 2
    assert not torch.autograd._profiler_enabled()


def test_json_trace_path_may_be_a_url(tmp_path):
    location = f"memory://profiler-{uuid.uuid4().hex}/trace.json"
    hook = ProfilerHook(by_epoch=False, profile_times=1, json_trace_path=location)
    train(hook, fake_runner(tmp_path), 1)
    trace = json.loads(storage.read_text(location))
    assert step_events(trace) == 1


def test_log_trace_writes_the_key_averages_table(tmp_path, caplog):
    hook = ProfilerHook(by_epoch=False, profile_times=1,
                        on_trace_ready=dict(type="log_trace", sort_by="cpu_time_total",
                                            row_limit=5))
    with caplog.at_level(logging.INFO, logger="test_profiler_hook"):
        train(hook, fake_runner(tmp_path), 2)
    table = next(r.getMessage() for r in caplog.records if "key averages" in r.getMessage())
    assert "Self CPU" in table and "CPU total" in table
    assert os.path.exists(tmp_path / "profiler" / "trace_rank0.json")


def test_tb_trace_writes_into_the_log_dir(tmp_path):
    hook = ProfilerHook(by_epoch=False, profile_times=1,
                        on_trace_ready=dict(type="tb_trace", dir_name="tb", worker_name="w0"))
    train(hook, fake_runner(tmp_path), 1)
    files = glob.glob(str(tmp_path / "tb" / "w0*.pt.trace.json"))
    assert len(files) == 1
    with open(files[0]) as f:
        assert step_events(json.load(f)) == 1
    assert hook.trace_location is None  # no second copy unless json_trace_path asks for one


def test_tb_trace_to_a_url_is_copied_out(tmp_path):
    location = f"memory://tb-{uuid.uuid4().hex}/traces"
    hook = ProfilerHook(by_epoch=False, profile_times=1,
                        on_trace_ready=dict(type="tb_trace", dir_name=location))
    train(hook, fake_runner(tmp_path), 1)
    fs, path = storage.get_filesystem(location)
    names = [n for n in fs.ls(path, detail=False) if n.endswith(".pt.trace.json")]
    assert len(names) == 1


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(profile_times=0), ValueError, "profile_times must be a positive"),
    (dict(on_trace_ready=dict(type="csv")), ValueError, "on_trace_ready type must be"),
    (dict(on_trace_ready="log"), TypeError, "on_trace_ready must be a callable"),
    (dict(schedule=[1, 2]), TypeError, "schedule must be a dict"),
])
def test_bad_arguments_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        ProfilerHook(**kwargs)


def test_more_profile_times_than_left_to_train_is_rejected(tmp_path):
    hook = ProfilerHook(by_epoch=False, profile_times=5)
    with pytest.raises(ValueError, match="profile_times=5 but only 3 iterations"):
        hook.before_train(fake_runner(tmp_path, max_iters=10, iter=7))


def test_with_a_real_runner_the_trace_lands_in_the_log_dir(tmp_path):
    loader = dict(batch_size=128, dataset=dict(type="DigitsDataset", split="train"),
                  sampler=dict(type="DefaultSampler", shuffle=True),
                  collate_fn=dict(type="default_collate"))
    runner = Runner(
        model=dict(type="MLPClassifier", in_features=64, hidden_dims=(16,), num_classes=10),
        work_dir=str(tmp_path), train_dataloader=loader,
        train_cfg=dict(by_epoch=False, max_iters=6, val_interval=100),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.1)),
        custom_hooks=[dict(type="ProfilerHook", by_epoch=False, profile_times=3)],
        default_hooks=dict(checkpoint=None), randomness=dict(seed=0),
        experiment_name=f"profiler_{uuid.uuid4().hex[:8]}")
    runner.train()
    assert runner.iter == 6
    location = storage.join(runner.log_dir, "profiler", "trace_rank0.json")
    trace = json.loads(storage.read_text(location))
    assert step_events(trace) == 3
