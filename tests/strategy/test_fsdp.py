"""FSDPStrategy on real gloo ranks: it trains as DDP does, its sharded (DCP) checkpoints resume on
other world sizes with the saved state, load in one process, convert to one file, survive a
torn shard on S3; DDP's full-state checkpoints reshard the same way."""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys

import pytest
import torch

from raytrainer import checkpoint as ckpt
from raytrainer import storage
from raytrainer.dataset import DefaultSampler
from raytrainer.runner import Runner
from tests.runner.helpers import digits_loader

from .fsdp_ranks import BlockClassifier, spawn

pytestmark = pytest.mark.slow  # every test here starts processes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_SAMPLES = 1437  # the digits train split
BATCH = 32
LR = 0.01
SCALE_LR = dict(enable=True, base_batch_size=BATCH)  # lr x world size


def _close(a: dict, b: dict, atol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=atol), (key, (a[key] - b[key]).abs().max())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """2-rank FSDP and DDP runs of one epoch, checkpointing every 10 iterations."""
    root = tmp_path_factory.mktemp("fsdp")
    found = {}
    for kind in ("fsdp", "ddp"):
        case = dict(strategy=kind, work_dir=str(root / kind), interval=10, by_epoch=False,
                    probe_guard=kind == "fsdp", auto_scale_lr=SCALE_LR)
        found[kind] = spawn(2, case, str(root / f"out_{kind}"))
        found[kind]["work_dir"] = str(root / kind)
    return found


def test_each_fsdp_rank_logs_the_share_of_the_model_it_holds(runs):
    logs = os.path.join(runs["fsdp"]["work_dir"], "20260101_000000")
    model = BlockClassifier()
    total = sum(p.numel() for p in model.parameters())
    held = []
    for name in ("20260101_000000.log", "20260101_000000_rank1.log"):
        text = open(os.path.join(logs, name)).read()
        assert f"model BlockClassifier: {total / 1000:.1f} K parameters" in text
        held.append(float(text.split("this rank holds ")[1].split(" K of them")[0]))
    assert sum(held) == pytest.approx(total / 1000, abs=0.15)  # the two shards make the model


def test_fsdp_trains_like_ddp(runs):
    fsdp, ddp = runs["fsdp"], runs["ddp"]
    assert fsdp["position"] == ddp["position"] == [1, 23, 0]
    assert fsdp["losses"] == pytest.approx(ddp["losses"], abs=1e-6)
    _close(fsdp["state"]["model"], ddp["state"]["model"])
    checkpoints = ckpt.list_checkpoints(os.path.join(fsdp["work_dir"], "checkpoints"))
    assert [os.path.basename(c) for c in checkpoints] == ["iter_10", "iter_20", "iter_23"]
    record = ckpt.read_commit(checkpoints[-1])
    assert record["layout"] == "sharded"
    # every rank wrote its own shard; the commit record lists both (and DCP's metadata)
    assert {"dcp/.metadata", "dcp/__0_0.distcp", "dcp/__1_0.distcp"} <= set(record["files"])
    assert "model.pt" not in record["files"]
    ddp_record = ckpt.read_commit(os.path.join(ddp["work_dir"], "checkpoints", "iter_23"))
    assert ddp_record["layout"] == "full" and "model.pt" in ddp_record["files"]


def test_mixed_precision_and_accumulation_with_clipping(tmp_path, runs):
    extra = dict(accumulative_counts=2, clip_grad=dict(max_norm=1.0))
    both = {}
    for kind in ("fsdp", "ddp"):
        both[kind] = spawn(2, dict(strategy=kind, work_dir=str(tmp_path / kind),
                                   optim_extra=extra, save_last=False, interval=1000),
                           str(tmp_path / f"out_{kind}"))
    # accumulation + clipping: the same updates, and the logged grad norm is the global one
    assert both["fsdp"]["norms"] and both["fsdp"]["norms"] == \
        pytest.approx(both["ddp"]["norms"], rel=1e-5)
    assert both["fsdp"]["all"][1]["norms"] == pytest.approx(both["fsdp"]["norms"], rel=1e-6)
    _close(both["fsdp"]["state"]["model"], both["ddp"]["state"]["model"], atol=1e-5)
    mixed = spawn(2, dict(strategy="fsdp", work_dir=str(tmp_path / "bf16"), save_last=False,
                          interval=1000, strategy_options=dict(
                              mixed_precision=dict(param_dtype="bfloat16",
                                                   reduce_dtype="float32"))),
                  str(tmp_path / "out_bf16"))
    losses = mixed["losses"]
    assert all(math.isfinite(loss) for loss in losses)
    reference = runs["fsdp"]["losses"]
    assert losses[-1] == pytest.approx(reference[-1], abs=0.1)
    assert losses[-1] < losses[0] - 1.0  # it learns
    assert losses != reference  # bf16 compute is not fp32 compute


@pytest.mark.parametrize("kind", ["fsdp", "ddp"])
@pytest.mark.parametrize("world", [1, 3])
def test_a_two_rank_checkpoint_resumes_on_another_world_size(runs, tmp_path, kind, world):
    saved_at = os.path.join(runs[kind]["work_dir"], "checkpoints", "iter_10")
    saved = ckpt.load_checkpoint(saved_at)
    assert saved["meta"]["world_size"] == 2
    case = dict(strategy=kind, work_dir=str(tmp_path / "work"), resume=saved_at,
                stop_after_load=True, interval=10, by_epoch=False, auto_scale_lr=SCALE_LR)
    loaded = spawn(world, case, str(tmp_path / "out"))
    # auto_scale_lr: the saved lr (factor 2) moves to this world size's factor
    assert saved["optimizer"]["param_groups"][0]["lr"] == pytest.approx(2 * LR)
    assert loaded["lr"] == pytest.approx(world * LR)
    log = open(tmp_path / "work" / "20260101_000000" / "20260101_000000.log").read()
    assert "was saved by 2 rank(s) x 32 samples per batch (effective batch 64); this run has " \
        f"{world} x 32 (effective batch {32 * world})" in log
    assert f"auto_scale_lr: lr factor 2 -> {world}" in log
    _close(loaded["state"]["model"], saved["state_dict"], atol=0)
    optim = loaded["state"]["optim"]["state"]
    if kind == "fsdp":  # stored by parameter name, as loaded
        expected = saved["optimizer"]["state"]
    else:  # optimizer.state_dict(): by position, in the model's parameter order
        names = list(dict(BlockClassifier().named_parameters()))
        expected = {names[index]: value for index, value in saved["optimizer"]["state"].items()}
    assert optim.keys() == expected.keys()
    for name in optim:
        for key in optim[name]:
            assert torch.equal(torch.as_tensor(optim[name][key]),
                               torch.as_tensor(expected[name][key])), (name, key)
    # the epoch continues after the 640 samples two ranks consumed, split over `world` ranks
    left_per_rank = math.ceil((TRAIN_SAMPLES - 10 * BATCH * 2) / world)
    batches = math.ceil(TRAIN_SAMPLES / world / BATCH)
    assert loaded["position"] == [0, 10, batches - math.ceil(left_per_rank / BATCH)]
    if (kind, world) in {("fsdp", 3), ("ddp", 1)}:  # train on to the end of the epoch
        finished = spawn(world, dict(case, stop_after_load=False, timestamp="20260101_000009",
                                     name="continued"), str(tmp_path / "out_finished"))
        assert finished["position"] == [1, 10 + math.ceil(left_per_rank / BATCH), 0]


@pytest.mark.parametrize("saved_world,world", [(2, 3), (2, 1), (1, 2), (3, 2)])
def test_a_mid_epoch_resume_on_another_world_size_visits_every_sample_once(saved_world, world):
    dataset = list(range(96))
    consumed_per_rank = 8 * 3  # eight batches of three on each saving rank
    seen = []
    for rank in range(saved_world):
        sampler = DefaultSampler(dataset, seed=5)
        sampler.rank, sampler.world_size = rank, saved_world
        sampler.num_samples = len(dataset) // saved_world
        sampler.total_size = sampler.num_samples * saved_world
        sampler.set_epoch(2)
        seen += list(sampler)[:consumed_per_rank]
    for rank in range(world):
        sampler = DefaultSampler(dataset, seed=5)
        sampler.rank, sampler.world_size = rank, world
        sampler.set_epoch(2)
        left = sampler.skip_global(consumed_per_rank * saved_world)
        rest = list(sampler)
        assert len(rest) == left
        seen += rest
    assert sorted(seen) == dataset  # nothing repeated, nothing skipped


def test_a_sharded_checkpoint_loads_in_one_process_and_converts_to_one_file(runs, tmp_path):
    saved_at = os.path.join(runs["fsdp"]["work_dir"], "checkpoints", "iter_23")
    runner = Runner(model=dict(type="BlockClassifier"), work_dir=str(tmp_path / "single"),
                    load_from=saved_at, test_dataloader=digits_loader("val", 64, False),
                    test_cfg=dict(), test_evaluator=dict(type="Accuracy"))
    metrics = runner.test()  # one process, no process group
    assert metrics["accuracy/top1"] > 50
    _close(runner.model.state_dict(), runs["fsdp"]["state"]["model"], atol=0)

    output = str(tmp_path / "weights.pth")
    done = subprocess.run([sys.executable, "-m", "raytrainer.cli", "convert", saved_at, output],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "8 tensors" in done.stdout and "sharded checkpoint" in done.stdout
    converted = torch.load(output, weights_only=True)
    plain = BlockClassifier()
    plain.load_state_dict(converted["state_dict"])  # strict: every key, nothing more
    _close(plain.state_dict(), runs["fsdp"]["state"]["model"], atol=0)
    assert converted["meta"]["layout"] == "sharded" and converted["meta"]["world_size"] == 2


def test_a_sharded_tensor_never_reaches_the_full_state_files(runs):
    # rank 0 of the FSDP run tried to write its sharded model state as full-state files
    guard = runs["fsdp"]["guard"]
    assert "'model.pt.state_dict.stem.weight' is a sharded tensor (DTensor)" in guard
    assert "would save this rank's shard only" in guard
    assert "model.pt" not in runs["fsdp"]["guard_files"]


def test_async_sharded_saves_commit_and_resume(tmp_path):
    # also: the model is built on the meta device and each rank materialises its shards
    case = dict(strategy="fsdp", work_dir=str(tmp_path / "work"), interval=10, by_epoch=False,
                async_save=True, strategy_options=dict(meta_init=True))
    first = spawn(2, case, str(tmp_path / "out"))
    assert first["losses"][-1] < first["losses"][0] - 1.0
    root = os.path.join(case["work_dir"], "checkpoints")
    names = [os.path.basename(c) for c in ckpt.list_checkpoints(root)]
    assert names == ["iter_10", "iter_20", "iter_23"]
    saved = ckpt.load_checkpoint(os.path.join(root, "iter_23"))
    _close(saved["state_dict"], first["state"]["model"], atol=0)


def test_a_torn_shard_on_s3_is_skipped_and_the_previous_checkpoint_resumed(
        runs, s3_bucket, tmp_path):
    work_dir = f"{s3_bucket}/fsdp"
    # trained with CPU offload and without resharding after forward: the same weights
    spawn(2, dict(strategy="fsdp", work_dir=work_dir, interval=10, by_epoch=False,
                  save_last=False, auto_scale_lr=SCALE_LR,
                  strategy_options=dict(cpu_offload=True,
                                                         reshard_after_forward=False)),
          str(tmp_path / "out"))
    root = f"{work_dir}/checkpoints"
    assert [c.rsplit("/", 1)[-1] for c in ckpt.list_checkpoints(root)] == ["iter_10", "iter_20"]
    local = os.path.join(runs["fsdp"]["work_dir"], "checkpoints", "iter_20")
    _close(ckpt.load_checkpoint(f"{root}/iter_20")["state_dict"],
           ckpt.load_checkpoint(local)["state_dict"], atol=0)
    shard = f"{root}/iter_20/dcp/__1_0.distcp"
    storage.write_bytes(shard, storage.read_bytes(shard)[:100])  # rank 1's shard, truncated
    assert [c.rsplit("/", 1)[-1] for c in ckpt.list_checkpoints(root)] == ["iter_10"]
    resumed = spawn(2, dict(strategy="fsdp", work_dir=work_dir, interval=10, by_epoch=False,
                            resume=True, stop_after_load=True, timestamp="20260101_000000"),
                    str(tmp_path / "resumed"))
    assert resumed["resumed_from"] == f"{root}/iter_10"
    assert resumed["position"][1] == 10
    saved = ckpt.load_checkpoint(f"{root}/iter_10")
    _close(resumed["state"]["model"], saved["state_dict"], atol=0)


@pytest.mark.parametrize("kind,damaged", [("fsdp", "rank_1.pt"), ("ddp", "rank_1.pt"),
                                          ("fsdp", "dcp/__1_0.distcp")])
def test_a_checkpoint_one_rank_cannot_read_is_skipped_by_every_rank(runs, tmp_path, kind,
                                                                    damaged):
    # Only rank 1 reads its rank_1.pt: that rank alone finds it damaged, yet both ranks must
    # fall back to iter_20 together (before, rank 1 resumed iter_20 and rank 0 iter_23, and
    # under FSDP they met in DCP's collective read of two different checkpoints).
    work_dir = tmp_path / "work"
    shutil.copytree(runs[kind]["work_dir"], work_dir)
    root = work_dir / "checkpoints"
    target = root / "iter_23" / damaged
    data = bytearray(target.read_bytes())
    data[-64:] = bytes(b ^ 0xFF for b in data[-64:])  # same size: only the CRC-32 tells
    target.write_bytes(bytes(data))
    resumed = spawn(2, dict(strategy=kind, work_dir=str(work_dir), interval=10, by_epoch=False,
                            resume=True, stop_after_load=True, auto_scale_lr=SCALE_LR),
                    str(tmp_path / "out"))
    assert [rank["resumed_from"] for rank in resumed["all"]] == [str(root / "iter_20")] * 2
    assert [rank["position"][1] for rank in resumed["all"]] == [20, 20]
    saved = ckpt.load_checkpoint(str(root / "iter_20"))
    _close(resumed["state"]["model"], saved["state_dict"], atol=0)
    log = (work_dir / "20260101_000000" / "20260101_000000.log").read_text()
    assert f"skipping {root / 'iter_23'}: " in log
    if damaged == "rank_1.pt":  # rank 0 was told which rank could not read it
        assert f"skipping {root / 'iter_23'}: rank 1: " in log
