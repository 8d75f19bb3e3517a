"""The pyarrow bridge gives Ray the same files raytrainer sees, on every backend."""
from __future__ import annotations

import os
import pickle

import pyarrow.fs
import pytest

from raytrainer import storage
from raytrainer.storage.arrow import RetryingFSSpecHandler

from .fault_proxy import FaultProxy


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


@pytest.fixture
def fast_retries():
    before = storage.set_retry_policy(attempts=4, base_delay=0.01, max_delay=0.05)
    yield
    storage.set_retry_policy(**before)


def test_rays_writes_and_reads_through_the_filesystem_survive_transient_faults(
        s3_bucket, s3_server, fast_retries):
    # What Ray's controller does with checkpoint_manager_snapshot.json, through a proxy that
    # answers 503 ServiceUnavailable (which neither s3fs nor, by default, botocore retries).
    bucket = s3_bucket[len("s3://"):]
    with FaultProxy(s3_server, faults=0, code="ServiceUnavailable") as proxy:
        storage.set_storage_options({"endpoint_url": proxy.url}, protocol="s3")
        arrow_fs, path = storage.to_pyarrow(storage.join(s3_bucket, "run"))
        snapshot = f"{path}/checkpoint_manager_snapshot.json"
        proxy.faults_left = 2
        with arrow_fs.open_output_stream(snapshot) as f:
            f.write(b'{"checkpoints": []}')
        assert proxy.served_faults == 2
        proxy.faults_left = 2
        assert arrow_fs.get_file_info(snapshot).type == pyarrow.fs.FileType.File
        proxy.faults_left = 2
        with arrow_fs.open_input_stream(snapshot) as f:
            assert f.read() == b'{"checkpoints": []}'
        proxy.faults_left = 2
        listed = arrow_fs.get_file_info(pyarrow.fs.FileSelector(path))
        assert [info.path for info in listed] == [snapshot]
        proxy.faults_left = 2
        arrow_fs.delete_file(snapshot)
        assert proxy.served_faults == 10
    storage.set_storage_options({"endpoint_url": s3_server}, protocol="s3")
    assert not storage.exists(f"s3://{bucket}/run/checkpoint_manager_snapshot.json")


def test_a_permanent_failure_through_the_filesystem_is_clear_and_not_retried(
        s3_bucket, s3_server, fast_retries):
    bucket = s3_bucket[len("s3://"):]
    with FaultProxy(s3_server, faults=1000, status=403, code="AccessDenied") as proxy:
        storage.set_storage_options({"endpoint_url": proxy.url}, protocol="s3")
        arrow_fs, path = storage.to_pyarrow(storage.join(s3_bucket, "run"))
        with pytest.raises(storage.StoragePermissionError) as info:
            with arrow_fs.open_output_stream(f"{path}/checkpoint_manager_snapshot.json") as f:
                f.write(b"{}")
    assert proxy.served_faults == 1  # one request: an error that cannot succeed is not retried
    assert str(info.value).startswith(
        f"storage: cannot write s3://{bucket}/run/checkpoint_manager_snapshot.json: "
        "AccessDenied")
    assert "expected credentials with access to it" in str(info.value)


def test_storage_that_stays_down_fails_rays_write_naming_the_location(s3_server, fast_retries):
    storage.set_storage_options({"endpoint_url": "http://127.0.0.1:9"}, protocol="s3")
    arrow_fs, path = storage.to_pyarrow("s3://some-bucket/runs/run")
    with pytest.raises(storage.StorageError) as info:
        arrow_fs.create_dir(path, recursive=True)
        with arrow_fs.open_output_stream(f"{path}/.validate_storage_marker"):
            pass
    assert str(info.value).startswith(
        "storage: cannot write s3://some-bucket/runs/run/.validate_storage_marker: "
        "EndpointConnectionError")
    assert "gave up after 4 attempts" in str(info.value)


def test_the_filesystem_pickles_for_rays_processes(s3_bucket):
    arrow_fs, path = storage.to_pyarrow(storage.join(s3_bucket, "run"))
    with arrow_fs.open_output_stream(f"{path}/x.json") as f:
        f.write(b"1")
    copy = pickle.loads(pickle.dumps(arrow_fs))
    assert isinstance(copy.handler, RetryingFSSpecHandler)
    with copy.open_input_stream(f"{path}/x.json") as f:
        assert f.read() == b"1"
