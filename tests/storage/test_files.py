"""Whole-file operations behave the same on local disk, ``memory://`` and S3 (moto server)."""
from __future__ import annotations

import os
import zlib

import pytest

from raytrainer import storage


def test_write_and_read_bytes_and_text(storage_root):
    storage.write_bytes(storage.join(storage_root, "a", "blob.bin"), b"\x00\x01payload")
    storage.write_text(storage.join(storage_root, "a", "note.txt"), "héllo\n")
    assert storage.read_bytes(storage.join(storage_root, "a", "blob.bin")) == b"\x00\x01payload"
    assert storage.read_text(storage.join(storage_root, "a", "note.txt")) == "héllo\n"


def test_write_replaces_the_whole_file_and_accepts_memoryview(storage_root):
    location = storage.join(storage_root, "state.bin")
    storage.write_bytes(location, b"x" * 1000)
    storage.write_bytes(location, memoryview(bytearray(b"short")))
    assert storage.read_bytes(location) == b"short"


def test_listdir_names_sizes_and_types(storage_root):
    run = storage.join(storage_root, "run")
    storage.write_bytes(storage.join(run, "b.bin"), b"12345")
    storage.write_text(storage.join(run, "a.json"), "{}")
    storage.write_text(storage.join(run, "ckpt", "model.pt"), "m")
    entries = storage.listdir(run)
    assert [(e["name"], e["type"], e["size"]) for e in entries] == [
        ("a.json", "file", 2), ("b.bin", "file", 5), ("ckpt", "directory", 0)]
    assert [e["path"] for e in entries] == [storage.join(run, name)
                                            for name in ("a.json", "b.bin", "ckpt")]
    assert storage.read_text(entries[0]["path"]) == "{}"


def test_listdir_of_a_missing_directory_is_empty(storage_root):
    assert storage.listdir(storage.join(storage_root, "never", "written")) == []


def test_listdir_of_a_file_is_an_error_naming_it(storage_root):
    location = storage.join(storage_root, "plain.txt")
    storage.write_text(location, "x")
    with pytest.raises(storage.StorageError, match="is a file, not a directory"):
        storage.listdir(location)


def test_exists_is_dir_and_file_size(storage_root):
    location = storage.join(storage_root, "d", "f.bin")
    assert not storage.exists(location)
    storage.write_bytes(location, b"abc")
    assert storage.exists(location)
    assert storage.exists(storage.join(storage_root, "d"))
    assert storage.is_dir(storage.join(storage_root, "d"))
    assert not storage.is_dir(location)
    assert storage.file_size(location) == 3


def test_file_size_of_missing_file_is_a_not_found_error(storage_root):
    location = storage.join(storage_root, "missing.bin")
    with pytest.raises(storage.StorageNotFoundError, match="missing.bin") as info:
        storage.file_size(location)
    assert isinstance(info.value, FileNotFoundError)


def test_read_of_missing_file_names_the_location(storage_root):
    location = storage.join(storage_root, "nothing", "here.json")
    with pytest.raises(FileNotFoundError, match=r"storage: cannot read .*nothing/here\.json"):
        storage.read_text(location)


def test_remove_file_directory_and_missing(storage_root):
    run = storage.join(storage_root, "run")
    storage.write_text(storage.join(run, "keep.txt"), "k")
    storage.write_text(storage.join(run, "ckpt", "a.pt"), "a")
    storage.write_text(storage.join(run, "ckpt", "sub", "b.pt"), "b")
    storage.remove(storage.join(run, "keep.txt"))
    assert not storage.exists(storage.join(run, "keep.txt"))
    with pytest.raises(storage.StorageError, match="recursive=True"):
        storage.remove(storage.join(run, "ckpt"))
    assert storage.exists(storage.join(run, "ckpt", "a.pt"))
    storage.remove(storage.join(run, "ckpt"), recursive=True)
    assert not storage.exists(storage.join(run, "ckpt", "sub", "b.pt"))
    assert storage.listdir(run) == []
    storage.remove(storage.join(run, "never-existed"))
    storage.remove(storage.join(run, "never-existed"), recursive=True)


def test_makedirs_then_write_inside(storage_root):
    directory = storage.join(storage_root, "x", "y")
    storage.makedirs(directory)
    storage.makedirs(directory)  # exist_ok
    storage.write_text(storage.join(directory, "z.txt"), "z")
    assert storage.is_dir(directory)


def test_put_file_and_get_file_round_trip(storage_root, tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"weights" * 1000)
    location = storage.join(storage_root, "up", "weights.bin")
    storage.put_file(source, location)
    assert storage.file_size(location) == 7000
    target = tmp_path / "down" / "deeper" / "weights.bin"
    storage.get_file(location, target)
    assert target.read_bytes() == source.read_bytes()


def test_get_file_of_missing_location_leaves_no_partial_file(storage_root, tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(storage.StorageNotFoundError, match="cannot download"):
        storage.get_file(storage.join(storage_root, "absent.bin"), target)
    assert list(tmp_path.iterdir()) == []


def test_local_write_leaves_no_temporary_files(tmp_path):
    storage.write_text(str(tmp_path / "a.json"), "1")
    storage.write_text(str(tmp_path / "a.json"), "2")
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    assert (tmp_path / "a.json").read_text() == "2"


def test_file_crc32_is_the_size_and_crc32_of_the_stored_bytes(storage_root):
    data = os.urandom(9 << 20)  # more than one 8 MiB chunk when streamed from a remote store
    location = storage.join(storage_root, "c", "blob.bin")
    storage.write_bytes(location, data)
    assert storage.file_crc32(location) == (len(data), zlib.crc32(data))
    empty = storage.join(storage_root, "c", "empty.bin")
    storage.write_bytes(empty, b"")
    assert storage.file_crc32(empty) == (0, 0)


def test_file_crc32_of_a_missing_file_is_a_not_found_error(storage_root):
    with pytest.raises(storage.StorageNotFoundError, match=r"cannot checksum .*absent\.bin"):
        storage.file_crc32(storage.join(storage_root, "absent.bin"))


def test_local_path_is_the_file_path_on_local_disk_only(tmp_path, memory_root, s3_bucket):
    assert storage.local_path(str(tmp_path / "a.pt")) == str(tmp_path / "a.pt")
    assert storage.local_path(f"file://{tmp_path}/a.pt") == str(tmp_path / "a.pt")
    relative = storage.local_path("some/rel.pt")
    assert os.path.isabs(relative) and relative.endswith("some/rel.pt")
    assert storage.local_path(storage.join(memory_root, "a.pt")) is None
    assert storage.local_path(storage.join(s3_bucket, "a.pt")) is None
    storage.write_text(str(tmp_path / "a.pt"), "local")
    with open(storage.local_path(f"file://{tmp_path}/a.pt")) as f:
        assert f.read() == "local"


def test_file_urls_and_plain_paths_are_the_same_file(tmp_path):
    storage.write_text(f"file://{tmp_path}/same.txt", "via url")
    assert storage.read_text(str(tmp_path / "same.txt")) == "via url"
    assert storage.listdir(f"file://{tmp_path}")[0]["path"] == f"file://{tmp_path}/same.txt"


def test_unknown_protocol_is_a_clear_error():
    with pytest.raises(storage.StorageError, match=r"cannot open nosuch://bucket/x: .*"
                                                   r"expected a local path or a URL"):
        storage.write_text("nosuch://bucket/x", "x")


def test_missing_bucket_names_location_and_expectation(s3_bucket):
    with pytest.raises(storage.StorageError) as info:
        storage.write_text("s3://raytrainer-no-such-bucket/x/meta.json", "{}")
    message = str(info.value)
    assert message.startswith("storage: cannot write s3://raytrainer-no-such-bucket/x/meta.json: "
                              "NoSuchBucket")
    assert "never creates buckets" in message
    assert isinstance(info.value.__cause__, FileNotFoundError)
    assert storage.listdir(s3_bucket) == []
    with pytest.raises(storage.StorageError, match="NoSuchBucket"):
        storage.listdir("s3://raytrainer-no-such-bucket/x")


def test_makedirs_never_creates_a_bucket(s3_bucket):
    import s3fs

    storage.makedirs("s3://raytrainer-not-created/a/b")
    fs, _ = storage.get_filesystem(s3_bucket)
    assert isinstance(fs, s3fs.S3FileSystem)
    assert not storage.exists("s3://raytrainer-not-created")


def test_listing_sees_files_written_by_another_client(s3_bucket, s3_server):
    import s3fs

    run = storage.join(s3_bucket, "run")
    storage.write_text(storage.join(run, "rank0.done"), "0")
    assert storage.exists(storage.join(run, "rank0.done"))
    assert [e["name"] for e in storage.listdir(run)] == ["rank0.done"]
    other = s3fs.S3FileSystem(endpoint_url=s3_server, skip_instance_cache=True)
    other.pipe(f"{s3_bucket[len('s3://'):]}/run/rank1.done", b"1")
    assert storage.exists(storage.join(run, "rank1.done"))
    assert [e["name"] for e in storage.listdir(run)] == ["rank0.done", "rank1.done"]
