"""Retries: transient failures are retried with backoff and logged, permanent ones are not.

The S3 fault tests run real s3fs/botocore requests through ``FaultProxy`` in front of the moto
server: nothing in s3fs, botocore or fsspec is mocked.
"""
from __future__ import annotations

import logging
import os
import time

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from raytrainer import storage
from raytrainer.logging import MMLogger

from .fault_proxy import FaultProxy

# botocore's own retries off, so that the faults reach raytrainer's layer
_NO_BOTOCORE_RETRIES = {"retries": {"total_max_attempts": 1}}


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def warnings_logged():
    """The messages the current logger receives during the test."""
    logger = MMLogger.get_instance("storage-retry-test", log_level="DEBUG")
    records = _Records()
    logger.addHandler(records)
    yield records.messages
    logger.removeHandler(records)


@pytest.fixture
def fast_retries():
    before = storage.set_retry_policy(attempts=4, base_delay=0.01, max_delay=0.05)
    yield
    storage.set_retry_policy(**before)


class FlakyWrite:
    """Appends to a list, failing the first ``failures`` calls with ConnectionResetError."""

    def __init__(self, failures: int, error: type[Exception] = ConnectionResetError):
        self.failures = failures
        self.error = error
        self.calls = 0
        self.written: list[str] = []

    def __call__(self, item: str) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(f"connection reset by peer (call {self.calls})")
        self.written.append(item)
        return f"stored {item}"


def test_transient_errors_are_retried_and_logged(fast_retries, warnings_logged):
    flaky = FlakyWrite(failures=2)
    result = storage.call_with_retries(flaky, "x", description="write s3://b/meta.json")
    assert result == "stored x" and flaky.calls == 3 and flaky.written == ["x"]
    assert len(warnings_logged) == 2
    assert warnings_logged[0].startswith("storage: write s3://b/meta.json failed (attempt 1/4): "
                                         "ConnectionResetError: connection reset by peer")
    assert "(attempt 2/4)" in warnings_logged[1] and "retrying in" in warnings_logged[1]


def test_permanent_errors_are_not_retried(fast_retries, warnings_logged):
    flaky = FlakyWrite(failures=5, error=PermissionError)
    with pytest.raises(storage.StoragePermissionError,
                       match=r"^storage: cannot write s3://b/k: PermissionError") as info:
        storage.call_with_retries(flaky, "x", description="write s3://b/k")
    assert flaky.calls == 1 and warnings_logged == []
    assert isinstance(info.value.__cause__, PermissionError)


def test_exhausted_attempts_raise_storage_error_naming_the_description(warnings_logged):
    flaky = FlakyWrite(failures=10)
    start = time.monotonic()
    with pytest.raises(storage.StorageError) as info:
        storage.call_with_retries(flaky, "x", description="write s3://b/iter_20/commit.json",
                                  attempts=3, base_delay=0.01, max_delay=0.02)
    assert time.monotonic() - start < 1
    assert flaky.calls == 3 and len(warnings_logged) == 2
    assert str(info.value).startswith("storage: cannot write s3://b/iter_20/commit.json: "
                                      "ConnectionResetError")
    assert "gave up after 3 attempts" in str(info.value)
    assert isinstance(info.value.__cause__, ConnectionResetError)


def test_backoff_grows_and_is_capped():
    delays = [storage.retry.retry_delay(n, base_delay=0.5, max_delay=8.0) for n in range(1, 8)]
    assert 0.25 <= delays[0] <= 0.5 and 0.5 <= delays[1] <= 1.0
    assert all(4.0 <= delay <= 8.0 for delay in delays[4:])


def _client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


def _wrapped(cause: BaseException, outer: type[OSError] = OSError) -> OSError:
    try:
        try:
            raise cause
        except BaseException as exc:
            raise outer("translated by s3fs") from exc
    except OSError as wrapped:
        return wrapped


@pytest.mark.parametrize("exc", [
    ConnectionResetError(), TimeoutError(), ConnectionRefusedError(),
    EndpointConnectionError(endpoint_url="http://127.0.0.1:9"),
    _client_error("SlowDown", 503), _client_error("InternalError", 500),
    _client_error("Throttling", 400), _client_error("RequestTimeout", 400),
    _client_error("Whatever", 502), _wrapped(_client_error("SlowDown", 503)),
    _wrapped(_client_error("ServiceUnavailable", 503), FileNotFoundError),
])
def test_transient_classification(exc):
    assert storage.is_transient(exc)


@pytest.mark.parametrize("exc", [
    FileNotFoundError("gone"), PermissionError("denied"), ValueError("bad argument"),
    _client_error("AccessDenied", 403), _client_error("NoSuchBucket", 404),
    _wrapped(_client_error("NoSuchBucket", 404), FileNotFoundError),
    storage.StorageError("already retried"),
])
def test_permanent_classification(exc):
    assert not storage.is_transient(exc)


def test_s3_slowdown_is_absorbed_below_raytrainer(s3_bucket, s3_server, warnings_logged):
    bucket = s3_bucket[len("s3://"):]
    with FaultProxy(s3_server, faults=2, code="SlowDown") as proxy:
        storage.set_storage_options({"endpoint_url": proxy.url}, protocol="s3")
        storage.write_bytes(f"s3://{bucket}/meta.json", b"{}")
    assert proxy.served_faults == 2
    storage.set_storage_options({"endpoint_url": s3_server}, protocol="s3")
    assert storage.read_bytes(f"s3://{bucket}/meta.json") == b"{}"


def test_s3_faults_past_botocore_are_retried_by_raytrainer(s3_bucket, s3_server, fast_retries,
                                                           warnings_logged):
    bucket = s3_bucket[len("s3://"):]
    with FaultProxy(s3_server, faults=2, code="ServiceUnavailable") as proxy:
        storage.set_storage_options({"endpoint_url": proxy.url,
                                     "config_kwargs": _NO_BOTOCORE_RETRIES}, protocol="s3")
        storage.write_bytes(f"s3://{bucket}/iter_20/model.pt", b"weights")
    assert proxy.served_faults == 2
    assert [m.split(" failed")[0] for m in warnings_logged] == \
        [f"storage: write s3://{bucket}/iter_20/model.pt"] * 2
    assert "ServiceUnavailable" in warnings_logged[0]
    storage.set_storage_options({"endpoint_url": s3_server}, protocol="s3")
    assert storage.read_bytes(f"s3://{bucket}/iter_20/model.pt") == b"weights"


@pytest.mark.slow
def test_s3_slowdown_past_s3fs_retries_is_retried_by_raytrainer(s3_bucket, s3_server,
                                                                fast_retries, warnings_logged):
    # s3fs retries 'SlowDown' itself, 5 tries per call; the 6th fault reaches raytrainer.
    bucket = s3_bucket[len("s3://"):]
    with FaultProxy(s3_server, faults=6, code="SlowDown") as proxy:
        storage.set_storage_options({"endpoint_url": proxy.url,
                                     "config_kwargs": _NO_BOTOCORE_RETRIES}, protocol="s3")
        storage.write_bytes(f"s3://{bucket}/slow.json", b"1")
    assert proxy.served_faults == 6 and len(warnings_logged) == 1
    assert "(attempt 1/4): SlowDown" in warnings_logged[0]
    storage.set_storage_options({"endpoint_url": s3_server}, protocol="s3")
    assert storage.read_bytes(f"s3://{bucket}/slow.json") == b"1"


def test_s3_faults_that_never_stop_raise_storage_error(s3_bucket, s3_server, fast_retries,
                                                       warnings_logged):
    bucket = s3_bucket[len("s3://"):]
    with FaultProxy(s3_server, faults=1000, code="ServiceUnavailable") as proxy:
        storage.set_storage_options({"endpoint_url": proxy.url,
                                     "config_kwargs": _NO_BOTOCORE_RETRIES}, protocol="s3")
        with pytest.raises(storage.StorageError) as info:
            storage.write_bytes(f"s3://{bucket}/x/meta.json", b"{}")
    assert proxy.served_faults == 4 and proxy.forwarded == 0 and len(warnings_logged) == 3
    assert str(info.value).startswith(f"storage: cannot write s3://{bucket}/x/meta.json: "
                                      "ServiceUnavailable")
    assert "gave up after 4 attempts" in str(info.value)


def test_unreachable_endpoint_is_a_storage_error_naming_the_location(fast_retries,
                                                                     warnings_logged):
    storage.set_storage_options({"endpoint_url": "http://127.0.0.1:9",
                                 "config_kwargs": _NO_BOTOCORE_RETRIES}, protocol="s3")
    try:
        with pytest.raises(storage.StorageError) as info:
            storage.write_text("s3://some-bucket/run/meta.json", "{}")
    finally:
        storage.reset_storage_options()
    message = str(info.value)
    assert message.startswith("storage: cannot write s3://some-bucket/run/meta.json: "
                              "EndpointConnectionError")
    assert "gave up after 4 attempts" in message and "reachable storage endpoint" in message
    assert len(warnings_logged) == 3


def test_remote_log_survives_a_failed_periodic_upload(s3_bucket, s3_server, fast_retries,
                                                      warnings_logged):
    location = storage.join(s3_bucket, "run.log")
    with FaultProxy(s3_server, faults=0, code="ServiceUnavailable") as proxy:
        storage.set_storage_options({"endpoint_url": proxy.url,
                                     "config_kwargs": _NO_BOTOCORE_RETRIES}, protocol="s3")
        stream = storage.open_text_for_append(location, "w", sync_interval=0)
        stream.write("line 1\n")
        proxy.faults_left = 4  # every attempt of the next upload
        with pytest.warns(RuntimeWarning, match="uploaded again at a later flush"):
            stream.flush()
        stream.sync_interval = 0
        stream.write("line 2\n")
        stream.flush()
        stream.close()
    assert proxy.served_faults == 4
    storage.set_storage_options({"endpoint_url": s3_server}, protocol="s3")
    assert storage.read_text(location) == "line 1\nline 2\n"


def test_remote_log_whose_last_upload_fails_keeps_the_local_copy(s3_bucket, s3_server,
                                                                 fast_retries, warnings_logged):
    with FaultProxy(s3_server, faults=0, code="ServiceUnavailable") as proxy:
        storage.set_storage_options({"endpoint_url": proxy.url,
                                     "config_kwargs": _NO_BOTOCORE_RETRIES}, protocol="s3")
        stream = storage.open_text_for_append(storage.join(s3_bucket, "run.log"), "w",
                                              sync_interval=3600)
        stream.write("last words\n")
        proxy.faults_left = 1000
        with pytest.raises(storage.StorageError, match=r"the log is kept in \S+") as info:
            stream.close()
    assert stream.closed
    kept = str(info.value).rsplit("the log is kept in ", 1)[1]
    with open(kept) as f:
        assert f.read() == "last words\n"
    os.unlink(kept)


class _FakeClock:
    """Stands in for the retry module's clock: sleeping advances it at once."""

    def __init__(self):
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fake_clock(monkeypatch):
    from raytrainer.storage import retry

    clock = _FakeClock()
    monkeypatch.setattr(retry, "time", clock)
    return clock


@pytest.mark.parametrize("seed", range(5))
def test_the_default_policy_absorbs_a_ten_second_outage(fake_clock, seed, monkeypatch):
    import random

    monkeypatch.setattr(random, "uniform", random.Random(seed).uniform)

    def write() -> str:
        if fake_clock.now < 10.0:
            raise ConnectionRefusedError("connection refused")
        return "written"

    assert storage.call_with_retries(write, description="write s3://b/snapshot.json") == \
        "written"


def test_the_default_policy_gives_up_at_its_deadline(fake_clock):
    def write() -> None:
        raise ConnectionRefusedError("connection refused")

    with pytest.raises(storage.StorageError) as info:
        storage.call_with_retries(write, description="write s3://b/snapshot.json")
    assert 13.75 <= fake_clock.now <= 20.0
    assert str(info.value).startswith("storage: cannot write s3://b/snapshot.json: "
                                      "ConnectionRefusedError: connection refused")
    assert "the retry deadline" in str(info.value) or "gave up after 10 attempts" in \
        str(info.value)
