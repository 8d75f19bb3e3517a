"""Nothing outside the run is deleted: checkpoint references are names in the run's checkpoint
folder, and every deletion is refused unless it is a committed checkpoint of the run's lineage
directly in that folder (never a link, never ``folder/../x``)."""
from __future__ import annotations

import os
import shutil

import pytest

from raytrainer import checkpoint as ckpt
from raytrainer import storage
from raytrainer.hooks import Hook
from raytrainer.runner import Runner

from ..runner.helpers import runner_kwargs
from ..test_cli import ROOT, run_cli

_SCORES = {1: 1.0, 2: 0.5, 3: 2.0}  # epoch 1 is the best until epoch 3 beats it


class ScriptedScore(Hook):
    """Puts ``score`` into the validation metrics (before the CheckpointHook sees them): the
    best checkpoint is that of epoch 1 until epoch 3 replaces it."""

    priority = "HIGHEST"

    def after_val_epoch(self, runner, metrics=None) -> None:
        metrics["score"] = _SCORES[runner.epoch]


class StoreReferencesAsPaths(Hook):
    """Stores the checkpoint references of every saved message hub as paths in the folder that
    wrote them, as checkpoints written before references were names did."""

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        info = checkpoint["message_hub"]["runtime_info"]
        for key in ("best_ckpt", "last_ckpt"):
            if key in info:
                info[key] = storage.join(runner.checkpoints.directory, info[key])


class StoreReference(Hook):
    """Stores ``best_ckpt`` as ``reference`` in every saved message hub (a crafted checkpoint)."""

    def __init__(self, reference: str):
        self.reference = reference

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint["message_hub"]["runtime_info"]["best_ckpt"] = self.reference


def _snapshot(root) -> dict[str, bytes]:
    files = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            files[os.path.relpath(path, root)] = open(path, "rb").read()
    return files


def _train(work_dir, epochs, hooks=(), **overrides):
    checkpoint = dict(type="CheckpointHook", interval=1, save_best="score", rule="greater")
    runner = Runner(**runner_kwargs(work_dir, epochs=epochs, custom_hooks=[ScriptedScore(),
                                                                          *hooks],
                                    default_hooks=dict(checkpoint=checkpoint), **overrides))
    runner.train()
    return runner


def _victim(tmp_path):
    victim = tmp_path / "victim"
    (victim / "data").mkdir(parents=True)
    (victim / "data" / "precious.bin").write_bytes(b"not yours" * 100)
    return victim


def test_a_crafted_best_path_outside_the_folder_is_never_deleted(tmp_path, capsys):
    victim = _victim(tmp_path)
    before = _snapshot(victim)
    work_dir = tmp_path / "run"
    root = os.path.join(str(work_dir), "checkpoints")
    crafted = f"{root}/../../victim"
    _train(work_dir, 2, hooks=[StoreReference(crafted)])
    capsys.readouterr()
    # epoch 3's score is a new best: the previous best (the crafted path) would be deleted
    resumed = _train(work_dir, 3, resume=True)
    assert resumed.message_hub.get_info("best_ckpt") == storage.join(root, "best_score_epoch_3")
    assert _snapshot(victim) == before
    out = capsys.readouterr().out
    assert f"message hub best_ckpt={crafted!r} is a path outside this run's checkpoint " \
        f"folder; taken as {storage.join(root, 'victim')}" in out
    # (the crafted reference stood for the best of epoch 1, which stays)
    assert sorted(os.listdir(root)) == ["best_score_epoch_1", "best_score_epoch_3", "epoch_1",
                                        "epoch_2", "epoch_3"]


def test_deletions_outside_the_folder_or_of_another_lineage_are_refused(tmp_path, capsys):
    victim = _victim(tmp_path)
    work_dir = tmp_path / "run"
    root = os.path.join(str(work_dir), "checkpoints")
    runner = _train(work_dir, 2)
    other = tmp_path / "other"
    shutil.copytree(work_dir, other)  # the same lineage, in another folder
    watched = (victim, other, work_dir / "checkpoints")
    before = [_snapshot(folder) for folder in watched]
    for location in (f"{root}/../../victim", str(victim), f"{root}/../../other/checkpoints/"
                     "epoch_1", str(other / "checkpoints" / "epoch_1"), root, f"{root}/."):
        assert not runner.checkpoints.delete(location)
        assert f"refusing to delete {location}: it is not a direct child of the run's " \
            f"checkpoint folder {root}" in capsys.readouterr().out
    # a folder entry that is not a committed checkpoint of this lineage is kept, too
    (tmp_path / "run" / "checkpoints" / "notes").mkdir()
    assert not runner.checkpoints.delete(os.path.join(root, "notes"))
    assert "it is not a committed checkpoint" in capsys.readouterr().out
    assert not ckpt.delete_checkpoint(os.path.join(root, "epoch_1"), root, lineage="2099")
    assert f"it is a checkpoint of another run ({runner.checkpoints.lineage})" in \
        capsys.readouterr().out
    (tmp_path / "run" / "checkpoints" / "notes").rmdir()
    assert [_snapshot(folder) for folder in watched] == before
    assert runner.checkpoints.delete(os.path.join(root, "epoch_1"))
    assert sorted(os.listdir(root)) == ["best_score_epoch_1", "epoch_2"]


def test_a_symlinked_checkpoint_folder_entry_never_has_its_target_deleted(tmp_path, capsys):
    work_dir = tmp_path / "run"
    root = work_dir / "checkpoints"
    first = _train(work_dir, 2)
    lineage = first.checkpoints.lineage
    # The best moved to an archive and linked back; an archived checkpoint of the lineage
    # linked in as epoch_3.
    archive = tmp_path / "archive"
    archive.mkdir()
    shutil.move(str(root / "best_score_epoch_1"), str(archive / "best_score_epoch_1"))
    os.symlink(archive / "best_score_epoch_1", root / "best_score_epoch_1")
    shutil.copytree(root / "epoch_2", archive / "kept")
    os.symlink(archive / "kept", root / "epoch_3")
    before = _snapshot(archive)
    capsys.readouterr()
    # resumed from epoch_2: its epoch_3 save meets a link, and its epoch 3 best replaces the
    # (linked) best of epoch 1
    resumed = _train(work_dir, 3, resume=True)
    assert resumed.resumed_from == str(root / "epoch_2")
    assert _snapshot(archive) == before
    out = capsys.readouterr().out
    assert f"refusing to delete {root / 'epoch_3'}: it is a link" in out
    assert f"refusing to delete {root / 'best_score_epoch_1'}: it is a link" in out
    assert sorted(os.listdir(root)) == ["best_score_epoch_1", "best_score_epoch_3", "epoch_1",
                                        "epoch_2", "epoch_3", f"epoch_3-{lineage}"]
    assert os.path.islink(root / "epoch_3") and os.path.islink(root / "best_score_epoch_1")
    assert ckpt.is_committed(str(root / f"epoch_3-{lineage}"))


def _copy_config(tmp_path, references: str) -> str:
    hooks = ["dict(type='tests.checkpoint.test_deletion_safety.ScriptedScore')"]
    if references == "paths":
        hooks.append("dict(type='tests.checkpoint.test_deletion_safety.StoreReferencesAsPaths')")
    path = tmp_path / "mlp_best.py"
    path.write_text(f"_base_ = [{os.path.join(ROOT, 'configs/digits/mlp.py')!r}]\n"
                    f"custom_hooks = [{', '.join(hooks)}]\n"
                    "default_hooks = dict(checkpoint=dict(save_best='score', rule='greater'))\n"
                    "train_cfg = dict(val_interval=1)\n")
    return str(path)


@pytest.mark.slow
def test_resuming_a_copied_work_dir_leaves_the_original_byte_identical(tmp_path):
    for references in ("names", "paths"):  # paths: checkpoints written before names
        config = _copy_config(tmp_path, references)
        orig, copy = tmp_path / f"orig-{references}", tmp_path / f"copy-{references}"
        trained = run_cli("train", config, "--launcher", "none", "--work-dir", str(orig),
                          "--cfg-options", "train_cfg.max_epochs=2")
        assert trained.returncode == 0, trained.stderr
        assert "best_score_epoch_1" in os.listdir(orig / "checkpoints")
        shutil.copytree(orig, copy, symlinks=True)  # cp -r orig copy
        before = _snapshot(orig)
        resumed = run_cli("train", config, "--launcher", "none", "--work-dir", str(copy),
                          "--resume", "--cfg-options", "train_cfg.max_epochs=3")
        assert resumed.returncode == 0, resumed.stderr
        assert _snapshot(orig) == before
        # the copy's own previous best was the one replaced
        assert sorted(os.listdir(copy / "checkpoints")) == [
            "best_score_epoch_3", "epoch_1", "epoch_2", "epoch_3"]
        expected = str(copy / "checkpoints" / "best_score_epoch_3")
        assert f"best checkpoint: {expected}" in resumed.stdout


@pytest.mark.slow
def test_a_best_reference_to_another_runs_checkpoint_never_deletes_it(tmp_path, capsys):
    work_dir = tmp_path / "run"
    root = work_dir / "checkpoints"
    Runner(**runner_kwargs(work_dir, epochs=1, val=False, timestamp="20990101_000000")).train()
    other = _snapshot(root / "epoch_1")
    # this run's saved best names epoch_1, which is the other run's
    _train(work_dir, 2, hooks=[StoreReference(str(root / "epoch_1"))], timestamp="20200101_000000")
    capsys.readouterr()
    _train(work_dir, 3, resume=True)
    assert _snapshot(root / "epoch_1") == other
    assert f"refusing to delete {root / 'epoch_1'}: it is a checkpoint of another run " \
        "(20990101_000000)" in capsys.readouterr().out
