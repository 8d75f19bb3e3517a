"""Committed checkpoints only: torn/corrupt ones are skipped, nothing committed is lost."""
from __future__ import annotations

import json
import os

import pytest
import torch

from raytrainer import checkpoint as ckpt
from raytrainer import storage
from raytrainer.checkpoint.async_save import AsyncCheckpointError
from raytrainer.hooks import Hook
from raytrainer.runner import Runner

from ..runner.helpers import runner_kwargs


def _run(work_dir, iters=60, interval=20, **overrides):
    hooks = dict(checkpoint=dict(type="CheckpointHook", by_epoch=False, interval=interval,
                                 **overrides.pop("checkpoint", {})))
    runner = Runner(**runner_kwargs(work_dir, iters=iters, val=False, default_hooks=hooks,
                                    **overrides))
    runner.train()
    return runner


def _names(root):
    return [os.path.basename(x) for x in ckpt.list_checkpoints(root)]


@pytest.fixture()
def three_checkpoints(storage_root):
    work_dir = storage.join(storage_root, "run")
    _run(work_dir)
    root = storage.join(work_dir, "checkpoints")
    assert _names(root) == ["iter_20", "iter_40", "iter_60"]
    return work_dir, root


def _damage(root, name, how):
    location = storage.join(root, name)
    if how == "no_commit":
        storage.remove(storage.join(location, ckpt.COMMIT_FILE))
        return "commit.json is missing"
    if how == "truncated_shard":
        data = storage.read_bytes(storage.join(location, ckpt.MODEL_FILE))
        storage.write_bytes(storage.join(location, ckpt.MODEL_FILE), data[: len(data) // 2])
        return "model.pt has"
    if how == "corrupt_meta":
        data = bytearray(storage.read_bytes(storage.join(location, ckpt.META_FILE)))
        data[5:9] = b"\x00!!\x00"
        storage.write_bytes(storage.join(location, ckpt.META_FILE), bytes(data))
        return "meta.json is corrupt"
    if how == "corrupt_optimizer":  # same size: only the CRC-32 shows it
        data = bytearray(storage.read_bytes(storage.join(location, ckpt.OPTIMIZER_FILE)))
        data[-200:-100] = bytes(100)
        storage.write_bytes(storage.join(location, ckpt.OPTIMIZER_FILE), bytes(data))
        return "optimizer.pt is corrupt"
    raise ValueError(how)


@pytest.mark.parametrize("how", ["no_commit", "truncated_shard", "corrupt_meta",
                                 "corrupt_optimizer"])
def test_damaged_latest_is_skipped_and_the_previous_one_resumed(three_checkpoints, how, capsys):
    work_dir, root = three_checkpoints
    reason = _damage(root, "iter_60", how)
    resumed = _run(work_dir, iters=80, resume=True)
    assert resumed.resumed_from == storage.join(root, "iter_40")
    out = capsys.readouterr().out
    assert "iter_60" in out and reason in out
    assert storage.exists(storage.join(root, "iter_60", ckpt.MODEL_FILE))  # nothing deleted


def test_no_usable_checkpoint_is_an_error_and_deletes_nothing(three_checkpoints):
    work_dir, root = three_checkpoints
    for name in ("iter_20", "iter_40", "iter_60"):
        _damage(root, name, "corrupt_optimizer")
    before = sorted(e["name"] for e in storage.listdir(root))
    with pytest.raises(ckpt.CheckpointError, match="no usable checkpoint in .*nothing was "
                                                   "deleted.*optimizer.pt is corrupt"):
        _run(work_dir, iters=80, resume=True)
    assert sorted(e["name"] for e in storage.listdir(root)) == before


def test_every_file_loads_with_weights_only_and_meta_is_json(three_checkpoints):
    _, root = three_checkpoints
    location = storage.join(root, "iter_40")
    names = {e["name"] for e in storage.listdir(location)}
    assert {"model.pt", "optimizer.pt", "state.pt", "rank_0.pt", "meta.json", "commit.json",
            "rank_0.done.json"} == names
    for name in ("model.pt", "optimizer.pt", "state.pt", "rank_0.pt"):
        import io
        torch.load(io.BytesIO(storage.read_bytes(storage.join(location, name))),
                   weights_only=True)
    meta = json.loads(storage.read_text(storage.join(location, "meta.json")))
    assert (meta["iter"], meta["seed"], meta["world_size"], meta["format_version"]) == \
        (40, 0, 1, 2)
    commit = json.loads(storage.read_text(storage.join(location, "commit.json")))
    assert set(commit["files"]) == names - {"commit.json", "rank_0.done.json"}


def test_max_keep_ckpts_prunes_only_after_a_newer_commit(tmp_path):
    _run(tmp_path, iters=100, checkpoint=dict(max_keep_ckpts=2))
    assert _names(storage.join(str(tmp_path), "checkpoints")) == ["iter_80", "iter_100"]


class BreakSaveAt(Hook):
    """Makes the checkpoint at one iteration unserialisable (a permanent save error)."""

    def __init__(self, iteration):
        self.iteration = iteration

    def before_save_checkpoint(self, runner, checkpoint):
        if checkpoint["meta"]["iter"] == self.iteration:
            checkpoint["broken"] = lambda: None


@pytest.mark.parametrize("async_save", [False, True])
def test_failed_save_is_loud_and_keeps_the_committed_one(tmp_path, async_save):
    error = AsyncCheckpointError if async_save else Exception
    with pytest.raises(error, match="(?i)pickle|lambda"):
        _run(tmp_path, iters=60, custom_hooks=[BreakSaveAt(40)],
             checkpoint=dict(max_keep_ckpts=1, async_save=async_save))
    root = storage.join(str(tmp_path), "checkpoints")
    assert _names(root) == ["iter_20"]  # the only committed checkpoint survives
    assert not ckpt.is_committed(storage.join(root, "iter_40"))


def test_async_save_matches_sync_save(tmp_path):
    schedule = dict(type="LinearLR", start_factor=0.5, by_epoch=False, end=30)
    sync = _run(tmp_path / "sync", param_scheduler=schedule)
    asynchronous = _run(tmp_path / "async", param_scheduler=schedule,
                        checkpoint=dict(async_save=True))
    for name in ("iter_20", "iter_60"):
        a = ckpt.load_checkpoint(storage.join(str(tmp_path / "sync"), "checkpoints", name))
        b = ckpt.load_checkpoint(storage.join(str(tmp_path / "async"), "checkpoints", name))
        for key, value in a["state_dict"].items():
            assert torch.equal(value, b["state_dict"][key])
        assert a["loop"] == b["loop"] and a["param_schedulers"] == b["param_schedulers"]
    assert sync.iter == asynchronous.iter == 60


def test_best_checkpoint_replaces_the_previous_best_after_commit(tmp_path):
    runner = Runner(**runner_kwargs(tmp_path, epochs=3, default_hooks=dict(
        checkpoint=dict(type="CheckpointHook", interval=1, save_best="auto"))))
    runner.train()
    root = storage.join(str(tmp_path), "checkpoints")
    best = [e["name"] for e in storage.listdir(root) if e["name"].startswith("best_")]
    assert len(best) == 1 and best[0].startswith("best_accuracy_top1_epoch_")
    assert runner.message_hub.get_info("best_ckpt") == storage.join(root, best[0])
    assert ckpt.is_committed(storage.join(root, best[0]))
    assert _names(root) == ["epoch_1", "epoch_2", "epoch_3"]  # best_* are not "latest"
