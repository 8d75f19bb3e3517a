"""The checkpoint format's own writing and reading: records match the stored bytes on every
backend, and the local fast paths (``torch.save`` into the file, ``torch.load`` of the path with
the CRC-32 computed beside it) still catch every kind of damage."""
from __future__ import annotations

import json
import os
import struct

import pytest
import torch

from raytrainer import checkpoint as ckpt
from raytrainer import storage
from raytrainer.checkpoint import envelope, full_state

from ..gloo_process import run_in_gloo_process

# 0.5 MiB and 2 MiB float32 tensors: chunks below and above the threaded-CRC threshold
_BIG = 1 << 19


def _checkpoint() -> dict:
    weights = {"w": torch.arange(_BIG, dtype=torch.float32), "b": torch.ones(3)}
    return {"meta": {"iter": 7, "epoch": 1, "seed": 0},
            "state_dict": weights,
            "optimizer": {"state": {0: {"momentum_buffer": torch.full((_BIG // 4,), 0.5)}},
                          "param_groups": [{"lr": 0.1, "params": [0]}]},
            "loop": {"iter": 7, "history": [0.5] * 100},
            ckpt.RANK_STATE_KEY: {"generator": torch.Generator().manual_seed(3).get_state()}}


def _write_rank_files(location: str, checkpoint: dict) -> None:
    """Rank 0's files and its done marker, as the checkpoint manager writes them."""
    records = full_state.write_rank_files(location, checkpoint, rank=0)
    envelope.write_done_marker(location, 0, records)


def _save(location: str) -> dict:
    checkpoint = _checkpoint()
    _write_rank_files(location, checkpoint)
    ckpt.commit(location, world_size=1)
    return checkpoint


def test_records_match_the_stored_files_and_everything_round_trips(storage_root):
    location = storage.join(storage_root, "iter_7")
    saved = _save(location)
    files = ckpt.read_commit(location)["files"]
    assert set(files) == {ckpt.MODEL_FILE, ckpt.OPTIMIZER_FILE, ckpt.STATE_FILE,
                          ckpt.rank_file(0), ckpt.META_FILE}
    for name, info in files.items():
        assert storage.file_crc32(storage.join(location, name)) == (info["size"], info["crc32"])
    names = {entry["name"] for entry in storage.listdir(location)}
    assert names == set(files) | {ckpt.COMMIT_FILE, ckpt.done_file(0)}  # no temporary files
    loaded = ckpt.load_checkpoint(location)
    assert torch.equal(loaded["state_dict"]["w"], saved["state_dict"]["w"])
    assert torch.equal(loaded["optimizer"]["state"][0]["momentum_buffer"],
                       saved["optimizer"]["state"][0]["momentum_buffer"])
    assert loaded["loop"] == saved["loop"]
    assert torch.equal(loaded[ckpt.RANK_STATE_KEY]["generator"],
                       saved[ckpt.RANK_STATE_KEY]["generator"])
    assert loaded["meta"]["iter"] == 7 and loaded["meta"]["format_version"] == 2
    assert set(ckpt.load_checkpoint(location, weights_only=True)) == {"meta", "state_dict"}


def _overwrite(path: str, offset: int, data: bytes) -> None:
    """Change bytes in place, keeping the size (what a bit flip on disk does)."""
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def test_local_crc_mismatch_with_the_right_size_is_detected_on_load(tmp_path):
    location = str(tmp_path / "iter_7")
    _save(location)
    path = os.path.join(location, ckpt.MODEL_FILE)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        offset = f.read().find(struct.pack("<f", 1000.0))  # inside the tensor data of "w"
    assert offset > 0
    _overwrite(path, offset, struct.pack("<f", -1.0))
    assert os.path.getsize(path) == size
    assert torch.load(path, weights_only=True)["state_dict"]["w"][1000] == -1  # parses fine
    ckpt.read_commit(location)  # sizes still match the record
    with pytest.raises(ckpt.CheckpointError,
                       match=r"iter_7: model\.pt is corrupt \(size/CRC-32 differ from the "
                             r"commit record\)"):
        ckpt.load_checkpoint(location)


def test_a_damaged_file_that_does_not_parse_is_reported_as_corrupt(storage_root):
    location = storage.join(storage_root, "iter_7")
    _save(location)
    target = storage.join(location, ckpt.OPTIMIZER_FILE)
    data = storage.read_bytes(target)
    storage.write_bytes(target, bytes(len(data)))  # same size, nothing left of the archive
    with pytest.raises(ckpt.CheckpointError, match=r"optimizer\.pt is corrupt"):
        ckpt.load_checkpoint(location)


def test_a_file_that_does_not_parse_but_matches_its_record_is_unreadable(tmp_path):
    location = str(tmp_path / "iter_7")
    _save(location)
    garbage = b"not a torch archive"
    storage.write_bytes(os.path.join(location, ckpt.STATE_FILE), garbage)
    commit_path = os.path.join(location, ckpt.COMMIT_FILE)
    record = json.loads(storage.read_text(commit_path))
    size, crc = storage.file_crc32(os.path.join(location, ckpt.STATE_FILE))
    record["files"][ckpt.STATE_FILE] = {"size": size, "crc32": crc}
    storage.write_text(commit_path, json.dumps(record))
    with pytest.raises(ckpt.CheckpointError, match=r"cannot read .*iter_7/state\.pt"):
        ckpt.load_checkpoint(location)


def test_a_failed_local_save_leaves_no_temporary_file(tmp_path):
    location = str(tmp_path / "iter_7")
    checkpoint = _checkpoint()
    checkpoint["broken"] = lambda: None  # state.pt cannot be pickled
    with pytest.raises(Exception, match="(?i)pickle|lambda"):
        _write_rank_files(location, checkpoint)
    assert not [name for name in os.listdir(location) if name.endswith(".tmp")]
    assert not ckpt.is_committed(location)


def test_a_failed_upload_save_raises_and_commits_nothing(memory_root):
    location = storage.join(memory_root, "iter_7")
    checkpoint = _checkpoint()
    checkpoint["optimizer"] = {"step": lambda: None}
    with pytest.raises(Exception, match="(?i)pickle|lambda"):
        _write_rank_files(location, checkpoint)
    assert not storage.exists(storage.join(location, ckpt.done_file(0)))


def test_commit_waits_for_every_rank_and_names_the_missing_one(tmp_path):
    location = str(tmp_path / "iter_7")
    _write_rank_files(location, _checkpoint())
    with pytest.raises(ckpt.CheckpointError, match="rank 1 did not finish writing within 0 s"):
        ckpt.commit(location, world_size=2, timeout=0.2, poll=0.05)
    assert not ckpt.is_committed(location)


def test_single_file_checkpoints_load_from_local_paths_and_urls(storage_root):
    location = storage.join(storage_root, "weights.pth")
    with storage.open_output_stream(location) as f:
        torch.save({"w": torch.ones(2)}, f)
    loaded = ckpt.load_checkpoint(location)
    assert torch.equal(loaded["state_dict"]["w"], torch.ones(2)) and loaded["meta"] == {}


def test_other_ranks_snapshot_only_what_they_write(tmp_path):
    checkpoint = _checkpoint()
    assert full_state.rank_share(checkpoint, 0) is checkpoint
    share = full_state.rank_share(checkpoint, 1)
    assert set(share) == {"meta", ckpt.RANK_STATE_KEY}  # no model, optimizer or loop state
    records = full_state.write_rank_files(str(tmp_path), share, rank=1)
    assert set(records) == {full_state.rank_file(1)}
    assert sorted(os.listdir(tmp_path)) == [full_state.rank_file(1)]


def _sharded_tensor_errors(location: str) -> list[str]:
    """In a one-rank gloo process: the errors for a DTensor in the model state, per rank."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Replicate

    mesh = init_device_mesh("cpu", (1,))
    checkpoint = _checkpoint()
    checkpoint["state_dict"]["w"] = DTensor.from_local(torch.ones(4), mesh, [Replicate()])
    errors = []
    for attempt in (lambda: full_state.write_rank_files(location, checkpoint, 0),
                    lambda: full_state.rank_share(checkpoint, 1)):
        try:
            attempt()
        except ckpt.CheckpointError as exc:
            errors.append(str(exc))
    return errors


@pytest.mark.slow
def test_a_sharded_tensor_is_refused_on_every_rank(tmp_path):
    errors = run_in_gloo_process(_sharded_tensor_errors, str(tmp_path))
    assert len(errors) == 2
    for error in errors:
        assert "checkpoint entry 'model.pt.state_dict.w' is a sharded tensor (DTensor)" in error
    assert os.listdir(tmp_path) == []  # nothing written
