"""Storage calls never hang: a frozen endpoint fails each call within the configured S3
connect/read timeouts (s3fs passes ``config_kwargs`` to botocore), and the retry policy's
deadline bounds the retries."""
from __future__ import annotations

import threading
import time

import pytest

from raytrainer import storage

from .frozen_endpoint import FrozenEndpoint


def _timed(fn, limit: float) -> tuple[BaseException | None, float]:
    """Run ``fn`` in a thread; fail the test if it is still running after ``limit`` s."""
    outcome: list = [None]

    def call() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome[0] = exc

    began = time.monotonic()
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"the storage call still hangs after {limit} s"
    return outcome[0], time.monotonic() - began


@pytest.fixture
def frozen_s3(s3_server):  # s3_server: fake credentials in the environment
    with FrozenEndpoint() as url:
        storage.set_storage_options({"endpoint_url": url, "config_kwargs": {
            "connect_timeout": 1, "read_timeout": 1}}, protocol="s3")
        try:
            yield url
        finally:
            storage.reset_storage_options()


@pytest.mark.slow
@pytest.mark.parametrize("operation", ["read", "write"])
def test_a_frozen_endpoint_fails_a_call_within_the_read_timeout(frozen_s3, operation):
    location = "s3://frozen-bucket/run/checkpoints/meta.json"
    call = (lambda: storage.read_bytes(location)) if operation == "read" else \
        (lambda: storage.write_bytes(location, b"{}"))
    def one_attempt() -> None:
        with storage.one_attempt():
            call()

    error, seconds = _timed(one_attempt, limit=60)
    assert isinstance(error, storage.StorageError), error
    message = str(error)
    assert message.startswith(f"storage: cannot {operation} {location}: "), message
    assert "ReadTimeout" in message and frozen_s3 in message
    assert "expected a reachable storage endpoint" in message
    # s3fs tries a timed-out request 5 times (1 s each here, 1.9 s of pauses): far below
    # botocore's default of 60 s per request, tried 5 times by botocore under s3fs's 5.
    assert seconds < 30, seconds


@pytest.mark.slow
def test_the_retry_deadline_bounds_retries_of_a_frozen_endpoint(frozen_s3):
    before = storage.set_retry_policy(attempts=100, base_delay=0.1, max_delay=0.1, deadline=2)
    try:
        error, seconds = _timed(lambda: storage.exists("s3://frozen-bucket/run/x"), limit=120)
    finally:
        storage.set_retry_policy(**before)
    assert isinstance(error, storage.StorageError), error
    assert "s3://frozen-bucket/run/x" in str(error)
    assert "the retry deadline" in str(error)
    assert "gave up after 100 attempts" not in str(error)
    assert seconds < 60, seconds
