"""A full disk fails the save with a message naming the location, and keeps earlier checkpoints.

The disk is a real small filesystem (a 1.2 MB tmpfs, when this process may mount one), else a
file-size limit (RLIMIT_FSIZE) on the training process, which fails writes the same way (EFBIG).
"""
from __future__ import annotations

import hashlib
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from raytrainer import checkpoint as ckpt
from raytrainer.config import Config
from raytrainer.runner import Runner

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs" / "digits" / "mlp.py")


@pytest.fixture
def small_disk(tmp_path):
    """``(directory, kind)``: a 1.2 MB tmpfs (kind 'tmpfs'), else a plain directory (kind
    'fsize': the training process gets a 200 kB file-size limit)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1200k", "tmpfs", str(disk)],
        capture_output=True).returncode == 0
    try:
        yield disk, "tmpfs" if mounted else "fsize"
    finally:
        if mounted:
            subprocess.run(["umount", "--lazy", str(disk)], check=True)  # logs may be open


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))


def _digests(directory: str) -> dict[str, str]:
    return {name: hashlib.sha256(Path(directory, name).read_bytes()).hexdigest()
            for name in sorted(os.listdir(directory))}


@pytest.mark.slow
def test_a_full_disk_names_the_location_and_keeps_the_committed_checkpoint(small_disk):
    disk, kind = small_disk
    work_dir = str(disk / "wd")
    cfg = Config.fromfile(CONFIG)
    cfg.merge_from_dict({"work_dir": work_dir, "train_cfg.max_epochs": 1,
                         "default_hooks.logger.interval": 50})
    Runner.from_cfg(cfg).train()
    root = os.path.join(work_dir, "checkpoints")
    committed = os.path.join(root, "epoch_1")
    before = _digests(committed)

    done = subprocess.run(
        [sys.executable, "-m", "raytrainer.cli", "train", CONFIG, "--launcher", "none",
         "--work-dir", work_dir, "--resume", "--cfg-options", "train_cfg.max_epochs=3",
         "train_cfg.val_interval=10", "default_hooks.logger.interval=50"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        preexec_fn=_limit_file_size if kind == "fsize" else None)

    assert done.returncode == 1, done.stderr
    reason = "is full (ENOSPC)" if kind == "tmpfs" else "file-size limit (EFBIG)"
    assert f"cannot write {os.path.join(root, 'epoch_2')}" in done.stderr
    assert reason in done.stderr
    assert "Traceback" not in done.stderr and "unexpected pos" not in done.stderr
    assert _digests(committed) == before
    assert [os.path.basename(p) for p in ckpt.list_checkpoints(root)] == ["epoch_1"]
