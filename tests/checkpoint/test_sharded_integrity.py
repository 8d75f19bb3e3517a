"""Sharded (DCP) checkpoints load without running code and are checked byte for byte: a crafted
``.metadata`` or non-tensor entry is refused on every load path, a damaged shard fails
``test`` naming the file and both CRC-32s, and a resume falls back past it, locally and on
S3, leaving the older checkpoint as it was."""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import zlib

import pytest
import torch.distributed.checkpoint as dcp

from raytrainer import checkpoint as ckpt
from raytrainer import storage
from raytrainer.checkpoint import sharded
from raytrainer.cli import main

from .sharded_files import (
    CONFIG,
    PROBE,
    craft_build_metadata,
    craft_metadata,
    flip_shard,
    payload,
    redirect_metadata,
    set_recorded_crc,
    train_sharded,
    upload,
)

pytestmark = pytest.mark.slow  # every test here starts processes


@pytest.fixture(scope="module")
def sharded_run(tmp_path_factory):
    """A work_dir with two sharded checkpoints (epoch_1, epoch_2) of the digits MLP."""
    work_dir = str(tmp_path_factory.mktemp("sharded") / "work")
    train_sharded(work_dir)
    return work_dir


def _copy(sharded_run: str, tmp_path) -> str:
    work_dir = str(tmp_path / "work")
    shutil.copytree(sharded_run, work_dir)
    return work_dir


def _resume(work_dir: str) -> list[str]:
    """``train --resume`` that stops right after loading (max_epochs=1: epoch_1 is done)."""
    return ["train", CONFIG, "--launcher", "none", "--work-dir", work_dir, "--resume",
            "--cfg-options", "train_cfg.max_epochs=1"]


def _files(location: str) -> dict[str, bytes]:
    found = {}
    for folder in ("", "dcp"):
        base = storage.join(location, folder) if folder else location
        for entry in storage.listdir(base):
            if entry["type"] == "file":
                found[f"{folder}/{entry['name']}"] = storage.read_bytes(
                    storage.join(base, entry["name"]))
    return found


def test_every_shard_file_is_recorded_with_the_crc32_of_its_bytes(sharded_run):
    for name in ("epoch_1", "epoch_2"):
        location = os.path.join(sharded_run, "checkpoints", name)
        files = ckpt.read_commit(location)["files"]
        shards = {key for key in files if key.startswith("dcp/")}
        assert shards == {"dcp/.metadata", "dcp/__0_0.distcp"}
        for key in shards:
            data = storage.read_bytes(os.path.join(location, key))
            assert files[key] == {"size": len(data), "crc32": zlib.crc32(data)}, key


@pytest.mark.parametrize("path", ["test", "convert", "load_from", "resume"])
def test_a_crafted_metadata_file_runs_no_code_on_any_load_path(sharded_run, tmp_path, capsys,
                                                               path):
    work_dir = _copy(sharded_run, tmp_path)
    location = os.path.join(work_dir, "checkpoints", "epoch_2")
    marker = tmp_path / "payload-ran"
    # its size and CRC-32 recorded too: the records are JSON, anyone who crafts a file can
    crafted = craft_metadata(location, str(marker))
    args = {
        "test": ["test", CONFIG, "--launcher", "none", "--work-dir", str(tmp_path / "eval"),
                 "--checkpoint", location],
        "convert": ["convert", location, str(tmp_path / "weights.pth")],
        "load_from": ["train", CONFIG, "--launcher", "none", "--work-dir",
                      str(tmp_path / "fresh"), "--cfg-options", f"load_from={location}",
                      "train_cfg.max_epochs=1"],
        "resume": _resume(work_dir),
    }[path]
    code = main(args)
    out, err = capsys.readouterr()
    assert not marker.exists()
    refusal = (f"{crafted} is refused (it names builtins.exec, which is not one of DCP's "
               "metadata classes); loading a checkpoint never runs code")
    if path == "resume":  # like any other damage: the checkpoint committed before is used
        assert code == 0, err
        assert f"skipping {location}: {refusal}" in out
        assert f"resumed from {os.path.join(work_dir, 'checkpoints', 'epoch_1')} at epoch 1" \
            in out
    else:
        assert code == 1
        assert f"raytrainer {args[0]} failed: MetadataRefused: {refusal}" in err
        assert not (tmp_path / "weights.pth").exists()


def test_a_metadata_file_that_sets_attributes_on_an_allowed_class_changes_nothing(
        sharded_run, tmp_path, capsys):
    work_dir = _copy(sharded_run, tmp_path)
    location = os.path.join(work_dir, "checkpoints", "epoch_2")
    crafted = craft_build_metadata(location)
    try:
        assert main(["convert", location, str(tmp_path / "weights.pth")]) == 1
        assert not hasattr(pathlib.PosixPath, PROBE)  # refused before anything was set
    finally:
        if hasattr(pathlib.PosixPath, PROBE):
            delattr(pathlib.PosixPath, PROBE)
    assert (f"raytrainer convert failed: MetadataRefused: {crafted} is refused (it sets the "
            "state of a class pathlib.PosixPath, which is not an instance of one of DCP's "
            "metadata classes); loading a checkpoint never runs code") in capsys.readouterr().err
    assert not (tmp_path / "weights.pth").exists()


def test_a_metadata_file_that_points_outside_the_checkpoint_is_not_followed(
        sharded_run, tmp_path, capsys):
    work_dir = _copy(sharded_run, tmp_path)
    location = os.path.join(work_dir, "checkpoints", "epoch_2")
    # the older checkpoint's shard has a name this checkpoint's commit record lists, and the
    # records are made to vouch for its bytes: only where it lies gives it away
    redirect_metadata(location, "../../epoch_1/dcp/__0_0.distcp")
    older = os.path.join(work_dir, "checkpoints", "epoch_1", "dcp", "__0_0.distcp")
    set_recorded_crc(location, "dcp/__0_0.distcp", open(older, "rb").read())
    assert main(["convert", location, str(tmp_path / "weights.pth")]) == 1
    outside = os.path.join(location, "dcp", "../../epoch_1/dcp/__0_0.distcp")
    assert (f"raytrainer convert failed: CheckpointError: {location}/dcp: {outside} is not "
            "inside the checkpoint (its .metadata points outside it)") in capsys.readouterr().err
    assert not (tmp_path / "weights.pth").exists()


def test_a_crafted_non_tensor_entry_in_a_shard_runs_no_code(sharded_run, tmp_path, capsys):
    work_dir = _copy(sharded_run, tmp_path)
    location = os.path.join(work_dir, "checkpoints", "epoch_2")
    marker = tmp_path / "payload-ran"
    # DCP stores non-tensor entries (optimizer hyperparameters) as torch.save bytes
    state = sharded.load_full(location)
    state["optim"]["param_groups"][0]["lr"] = payload(str(marker))
    shutil.rmtree(os.path.join(location, "dcp"))
    dcp.save(state, storage_writer=dcp.FileSystemWriter(os.path.join(location, "dcp")),
             no_dist=True)
    for name in (".metadata", "__0_0.distcp"):
        data = open(os.path.join(location, "dcp", name), "rb").read()
        set_recorded_crc(location, f"dcp/{name}", data)

    assert main(["convert", location, str(tmp_path / "weights.pth")]) == 1
    assert "cannot read the entry 'optim.param_groups.0.lr': Weights only load failed" in \
        capsys.readouterr().err
    assert main(_resume(work_dir)) == 0
    out = capsys.readouterr().out
    assert f"skipping {location}: cannot read the entry 'optim.param_groups.0.lr'" in out
    assert f"resumed from {os.path.join(work_dir, 'checkpoints', 'epoch_1')}" in out
    assert not marker.exists()


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_damaged_shard_fails_test_and_resume_falls_back(sharded_run, tmp_path, capsys,
                                                          request, where):
    if where == "local":
        work_dir = _copy(sharded_run, tmp_path)
    else:
        work_dir = f"{request.getfixturevalue('s3_bucket')}/work"
        upload(sharded_run, work_dir)
    root = storage.join(work_dir, "checkpoints")
    older, damaged = storage.join(root, "epoch_1"), storage.join(root, "epoch_2")
    older_files = _files(older)
    expected = ckpt.read_commit(damaged)["files"]["dcp/__0_0.distcp"]["crc32"]
    shard = flip_shard(damaged)  # 4096 bytes, same size: the size check passes
    actual = zlib.crc32(storage.read_bytes(shard))
    corrupt = (f"{storage.describe(shard)} is corrupt: its CRC-32 is {actual:#010x}, the "
               f"commit record says {expected:#010x}")

    code = main(["test", CONFIG, "--launcher", "none", "--work-dir", str(tmp_path / "eval"),
                 "--checkpoint", damaged])
    assert code == 1
    assert f"raytrainer test failed: ShardChecksumError: {corrupt}" in capsys.readouterr().err

    assert main(_resume(work_dir)) == 0
    out = capsys.readouterr().out
    assert f"skipping {storage.describe(damaged)}: {corrupt}" in out
    assert f"resumed from {storage.describe(older)} at epoch 1, iter 45" in out
    assert _files(older) == older_files  # untouched
    assert storage.exists(shard) and ckpt.is_committed(damaged)  # nothing deleted


def test_a_shard_file_its_commit_record_does_not_list_is_not_read(sharded_run, tmp_path,
                                                                  capsys):
    work_dir = _copy(sharded_run, tmp_path)
    location = os.path.join(work_dir, "checkpoints", "epoch_2")
    commit = os.path.join(location, ckpt.COMMIT_FILE)
    record = json.loads(open(commit).read())
    del record["files"]["dcp/__0_0.distcp"]  # .metadata still points DCP at it
    open(commit, "w").write(json.dumps(record))
    assert main(["convert", location, str(tmp_path / "weights.pth")]) == 1
    assert f"{location}/dcp/__0_0.distcp is not a file of the checkpoint (its commit record " \
        "does not list it)" in capsys.readouterr().err
    assert not (tmp_path / "weights.pth").exists()
