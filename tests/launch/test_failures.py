"""Which worker errors a restart may fix (retried) and which would recur (fail at once)."""
from __future__ import annotations

import errno

import pytest
import torch.distributed as dist
from ray.exceptions import ActorDiedError
from ray.train.v2._internal.exceptions import UserExceptionWithTraceback
from ray.train.v2._internal.execution.failure_handling.failure_policy import FailureDecision
from ray.train.v2.api.config import FailureConfig
from ray.train.v2.api.exceptions import WorkerGroupError

from raytrainer.config import ConfigError
from raytrainer.launch.driver.failures import (
    FailFastPolicy,
    deterministic_failures,
    restart_may_fix,
    user_exception,
)
from raytrainer.storage.errors import storage_error


@pytest.mark.parametrize("exc", [
    ConnectionResetError("peer reset"),
    TimeoutError("read timed out"),
    OSError(errno.ECONNREFUSED, "refused"),
    RuntimeError("[../gloo/transport/tcp/pair.cc:534] Connection closed by peer"),
    dist.DistBackendError("NCCL communicator was aborted"),
    storage_error(ConnectionRefusedError("refused"), "write s3://b/k", attempts=5),
], ids=repr)
def test_errors_a_restart_may_fix(exc):
    assert restart_may_fix(exc)


@pytest.mark.parametrize("exc", [
    ValueError("lr must be positive"),
    TypeError("__init__() got an unexpected keyword argument 'bogus'"),
    ModuleNotFoundError("No module named 'my_models'"),
    ConfigError("train_cfg.max_epochs must be a positive integer"),
    RuntimeError("ProcessGroupGloo does not support reduce_scatter"),
    RuntimeError("Tensors must be CUDA and dense (NCCL backend)"),
    RuntimeError("Error(s) in loading state_dict: size mismatch for net.0.weight"),
    KeyError("missing key"),
    storage_error(FileNotFoundError("no such key"), "read s3://b/k"),
    storage_error(PermissionError("AccessDenied"), "write s3://b/k"),
], ids=repr)
def test_errors_that_would_recur(exc):
    assert not restart_may_fix(exc)


def test_a_storage_errors_transience_survives_pickling():
    import pickle

    error = storage_error(ConnectionRefusedError("refused"), "write s3://b/k", attempts=5)
    assert pickle.loads(pickle.dumps(error)).transient is True


def _policy(max_failures=3):
    return FailFastPolicy(FailureConfig(max_failures=max_failures))


def test_a_deterministic_error_on_any_rank_raises_at_once():
    error = WorkerGroupError("boom", {0: ValueError("bad"),
                                      1: RuntimeError("[gloo] Connection closed by peer")})
    assert deterministic_failures(error) == {0: error.worker_failures[0]}
    assert _policy().make_decision(error) == FailureDecision.RAISE


def test_a_dead_worker_lets_ray_decide_even_beside_an_unknown_error():
    error = WorkerGroupError("died", {1: ActorDiedError(), 0: ValueError("odd side effect")})
    assert _policy().make_decision(error) == FailureDecision.RETRY


def test_dead_workers_and_collateral_errors_are_retried_up_to_max_failures():
    died = ActorDiedError()
    error = WorkerGroupError("died", {1: died, 0: RuntimeError("Connection closed by peer")})
    assert user_exception(died) is None
    policy = _policy(max_failures=2)
    assert [policy.make_decision(error) for _ in range(3)] == [
        FailureDecision.RETRY, FailureDecision.RETRY, FailureDecision.RAISE]


def test_the_wrapped_user_exception_is_unwrapped():
    inner = ValueError("x")
    assert user_exception(UserExceptionWithTraceback(inner, "Traceback ...")) is inner
    assert user_exception(inner) is inner
