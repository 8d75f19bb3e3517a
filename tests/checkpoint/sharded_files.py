"""Sharded (FSDP/DCP) checkpoints for the integrity tests: a real run that writes them, and
the ways their files are damaged or crafted."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import zlib

from raytrainer import storage
from tests.gloo_process import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "configs/digits/mlp.py")


def train_sharded(work_dir: str, epochs: int = 2) -> str:
    """``raytrainer train`` of the digits MLP under FSDPStrategy on one gloo rank (torchrun's
    environment), one sharded checkpoint per epoch; returns its checkpoint folder."""
    env = dict(os.environ, RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
               MASTER_PORT=str(free_port()))
    done = subprocess.run(
        [sys.executable, "-m", "raytrainer.cli", "train", CONFIG, "--launcher", "none",
         "--work-dir", work_dir, "--cfg-options", "launcher=pytorch",
         "strategy.type=FSDPStrategy", "strategy.launcher=pytorch",
         f"train_cfg.max_epochs={epochs}", f"train_cfg.val_interval={epochs}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return storage.join(work_dir, "checkpoints")


def upload(local_dir: str, url: str) -> None:
    """Copy a local folder (a work_dir) to ``url``, file by file."""
    for folder, _, names in os.walk(local_dir):
        for name in names:
            path = os.path.join(folder, name)
            storage.put_file(path, storage.join(url, os.path.relpath(path, local_dir)))


def set_recorded_crc(location: str, name: str, data: bytes) -> None:
    """Make the commit record and the done marker of ``location`` vouch for ``data`` as file
    ``name`` (what someone who crafts a file can do as well: the records are JSON)."""
    for record_name in ("commit.json", "rank_0.done.json"):
        path = storage.join(location, record_name)
        record = json.loads(storage.read_text(path))
        files = record["files"] if record_name == "commit.json" else record
        files[name] = {"size": len(data), "crc32": zlib.crc32(data)}
        storage.write_text(path, json.dumps(record))


class _RunsCode:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('the payload ran')",)


def payload(marker: str) -> object:
    """An object whose unpickling creates the file ``marker``."""
    return _RunsCode(marker)


def craft_metadata(location: str, marker: str) -> str:
    """Replace ``dcp/.metadata`` of the checkpoint at ``location`` by a pickle that runs code
    (zero-padded to the original size) and record its CRC-32; returns the file's location."""
    target = storage.join(location, "dcp", ".metadata")
    size = len(storage.read_bytes(target))
    data = pickle.dumps(payload(marker))
    data += bytes(size - len(data))
    storage.write_bytes(target, data)
    set_recorded_crc(location, "dcp/.metadata", data)
    return target


def flip_shard(location: str, start: int = 300_000, count: int = 4096) -> str:
    """Invert ``count`` bytes inside rank 0's ``.distcp`` of ``location`` (same size); returns
    the shard's location."""
    target = storage.join(location, "dcp", "__0_0.distcp")
    data = bytearray(storage.read_bytes(target))
    assert len(data) > start + count
    data[start:start + count] = bytes(b ^ 0xFF for b in data[start:start + count])
    storage.write_bytes(target, bytes(data))
    return target


PROBE = "raytrainer_probe"


def craft_build_metadata(location: str) -> str:
    """Replace ``dcp/.metadata`` of ``location`` by a pickle that names only an allowed class
    (``pathlib.PosixPath``) and then sets an attribute ``PROBE`` on that class with pickle's
    ``BUILD`` opcode, and record its CRC-32; returns the file's location."""
    name = PROBE.encode()
    data = (b"\x80\x02cpathlib\nPosixPath\n"  # PROTO 2, GLOBAL: the class itself
            b"N}X" + len(name).to_bytes(4, "little") + name +  # (None, {PROBE: True})
            b"\x88s\x86b.")  # NEWTRUE SETITEM TUPLE2 BUILD STOP
    target = storage.join(location, "dcp", ".metadata")
    storage.write_bytes(target, data)
    set_recorded_crc(location, "dcp/.metadata", data)
    return target


def redirect_metadata(location: str, relative_path: str) -> str:
    """Point every entry of the ``dcp/.metadata`` of ``location`` at ``relative_path`` (a
    path that leaves the checkpoint's folder) and record its CRC-32; returns the file's
    location."""
    target = storage.join(location, "dcp", ".metadata")
    metadata = pickle.loads(storage.read_bytes(target))  # written by this test's own run
    for info in metadata.storage_data.values():
        info.relative_path = relative_path
    data = pickle.dumps(metadata)
    storage.write_bytes(target, data)
    set_recorded_crc(location, "dcp/.metadata", data)
    return target
