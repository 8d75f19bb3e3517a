"""Training on Ray Train with real worker processes: DDP over gloo, restarts, resubmission."""
from __future__ import annotations

import json
import os

import pytest
import torch

from raytrainer import checkpoint as ckpt
from raytrainer import launch, storage
from raytrainer.config import Config
from raytrainer.runner import Runner

from ..conftest import ROOT
from .conftest import Killer

CHECKPOINT_EVERY = 20


def digits_cfg(work_dir, out_dir, *extra_hooks, **overrides) -> Config:
    cfg = Config.fromfile(os.path.join(ROOT, "configs/digits/mlp.py"))
    cfg.work_dir = str(work_dir)
    cfg.merge_from_dict({
        "train_cfg.max_epochs": 3, "train_cfg.val_interval": 3,
        "default_hooks.checkpoint": dict(type="CheckpointHook", by_epoch=False,
                                         interval=CHECKPOINT_EVERY, max_keep_ckpts=2),
        "default_hooks.logger.interval": 20,
        "randomness": dict(seed=11, deterministic=True),
        "auto_scale_lr": dict(enable=True, base_batch_size=32),
        "ray.max_failures": 2,
    })
    cfg["custom_hooks"] = [dict(type="tests.launch.ray_hooks.RecordRank", out_dir=str(out_dir)),
                           *extra_hooks]
    for key, value in overrides.items():
        cfg[key] = value
    return cfg


def attempts(out_dir) -> list[dict]:
    return [json.loads(line) for line in open(os.path.join(out_dir, "attempts.jsonl"))]


def weights(out_dir, rank=0) -> dict:
    return torch.load(os.path.join(out_dir, f"weights_rank{rank}.pt"), weights_only=True)


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def straight(ray_cluster, tmp_path_factory):
    """An uninterrupted 2-worker run every fault test compares against.

    It also validates after every epoch, keeps the best checkpoint and saves in the background
    (none of which changes the weights: validation leaves the global RNG alone), so checkpoint
    retention on Ray is checked with best_* checkpoints and commits that land between reports.
    """
    root = tmp_path_factory.mktemp("straight")
    out = root / "out"
    out.mkdir()
    cfg = digits_cfg(root / "work", out)
    cfg.merge_from_dict({"train_cfg.val_interval": 1,
                         "default_hooks.checkpoint.save_best": "auto",
                         "default_hooks.checkpoint.async_save": True})
    result = launch.train(cfg, num_workers=2)
    return dict(result=result, out=out, work=root / "work")


def test_two_ranks_train_in_lockstep_from_one_identity(straight):
    result, out = straight["result"], straight["out"]
    assert_same_weights(weights(out, 0), weights(out, 1))
    records = attempts(out)
    assert sorted(r["rank"] for r in records) == [0, 1]
    assert {r["world_size"] for r in records} == {2}
    assert {r["seed"] for r in records} == {result.spec.seed} == {11}
    assert {r["timestamp"] for r in records} == {result.spec.timestamp}
    assert {r["log_dir"] for r in records} == {
        storage.join(result.spec.work_dir, result.spec.timestamp)}
    log_dir = records[0]["log_dir"]
    main_log = open(os.path.join(log_dir, f"{result.spec.timestamp}.log")).read()
    rank1_log = open(os.path.join(log_dir, f"{result.spec.timestamp}_rank1.log")).read()
    assert "rank=0/2" in main_log and "rank=1/2" in rank1_log
    assert "seed=11" in main_log and "seed=11" in rank1_log
    # 2 ranks x 32 per rank x 1 accumulation step / base batch 32
    assert "real batch size 64 = 2 ranks x 32 per rank" in main_log
    assert "lr scaled by 2" in main_log


def test_ray_result_and_storage_agree(straight):
    result, work = straight["result"], straight["work"]
    iters = result.details["iter"]
    assert iters == 3 * 23  # 1438 images / (2 ranks x 32) rounded up = 23 per epoch
    last = os.path.join(str(work), "checkpoints", f"iter_{iters}")
    assert result.details["last_checkpoint"] == last
    assert result.result.checkpoint.path == last
    assert result.result.metrics["iter"] == iters
    assert result.result.metrics["val/accuracy/top1"] == result.metrics["accuracy/top1"]
    # Every regular checkpoint (iter_20 ... iter_69) was registered, in order, and Ray Train
    # kept max_keep_ckpts=2 of them; the best checkpoint (saved after iter_69, validated each
    # epoch) is the hook's and does not count. Nothing else is left on storage.
    root = os.path.join(str(work), "checkpoints")
    kept = sorted(e["name"] for e in storage.listdir(root))
    best = [name for name in kept if name.startswith("best_")]
    assert len(best) == 1 and best[0] in {f"best_accuracy_top1_iter_{n}" for n in (23, 46, 69)}
    assert kept == sorted(best + ["iter_60", f"iter_{iters}"])
    assert all(ckpt.is_committed(os.path.join(root, name)) for name in kept)
    registered = [checkpoint.path for checkpoint, _ in result.result.best_checkpoints]
    assert registered == [os.path.join(root, "iter_60"), last]
    # each carries the metrics of its own iteration (saved in the background, iter_60 may
    # commit after later reports)
    assert [m["iter"] for _, m in result.result.best_checkpoints] == [60, iters]


def test_two_rank_validation_equals_one_process(straight, tmp_path):
    result = straight["result"]
    checkpoint = result.details["last_checkpoint"]
    cfg = digits_cfg(tmp_path / "single", tmp_path, load_from=checkpoint)
    cfg["custom_hooks"] = []
    single = Runner.from_cfg(cfg).val()
    # 3 epochs whose cosine schedule ends with the run: well trained, and the same on Ray
    assert single["accuracy/top1"] == result.metrics["accuracy/top1"] > 80.0
    on_ray = launch.val(digits_cfg(tmp_path / "val", tmp_path), checkpoint, num_workers=2)
    assert on_ray.metrics == single


@pytest.mark.parametrize("kill_at,resumes_at", [(33, 20), (5, 0)],
                         ids=["after_a_checkpoint", "before_any_checkpoint"])
def test_killed_worker_is_restarted_and_the_run_ends_as_if_never_killed(
        straight, tmp_path, kill_at, resumes_at):
    out = tmp_path / "out"
    out.mkdir()
    marker = str(tmp_path / "pid")
    hook = dict(type="tests.launch.ray_hooks.ExposePidAt", marker=marker, at_iter=kill_at)
    with Killer(marker) as killer:
        result = launch.train(digits_cfg(tmp_path / "work", out, hook), num_workers=2)
    assert killer.killed_pid is not None
    records = attempts(out)
    assert len(records) == 4  # two ranks, two attempts
    first, second = records[:2], records[2:]
    assert {r["start_iter"] for r in first} == {0}
    assert {r["start_iter"] for r in second} == {resumes_at}
    assert len({(r["seed"], r["timestamp"], r["log_dir"]) for r in records}) == 1
    assert killer.killed_pid in {r["pid"] for r in first}
    assert_same_weights(weights(out), weights(straight["out"]))
    assert result.metrics == straight["result"].metrics


def test_resubmitting_a_failed_run_continues_its_last_checkpoint(straight, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    marker = str(tmp_path / "pid")
    hook = dict(type="tests.launch.ray_hooks.ExposePidAt", marker=marker, at_iter=45)
    cfg = digits_cfg(tmp_path / "work", out, hook)
    cfg.merge_from_dict({"ray.max_failures": 0})
    with Killer(marker), pytest.raises(Exception, match="(?i)fail"):
        launch.train(cfg, num_workers=2)
    first = attempts(out)
    cfg.resume = True
    result = launch.train(cfg, num_workers=2)
    records = attempts(out)[len(first):]
    assert {r["start_iter"] for r in records} == {40}
    assert {r["timestamp"] for r in records} == {first[0]["timestamp"]}  # same run, same logs
    assert result.details["resumed_from"].endswith("iter_40")
    assert_same_weights(weights(out), weights(straight["out"]))

    # A fresh run in the same work_dir: Ray must not go on deleting the earlier run's
    # checkpoints (another lineage), and every checkpoint Ray reports must exist.
    checkpoint_dir = os.path.join(str(tmp_path / "work"), "checkpoints")
    earlier = ckpt.list_checkpoints(checkpoint_dir)
    assert len(earlier) == 2
    cfg.resume = False
    cfg.merge_from_dict({"train_cfg.max_epochs": 1, "train_cfg.val_interval": 1})
    fresh = launch.train(cfg, num_workers=2)
    for location in earlier:
        ckpt.read_commit(location)  # still there and complete
    reported = [str(c.path) for c, _ in fresh.result.best_checkpoints]
    assert reported and all(storage.exists(path) for path in reported)
    assert not set(reported) & {str(location) for location in earlier}


@pytest.fixture(scope="module")
def straight_fsdp(ray_cluster, tmp_path_factory):
    """An uninterrupted 2-worker FSDP run with background (DCP) saves."""
    root = tmp_path_factory.mktemp("straight_fsdp")
    out = root / "out"
    out.mkdir()
    cfg = digits_cfg(root / "work", out, strategy=dict(type="FSDPStrategy"))
    cfg.merge_from_dict({"default_hooks.checkpoint.async_save": True})
    result = launch.train(cfg, num_workers=2)
    return dict(result=result, out=out, work=root / "work")


def test_fsdp_killed_worker_resumes_to_bitwise_equal_weights(straight_fsdp, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    marker = str(tmp_path / "pid")
    hook = dict(type="tests.launch.ray_hooks.ExposePidAt", marker=marker, at_iter=33)
    cfg = digits_cfg(tmp_path / "work", out, hook, strategy=dict(type="FSDPStrategy"))
    cfg.merge_from_dict({"default_hooks.checkpoint.async_save": True})
    with Killer(marker) as killer:
        result = launch.train(cfg, num_workers=2)
    assert killer.killed_pid is not None
    records = attempts(out)
    assert [r["start_iter"] for r in records] == [0, 0, 20, 20]
    checkpoints = ckpt.list_checkpoints(str(tmp_path / "work" / "checkpoints"))
    assert checkpoints and all(ckpt.read_commit(c)["layout"] == "sharded" for c in checkpoints)
    assert_same_weights(weights(out), weights(straight_fsdp["out"]))
    assert result.metrics == straight_fsdp["result"].metrics
