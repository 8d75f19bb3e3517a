"""Ranks agree on a load step's outcome: a failure on one rank reaches every rank, named by
rank and of its kind, so all of them raise or fall back together (two real gloo ranks)."""
from __future__ import annotations

import json
import os

import pytest
import torch.distributed as torch_dist
import torch.multiprocessing as mp

from raytrainer.checkpoint import CheckpointError
from raytrainer.checkpoint.agreement import first_failure
from raytrainer.storage.errors import StorageError
from tests.gloo_process import free_port


def _rank(rank: int, port: int, out_dir: str) -> None:
    torch_dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                  world_size=2)
    seen = []
    for failing, error in ((None, None), (1, CheckpointError("rank_1.pt: CRC-32 mismatch")),
                           (0, StorageError("s3://b/ckpt: unreachable")), (1, KeyError("x"))):
        found = first_failure(error if rank == failing else None)
        seen.append(None if found is None else [type(found).__name__, str(found),
                                                found is error])
    torch_dist.destroy_process_group()
    with open(os.path.join(out_dir, f"{rank}.json"), "w") as f:
        json.dump(seen, f)


@pytest.mark.slow
def test_a_failure_on_one_rank_reaches_every_rank(tmp_path):
    mp.spawn(_rank, args=(free_port(), str(tmp_path)), nprocs=2)
    seen = [json.loads((tmp_path / f"{rank}.json").read_text()) for rank in (0, 1)]
    assert seen[0] == [None, ["CheckpointError", "rank 1: rank_1.pt: CRC-32 mismatch", False],
                       ["StorageError", "s3://b/ckpt: unreachable", True],
                       ["RuntimeError", "rank 1: 'x'", False]]
    assert seen[1] == [None, ["CheckpointError", "rank_1.pt: CRC-32 mismatch", True],
                       ["StorageError", "rank 0: s3://b/ckpt: unreachable", False],
                       ["KeyError", "'x'", True]]


def test_one_process_keeps_its_own_outcome():
    error = CheckpointError("damaged")
    assert first_failure(error) is error
    assert first_failure(None) is None
