"""The Runner end to end in one process: training, hooks, laziness, logging, checkpoints."""
from __future__ import annotations

import json
import os
import time

import pytest
import torch

from raytrainer.checkpoint import load_checkpoint
from raytrainer.config import Config
from raytrainer.dataset import DigitsDataset, InfiniteSampler, default_collate
from raytrainer.hooks import Hook
from raytrainer.model import MLPClassifier
from raytrainer.runner import Runner
from raytrainer.utils import set_random_seed

from .helpers import CallRecorder, runner_kwargs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def test_digits_config_reaches_95_percent_in_under_a_minute(tmp_path):
    cfg = Config.fromfile(os.path.join(ROOT, "configs/digits/mlp.py"))
    cfg.work_dir = str(tmp_path)
    # CPU time of this process: what the run costs on its own, whatever else the machine does.
    start = time.process_time()
    runner = Runner.from_cfg(cfg)
    runner.train()
    elapsed = time.process_time() - start
    metrics = runner.val_loop.last_metrics
    assert metrics["accuracy/top1"] >= 95.0
    assert elapsed < 60


def test_hook_points_run_in_mmengine_order(tmp_path):
    recorder = CallRecorder()
    runner = Runner(**runner_kwargs(tmp_path, epochs=1, custom_hooks=[recorder],
                                    default_hooks=dict(checkpoint=None)))
    runner.train()
    calls = [c for c in recorder.calls if not c.endswith("_iter")]
    assert calls == ["before_run", "before_train", "before_train_epoch", "after_train_epoch",
                     "before_val", "before_val_epoch", "after_val_epoch", "after_val",
                     "after_train", "after_run"]
    assert recorder.calls.count("before_train_iter") == 45
    assert recorder.calls.count("after_val_iter") == 6


def test_hooks_are_ordered_by_priority_then_registration(tmp_path):
    hooks = [CallRecorder("low", "LOW"), CallRecorder("first", 0), CallRecorder("n1"),
             CallRecorder("n2", 50), CallRecorder("high", "HIGH")]
    runner = Runner(**runner_kwargs(tmp_path, custom_hooks=hooks, val=False))
    names = [getattr(h, "tag", type(h).__name__) for h in runner.hooks]
    assert names == ["first", "RuntimeInfoHook", "high", "IterTimerHook", "DistSamplerSeedHook",
                     "n1", "n2", "LoggerHook", "ParamSchedulerHook", "low", "CheckpointHook"]
    with pytest.raises(ValueError, match="unknown priority name 'SOON'"):
        runner.register_hook(CallRecorder("x"), priority="SOON")


def test_test_only_run_never_builds_training_components(tmp_path):
    kwargs = runner_kwargs(tmp_path, optim_wrapper=dict(optimizer=dict(type="NoSuchOptim")),
                           param_scheduler=dict(type="NoSuchScheduler"))
    kwargs.update(test_dataloader=kwargs["val_dataloader"], test_cfg=dict(),
                  test_evaluator=dict(type="Accuracy", topk=(1, 5)))
    runner = Runner(**kwargs)
    metrics = runner.test()
    assert set(metrics) == {"accuracy/top1", "accuracy/top5"}
    assert 0.0 <= metrics["accuracy/top1"] <= metrics["accuracy/top5"] <= 100.0
    assert isinstance(runner.optim_wrapper, dict)  # still the config: never built
    with pytest.raises(KeyError, match="'NoSuchOptim' is not registered"):
        runner.train()


def test_incomplete_component_groups_are_rejected(tmp_path):
    kwargs = runner_kwargs(tmp_path)
    del kwargs["val_evaluator"]
    with pytest.raises(ValueError, match="val_dataloader, val_cfg, val_evaluator must be given "
                                         r"together; got \['val_dataloader', 'val_cfg'\]"):
        Runner(**kwargs)


def test_drawn_seed_is_recorded_in_log_and_config_dump(tmp_path):
    kwargs = runner_kwargs(tmp_path, randomness=dict(seed=None))
    runner = Runner(cfg=Config(dict(kwargs)), **kwargs)
    seed = runner.seed
    assert isinstance(seed, int)
    log_text = open(os.path.join(runner.log_dir, f"{runner.timestamp}.log")).read()
    assert f"seed={seed}" in log_text
    dumped = Config.fromfile(os.path.join(str(tmp_path), f"{runner.timestamp}.py"))
    assert dumped.randomness.seed == seed


def test_auto_scale_lr_counts_gradient_accumulation(tmp_path):
    kwargs = runner_kwargs(tmp_path, epochs=1, val=False,
                           optim_wrapper=dict(accumulative_counts=2,
                                              optimizer=dict(type="SGD", lr=0.05)),
                           auto_scale_lr=dict(enable=True, base_batch_size=16),
                           default_hooks=dict(checkpoint=None))
    runner = Runner(**kwargs)
    runner.train()
    assert runner.lr_scale_factor == 4.0  # 1 rank x 32 per rank x 2 accumulation / 16
    assert runner.optim_wrapper.optimizer.defaults["lr"] == 0.05  # groups scaled, not defaults
    assert runner.optim_wrapper.param_groups[0]["lr"] == pytest.approx(0.2)
    log_text = open(os.path.join(runner.log_dir, f"{runner.timestamp}.log")).read()
    assert "real batch size 64 = 1 ranks x 32 per rank x 2 accumulation steps" in log_text
    assert "lr scaled by 4" in log_text


def test_log_file_scalars_and_config_are_written(tmp_path):
    runner = Runner(**runner_kwargs(tmp_path, epochs=1, cfg=Config(dict(a=1))))
    runner.train()
    log_text = open(os.path.join(runner.log_dir, f"{runner.timestamp}.log")).read()
    assert "Epoch(train) [1][20/45]" in log_text and "Epoch(val) [1][6/6]" in log_text
    lines = [json.loads(x) for x in open(os.path.join(runner.log_dir, "vis_data",
                                                      "scalars.json"))]
    train_lines = [x for x in lines if "loss" in x]
    assert [x["step"] for x in train_lines] == [20, 40]
    assert {"lr", "loss", "time", "data_time", "epoch", "iter"} <= set(train_lines[0])
    assert "accuracy/top1" in lines[-1] and lines[-1]["step"] == 1
    assert os.path.exists(os.path.join(runner.log_dir, "vis_data", "config.py"))


def test_accumulation_equals_a_hand_written_loop(tmp_path):
    runner = Runner(**runner_kwargs(tmp_path, iters=7, val=False,
                                    optim_wrapper=dict(accumulative_counts=2,
                                                       optimizer=dict(type="SGD", lr=0.1,
                                                                      momentum=0.9)),
                                    default_hooks=dict(checkpoint=None)))
    trained = runner.train()

    set_random_seed(0)
    model = MLPClassifier(hidden_dims=(32,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    dataset = DigitsDataset("train")
    order = iter(InfiniteSampler(dataset, seed=0))
    for i in range(7):
        batch = default_collate([dataset[next(order)] for _ in range(32)])
        divisor = 1 if i == 6 else 2  # 7 iterations: windows {0,1} {2,3} {4,5} {6}
        loss = model(batch["inputs"], batch["data_samples"], mode="loss")["loss"] / divisor
        loss.backward()
        if i in (1, 3, 5, 6):
            optimizer.step()
            optimizer.zero_grad()
    for ours, ref in zip(trained.state_dict().values(), model.state_dict().values()):
        torch.testing.assert_close(ours, ref, rtol=0, atol=0)


def test_checkpoints_load_weights_only_and_load_from_restores_weights(tmp_path):
    runner = Runner(**runner_kwargs(tmp_path / "a", epochs=2))
    runner.train()
    accuracy = runner.val_loop.last_metrics["accuracy/top1"]
    location = os.path.join(str(tmp_path / "a"), "checkpoints", "epoch_2")
    weights = torch.load(os.path.join(location, "model.pt"), weights_only=True)
    assert set(weights) == {"state_dict"}
    state = torch.load(os.path.join(location, "state.pt"), weights_only=True)
    assert set(state) == {"message_hub", "loop", "sampler"}  # no schedulers configured
    assert "rng" in torch.load(os.path.join(location, "rank_0.pt"), weights_only=True)
    meta = json.load(open(os.path.join(location, "meta.json")))
    assert (meta["epoch"], meta["iter"], meta["seed"]) == (2, 90, 0)

    fresh = Runner(**runner_kwargs(tmp_path / "b", load_from=location,
                                   randomness=dict(seed=123)))
    assert fresh.val()["accuracy/top1"] == accuracy


def test_mmengine_style_pth_loads_with_load_from(tmp_path):
    source = MLPClassifier(hidden_dims=(32,))
    path = tmp_path / "epoch_1.pth"
    torch.save({"meta": {"epoch": 1}, "optimizer": {},
                "state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    runner = Runner(**runner_kwargs(tmp_path / "w", load_from=str(path)))
    runner.val()
    for ours, ref in zip(runner.model.state_dict().values(), source.state_dict().values()):
        assert torch.equal(ours, ref)


class CrashAt(Hook):
    priority = "LOWEST"

    def __init__(self, iteration):
        self.iteration = iteration

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.iteration:
            raise RuntimeError("simulated crash")


@pytest.mark.parametrize("loop", ["epoch", "iter"])
def test_resume_mid_epoch_equals_uninterrupted_training(tmp_path, loop):
    size = dict(epochs=2) if loop == "epoch" else dict(iters=90, epochs=None)
    ckpt_hook = dict(type="CheckpointHook", by_epoch=False, interval=20)

    def kwargs(work_dir, **extra):
        return runner_kwargs(work_dir, val=True, **size,
                             default_hooks=dict(checkpoint=ckpt_hook), **extra)

    straight = Runner(**kwargs(tmp_path / "straight"))
    expected = {k: v.clone() for k, v in straight.train().state_dict().items()}
    expected_optim = straight.optim_wrapper.state_dict()

    crashed = Runner(**kwargs(tmp_path / "resumed", custom_hooks=[CrashAt(33)]))
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashed.train()
    resumed = Runner(**kwargs(tmp_path / "resumed", resume=True))
    result = resumed.train()
    assert resumed.resumed_from.endswith("iter_20")
    for key, value in result.state_dict().items():
        assert torch.equal(value, expected[key]), key
    momentum = resumed.optim_wrapper.state_dict()["state"]
    for index, state in expected_optim["state"].items():
        assert torch.equal(momentum[index]["momentum_buffer"], state["momentum_buffer"])


def test_resume_without_checkpoints_starts_from_scratch(tmp_path):
    runner = Runner(**runner_kwargs(tmp_path, epochs=1, resume=True, val=False))
    runner.train()
    assert runner.resumed_from is None
    log_text = open(os.path.join(runner.log_dir, f"{runner.timestamp}.log")).read()
    assert "no committed checkpoint" in log_text


def test_load_checkpoint_reports_missing_file(tmp_path):
    runner = Runner(**runner_kwargs(tmp_path, load_from=str(tmp_path / "nope")))
    with pytest.raises(Exception, match="checkpoint not found: .*nope"):
        runner.val()


def test_checkpoint_load_after_partial_save_is_refused(tmp_path):
    runner = Runner(**runner_kwargs(tmp_path, epochs=1, val=False))
    runner.train()
    location = os.path.join(str(tmp_path), "checkpoints", "epoch_1")
    os.remove(os.path.join(location, "commit.json"))
    with pytest.raises(Exception, match="not a committed checkpoint: commit.json is missing"):
        load_checkpoint(location)
