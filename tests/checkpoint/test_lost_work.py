"""Committed work is never lost to a later run: a resume that can use no checkpoint fails and
leaves them alone, and a new run never replaces another run's committed checkpoint."""
from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from raytrainer import checkpoint as ckpt
from raytrainer import storage
from raytrainer.hooks import Hook
from raytrainer.runner import Runner

from ..runner.helpers import runner_kwargs
from ..test_cli import run_cli

_QUICK = ("--cfg-options", "train_cfg.max_epochs=2", "train_cfg.val_interval=2",
          "default_hooks.logger.interval=50")


def _snapshot(root) -> dict[str, bytes]:
    files = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            files[os.path.relpath(path, root)] = open(path, "rb").read()
    return files


@pytest.fixture(scope="module")
def all_truncated(tmp_path_factory):
    """A work_dir whose every committed checkpoint has a truncated ``model.pt``."""
    work_dir = tmp_path_factory.mktemp("truncated")
    trained = run_cli("train", "configs/digits/mlp.py", "--launcher", "none",
                      "--work-dir", str(work_dir), *_QUICK)
    assert trained.returncode == 0, trained.stderr
    root = work_dir / "checkpoints"
    names = sorted(os.listdir(root))
    assert names == ["epoch_1", "epoch_2"]
    for name in names:
        model = root / name / ckpt.MODEL_FILE
        model.write_bytes(model.read_bytes()[:100])
    return work_dir, names


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["none", "ray"])
def test_resume_with_only_unreadable_checkpoints_fails_and_keeps_them(all_truncated, launcher):
    # On Ray the driver decides the resume point, before any Ray instance is started.
    work_dir, names = all_truncated
    root = work_dir / "checkpoints"
    before = _snapshot(root)
    result = run_cli("train", "configs/digits/mlp.py", "--launcher", launcher,
                     "--work-dir", str(work_dir), "--resume", *_QUICK)
    assert result.returncode == 1, result.stdout
    assert "holds 2 committed checkpoint(s) but none is usable" in result.stderr
    for name in names:
        assert f"{root / name}: {root / name}: model.pt has" in result.stderr
    assert "Nothing was deleted or overwritten" in result.stderr
    assert "training from scratch" not in result.stdout + result.stderr
    assert "started a local Ray instance" not in result.stdout
    assert _snapshot(root) == before


@pytest.mark.slow
def test_resume_with_an_unreadable_newest_falls_back_to_the_older_one(tmp_path):
    work_dir = str(tmp_path)
    Runner(**runner_kwargs(work_dir, epochs=2, val=False)).train()
    root = storage.join(work_dir, "checkpoints")
    model = os.path.join(root, "epoch_2", ckpt.MODEL_FILE)
    with open(model, "r+b") as f:
        f.truncate(100)
    resumed = Runner(**runner_kwargs(work_dir, epochs=3, val=False, resume=True))
    resumed.train()
    assert resumed.resumed_from == storage.join(root, "epoch_1")


class FailAfterFirstEpoch(Hook):
    """Fails the run right after its first checkpoint (like a bad first validation)."""

    priority = "LOWEST"

    def after_train_epoch(self, runner) -> None:
        raise RuntimeError("the first validation failed")


@pytest.mark.slow
def test_a_new_run_never_replaces_another_runs_checkpoint_of_the_same_name(tmp_path):
    work_dir = str(tmp_path)
    root = storage.join(work_dir, "checkpoints")
    first = Runner(**runner_kwargs(work_dir, epochs=2, val=False))
    first.train()
    before = _snapshot(root)
    # A run's lineage is its timestamp (one-second resolution): start the next run in the
    # next second, as any run that trains for longer than a second does.
    time.sleep(1.05 - time.time() % 1)

    failing = Runner(**runner_kwargs(work_dir, epochs=2, val=False,
                                     custom_hooks=[FailAfterFirstEpoch()]))
    with pytest.raises(RuntimeError, match="the first validation failed"):
        failing.train()
    lineage = failing.checkpoints.lineage
    assert storage.exists(storage.join(root, f"epoch_1-{lineage}", ckpt.COMMIT_FILE))
    assert {k: v for k, v in _snapshot(root).items() if k in before} == before

    hooks = dict(checkpoint=dict(type="CheckpointHook", interval=1, max_keep_ckpts=1))
    time.sleep(1.05 - time.time() % 1)
    second = Runner(**runner_kwargs(work_dir, epochs=2, val=False, default_hooks=hooks))
    second.train()
    own = [os.path.basename(x)
           for x in ckpt.list_checkpoints(root, lineage=second.checkpoints.lineage)]
    assert own == [f"epoch_2-{second.checkpoints.lineage}"]  # retention holds for suffixed names
    assert {k: v for k, v in _snapshot(root).items() if k in before} == before

    resumed = Runner(**runner_kwargs(work_dir, epochs=3, val=False, resume=True))
    resumed.train()  # resume=True continues the most recent commit, whatever its name
    assert resumed.resumed_from == storage.join(root, f"epoch_2-{second.checkpoints.lineage}")
    assert resumed.checkpoints.lineage == second.checkpoints.lineage
    last = resumed.message_hub.get_info("last_ckpt")
    assert last == storage.join(root, "epoch_3")  # a free name needs no suffix
    assert {k: v for k, v in _snapshot(root).items() if k in before} == before

    tested = run_cli("test", "configs/digits/mlp.py", "--launcher", "none", "--work-dir",
                     str(tmp_path / "test"), "--cfg-options", "model.hidden_dims=[32]",
                     "--checkpoint", storage.join(root, f"epoch_2-{second.checkpoints.lineage}"))
    assert tested.returncode == 0, tested.stderr
    assert "test accuracy/top1:" in tested.stdout


@pytest.fixture(scope="module")
def commits_deleted(tmp_path_factory):
    """A work_dir of two intact checkpoints whose every ``commit.json`` was deleted."""
    work_dir = tmp_path_factory.mktemp("uncommitted")
    trained = run_cli("train", "configs/digits/mlp.py", "--launcher", "none",
                      "--work-dir", str(work_dir), *_QUICK)
    assert trained.returncode == 0, trained.stderr
    root = work_dir / "checkpoints"
    names = sorted(os.listdir(root))
    assert names == ["epoch_1", "epoch_2"]
    for name in names:
        (root / name / ckpt.COMMIT_FILE).unlink()
    return work_dir, names


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["none", "ray"])
def test_resume_with_only_checkpoints_that_lost_their_commit_fails_and_keeps_them(
        commits_deleted, launcher):
    work_dir, names = commits_deleted
    root = work_dir / "checkpoints"
    before = _snapshot(root)
    result = run_cli("train", "configs/digits/mlp.py", "--launcher", launcher,
                     "--work-dir", str(work_dir), "--resume", *_QUICK)
    assert result.returncode == 1, result.stdout
    assert "holds 2 checkpoint(s) without commit.json but none is usable" in result.stderr
    for name in names:
        assert f"{root / name}: commit.json is missing but every file of the checkpoint is " \
            "there" in result.stderr
    assert "training from scratch" not in result.stdout + result.stderr
    assert "starting a new run" not in result.stdout + result.stderr
    assert _snapshot(root) == before


def test_a_fresh_run_writes_beside_checkpoints_that_lost_their_commit(tmp_path):
    work_dir = str(tmp_path)
    root = storage.join(work_dir, "checkpoints")
    Runner(**runner_kwargs(work_dir, epochs=2, val=False, timestamp="20200101_000000")).train()
    lost = os.path.join(root, "epoch_2")
    storage.remove(storage.join(lost, ckpt.COMMIT_FILE))
    before = _snapshot(lost)
    for timestamp in ("20200101_000000", "20200101_000001"):  # the same lineage, or another
        fresh = Runner(**runner_kwargs(work_dir, epochs=2, val=False, timestamp=timestamp))
        fresh.train()
        assert _snapshot(lost) == before
        assert fresh.message_hub.get_info("last_ckpt") == \
            storage.join(root, f"epoch_2-{fresh.checkpoints.lineage}")
        assert ckpt.is_committed(storage.join(root, f"epoch_2-{fresh.checkpoints.lineage}"))


def _unfinished_save(root, source, name, lineage=None, meta=True):
    """Leave ``root/name`` as a save that crashed: ``source``'s files without its commit
    record and rank 0's marker; its ``meta.json`` names ``lineage`` if given."""
    target = os.path.join(root, name)
    shutil.copytree(os.path.join(root, source), target)
    os.remove(os.path.join(target, ckpt.COMMIT_FILE))
    os.remove(os.path.join(target, ckpt.done_file(0)))
    meta_path = os.path.join(target, ckpt.META_FILE)
    if not meta:
        os.remove(meta_path)
    elif lineage is not None:
        meta = json.loads(open(meta_path).read())
        meta["lineage"] = lineage
        open(meta_path, "w").write(json.dumps(meta))
    return target


@pytest.mark.parametrize("owner", ["this lineage", "another lineage", "unknown", "a file"])
def test_an_unfinished_save_is_replaced_only_if_this_lineage_left_it(tmp_path, owner, capsys):
    work_dir = str(tmp_path)
    root = storage.join(work_dir, "checkpoints")
    first = Runner(**runner_kwargs(work_dir, epochs=2, val=False, timestamp="20200101_000000"))
    first.train()
    lineage = first.checkpoints.lineage
    # the resumed run crashed while saving epoch_3 (or another run left files there)
    if owner == "a file":
        target = os.path.join(root, "epoch_3")
        open(target, "w").write("notes")
    else:
        target = _unfinished_save(root, "epoch_2", "epoch_3", lineage="20990101_000000"
                                  if owner == "another lineage" else None,
                                  meta=owner != "unknown")
    left = open(target).read() if owner == "a file" else _snapshot(target)
    capsys.readouterr()
    resumed = Runner(**runner_kwargs(work_dir, epochs=3, val=False, resume=True))
    resumed.train()
    assert resumed.resumed_from == storage.join(root, "epoch_2")
    last = resumed.message_hub.get_info("last_ckpt")
    if owner == "this lineage":  # a crashed save of the run: replaced, as before
        assert last == target
        assert sorted(os.listdir(root)) == ["epoch_1", "epoch_2", "epoch_3"]
    else:
        assert last == storage.join(root, f"epoch_3-{lineage}")
        assert (open(target).read() if owner == "a file" else _snapshot(target)) == left
        reason = {"another lineage": "it holds files of an unfinished save of another run "
                                     "(20990101_000000)",
                  "unknown": "it holds files but no readable meta.json",
                  "a file": "it is a file, not a checkpoint directory"}[owner]
        assert f"keeping {target} ({reason}" in capsys.readouterr().out
    assert ckpt.is_committed(last)
