"""The pyarrow bridge gives Ray the same files raytrainer sees, on every backend."""
from __future__ import annotations

import os

import pyarrow.fs

from raytrainer import storage


def test_pyarrow_and_storage_see_the_same_files(storage_root):
    run = storage.join(storage_root, "ray", "run")
    arrow_fs, path = storage.to_pyarrow(run)
    arrow_fs.create_dir(path, recursive=True)
    with arrow_fs.open_output_stream(f"{path}/result.json") as f:
        f.write(b'{"loss": 0.5}')
    assert storage.read_bytes(storage.join(run, "result.json")) == b'{"loss": 0.5}'
    storage.write_bytes(storage.join(run, "checkpoint.bin"), b"ckpt")
    with arrow_fs.open_input_stream(f"{path}/checkpoint.bin") as f:
        assert f.read() == b"ckpt"
    infos = arrow_fs.get_file_info(pyarrow.fs.FileSelector(path))
    assert sorted(os.path.basename(info.path) for info in infos) == ["checkpoint.bin",
                                                                     "result.json"]


def test_local_paths_use_arrows_local_filesystem(tmp_path):
    arrow_fs, path = storage.to_pyarrow(f"file://{tmp_path}/runs")
    assert isinstance(arrow_fs, pyarrow.fs.LocalFileSystem)
    assert path == f"{tmp_path}/runs"
    _, relative = storage.to_pyarrow("relative/runs")
    assert relative == os.path.abspath("relative/runs")


def test_remote_paths_are_fsspec_paths_without_protocol(s3_bucket):
    arrow_fs, path = storage.to_pyarrow(storage.join(s3_bucket, "runs"))
    assert isinstance(arrow_fs, pyarrow.fs.PyFileSystem)
    assert path == f"{s3_bucket[len('s3://'):]}/runs"
