"""Output/input streams and append-mode text streams on every backend."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from raytrainer import storage
from raytrainer.logging import MMLogger


def test_output_stream_publishes_on_close_and_input_stream_reads_it(storage_root):
    location = storage.join(storage_root, "ckpt", "model.pt")
    state = {"w": torch.arange(6.0).reshape(2, 3)}
    with storage.open_output_stream(location) as f:
        torch.save(state, f)
        f.write(b"")
        assert not storage.exists(location)  # nothing visible before close
    with storage.open_input_stream(location) as f:
        loaded = torch.load(io.BytesIO(f.read()), weights_only=True)
    assert torch.equal(loaded["w"], state["w"])


def test_output_stream_left_by_an_exception_publishes_nothing(storage_root):
    location = storage.join(storage_root, "partial.bin")
    storage.write_bytes(location, b"old complete content")
    with pytest.raises(RuntimeError, match="crash mid-save"):
        with storage.open_output_stream(location) as f:
            f.write(b"half of the new")
            raise RuntimeError("crash mid-save")
    assert storage.read_bytes(location) == b"old complete content"


def test_output_stream_abort_and_unclosed_stream_publish_nothing(storage_root):
    aborted = storage.join(storage_root, "aborted.bin")
    stream = storage.open_output_stream(aborted)
    stream.write(b"data")
    stream.abort()
    assert stream.closed and not storage.exists(aborted)
    dropped = storage.join(storage_root, "dropped.bin")
    stream = storage.open_output_stream(dropped)
    stream.write(b"data")
    del stream
    assert not storage.exists(dropped)


def test_non_durable_output_stream_is_still_published_whole(storage_root):
    location = storage.join(storage_root, "fast", "model.pt")
    with storage.open_output_stream(location, durable=False) as f:
        f.write(b"first ")
        f.write(memoryview(b"second"))
        assert not storage.exists(location)
    assert storage.read_bytes(location) == b"first second"
    assert [e["name"] for e in storage.listdir(storage.join(storage_root, "fast"))] == \
        ["model.pt"]  # no temporary file left behind


def test_output_stream_that_cannot_be_created_is_a_storage_error(tmp_path):
    (tmp_path / "plain").write_text("a file, not a directory")
    with pytest.raises(storage.StorageError, match=r"cannot create the parent of .*plain/x\.pt"):
        storage.open_output_stream(str(tmp_path / "plain" / "x.pt"), durable=False)


def test_output_stream_rejects_writes_after_close(tmp_path):
    stream = storage.open_output_stream(str(tmp_path / "x.bin"))
    stream.write(b"abc")
    assert stream.tell() == 3
    stream.close()
    assert (tmp_path / "x.bin").read_bytes() == b"abc"
    with pytest.raises(ValueError, match="closed"):
        stream.write(b"more")


def test_append_stream_continues_the_log_after_reopening(storage_root):
    location = storage.join(storage_root, "logs", "run.log")
    stream = storage.open_text_for_append(location, "w")
    stream.write("line 1\n")
    stream.flush()
    stream.close()
    assert storage.read_text(location) == "line 1\n"
    stream = storage.open_text_for_append(location, "a")
    stream.write("line 2 ünïcode\n")
    stream.close()
    assert storage.read_text(location) == "line 1\nline 2 ünïcode\n"
    stream = storage.open_text_for_append(location, "w")
    stream.write("fresh\n")
    stream.close()
    assert storage.read_text(location) == "fresh\n"


def test_append_mode_creates_a_missing_file(storage_root):
    location = storage.join(storage_root, "vis", "scalars.json")
    with storage.open_text_for_append(location, "a") as stream:
        stream.write('{"loss": 1.0}\n')
    assert storage.read_text(location) == '{"loss": 1.0}\n'


def test_append_mode_must_be_w_or_a(tmp_path):
    with pytest.raises(ValueError, match="must be 'w' or 'a'"):
        storage.open_text_for_append(str(tmp_path / "x.log"), "r")


def test_remote_log_uploads_at_most_every_sync_interval(s3_bucket):
    location = storage.join(s3_bucket, "logs", "rank0.log")
    stream = storage.open_text_for_append(location, "w", sync_interval=3600)
    assert isinstance(stream, storage.SyncedTextFile)
    assert storage.read_text(location) == ""  # created at once
    stream.write("first\n")
    stream.flush()
    assert storage.read_text(location) == ""  # uploaded when opened; the interval has not passed
    stream.sync_interval = 0
    stream.write("second\n")
    stream.flush()
    assert storage.read_text(location) == "first\nsecond\n"
    stream.sync_interval = 3600
    stream.write("third\n")
    stream.flush()
    assert storage.read_text(location) == "first\nsecond\n"
    stream.close()
    assert storage.read_text(location) == "first\nsecond\nthird\n"


def test_set_sync_interval_is_the_default_for_new_remote_logs(s3_bucket):
    previous = storage.set_sync_interval(0)
    try:
        stream = storage.open_text_for_append(storage.join(s3_bucket, "a.log"), "w")
    finally:
        storage.set_sync_interval(previous)
    assert previous == 10.0 and stream.sync_interval == 0
    stream.write("now\n")
    stream.flush()
    assert storage.read_text(storage.join(s3_bucket, "a.log")) == "now\n"
    stream.close()


def test_remote_log_of_a_missing_bucket_fails_when_opened(s3_bucket):
    with pytest.raises(storage.StorageError, match="NoSuchBucket"):
        storage.open_text_for_append("s3://raytrainer-no-such-bucket/run.log", "w")
    with pytest.raises(storage.StorageError, match="NoSuchBucket"):
        storage.open_text_for_append("s3://raytrainer-no-such-bucket/run.log", "a")


def test_logger_file_on_s3_is_complete_after_close_and_continues_on_resume(s3_bucket):
    location = storage.join(s3_bucket, "work", "20260101_000000.log")
    logger = MMLogger.get_instance("storage-test-s3-log", log_file=location)
    logger.info("epoch 1 done")
    logger.close()
    logger = MMLogger.get_instance("storage-test-s3-log-resumed", log_file=location,
                                   file_mode="a")
    logger.info("resumed at epoch 2")
    logger.close()
    lines = storage.read_text(location).splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("INFO - epoch 1 done")
    assert lines[1].endswith("INFO - resumed at epoch 2")


@pytest.mark.slow
def test_unclosed_remote_logs_are_uploaded_at_interpreter_exit(s3_bucket):
    log, scalars = storage.join(s3_bucket, "exit.log"), storage.join(s3_bucket, "scalars.json")
    code = textwrap.dedent(f"""
        from raytrainer import storage
        from raytrainer.logging import MMLogger
        logger = MMLogger.get_instance("exit-test", log_file={log!r})
        logger.info("logged just before exit")
        stream = storage.open_text_for_append({scalars!r}, "a", sync_interval=3600)
        stream.write('{{"step": 1}}\\n')
        stream.flush()
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "could not upload" not in done.stderr and "failed (attempt" not in done.stdout
    assert storage.read_text(log).endswith("INFO - logged just before exit\n")
    assert storage.read_text(scalars) == '{"step": 1}\n'


@pytest.mark.slow
@pytest.mark.parametrize("ending", ["", "raise RuntimeError('the run failed')"])
def test_no_local_log_copies_are_left_after_exit_or_failure(s3_bucket, tmp_path, ending):
    log, scalars = storage.join(s3_bucket, "spool.log"), storage.join(s3_bucket, "scalars.json")
    code = textwrap.dedent(f"""
        from raytrainer import storage
        from raytrainer.logging import MMLogger
        logger = MMLogger.get_instance("spool-test", log_file={log!r})
        logger.info("last line")
        stream = storage.open_text_for_append({scalars!r}, "a", sync_interval=3600)
        stream.write('{{"step": 1}}\\n')
        {ending}
    """)
    env = dict(os.environ, TMPDIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == (1 if ending else 0), done.stderr
    assert storage.read_text(log).endswith("INFO - last line\n")
    assert storage.read_text(scalars) == '{"step": 1}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_copies_of_killed_processes_are_removed_by_the_next_one(s3_bucket, tmp_path):
    code = textwrap.dedent(f"""
        import os, signal
        from raytrainer import storage
        stream = storage.open_text_for_append({storage.join(s3_bucket, "a.log")!r}, "w")
        stream.write("written, never uploaded")
        stream.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    env = dict(os.environ, TMPDIR=str(tmp_path))
    killed = subprocess.run([sys.executable, "-c", code], env=env, timeout=120)
    assert killed.returncode == -9
    [orphan] = tmp_path.iterdir()
    assert orphan.name.startswith("raytrainer-log-")
    unsent = tmp_path / "raytrainer-unsent-log-1-kept.log"  # kept after a failed upload
    unsent.write_text("kept")
    alive = tmp_path / f"raytrainer-log-{os.getpid()}-x-open.log"  # a running process's
    alive.write_text("open")
    assert storage.streams.remove_orphaned_spool_files(str(tmp_path)) == [str(orphan)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([unsent.name, alive.name])
