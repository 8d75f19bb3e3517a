"""Which worker failures a restart can fix, and the trainer that stops retrying the others.

Ray Train restarts the worker group after any worker error, up to ``max_failures`` times. That
is right for a process or node that died, a preemption, a collective that broke because a
peer died, or a storage outage that may pass; it is wrong for an error that recurs on every
attempt (a bad config value, an import error, a model that does not match its checkpoint):
the run then prints the same traceback ``max_failures + 1`` times over minutes. This module
classifies worker errors and gives Ray Train a failure policy that fails such a run at once.
"""
from __future__ import annotations

import errno
import logging
from typing import Any

from ray.train.torch import TorchTrainer
from ray.train.v2._internal.execution.failure_handling import DefaultFailurePolicy
from ray.train.v2._internal.execution.failure_handling.failure_policy import FailureDecision
from ray.train.v2.api.exceptions import WorkerGroupError

logger = logging.getLogger(__name__)

# What gloo/NCCL say on a rank whose peer died mid-collective (in the error message).
_COLLECTIVE_SYMPTOMS = ("connection closed by peer", "connection reset by peer",
                        "socket timeout", "broken pipe", "remote process exited",
                        "communicator was aborted", "watchdog caught collective operation "
                        "timeout", "unhandled system error")
_TRANSIENT_ERRNOS = frozenset({errno.ECONNRESET, errno.ECONNREFUSED, errno.ECONNABORTED,
                               errno.ETIMEDOUT, errno.EPIPE, errno.EHOSTUNREACH,
                               errno.ENETUNREACH, errno.EAGAIN})


def user_exception(error: BaseException) -> BaseException | None:
    """The exception the training function raised, inside Ray's wrapper; None when the
    worker did not raise (its process or node died, a health check failed)."""
    from ray.exceptions import RayError
    from ray.train.v2._internal.exceptions import RayTrainError, UserExceptionWithTraceback

    if isinstance(error, UserExceptionWithTraceback):
        return error._base_exc
    if isinstance(error, (RayError, RayTrainError)):
        return None  # a dead actor, a failed health check, a timeout
    return error  # Ray Train hands the controller the training function's own exception


def restart_may_fix(exc: BaseException) -> bool:
    """Whether an exception raised by the training function may not recur after a restart.

    True for a storage failure of a transient kind, network errors, and errors that say a
    collective broke (typically because another rank died). False for everything else:
    config, import, type and value errors, checkpoint mismatches, out-of-memory.
    """
    import torch.distributed as dist

    from ...storage import StorageError

    if isinstance(exc, StorageError):
        return bool(getattr(exc, "transient", False))
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        return True
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(s in text for s in _COLLECTIVE_SYMPTOMS)


def deterministic_failures(error: BaseException) -> dict[int, BaseException]:
    """The ranks of a :class:`WorkerGroupError` that raised an error a restart cannot fix."""
    found = {}
    for rank, failure in sorted(getattr(error, "worker_failures", {}).items()):
        raised = user_exception(failure)
        if raised is not None and not restart_may_fix(raised):
            found[rank] = raised
    return found


class FailFastPolicy(DefaultFailurePolicy):
    """Ray Train's default policy, except that a worker-group failure in which a rank raised
    an error a restart cannot fix, and no worker died, is raised at once without a retry."""

    def make_decision(self, training_failed_error: Any) -> FailureDecision:
        if isinstance(training_failed_error, WorkerGroupError):
            found = deterministic_failures(training_failed_error)
            died = any(user_exception(e) is None
                       for e in training_failed_error.worker_failures.values())
            # A dead or preempted worker explains its peers' errors: Ray's rules decide.
            if found and not died:
                rank, raised = next(iter(found.items()))
                logger.info("[FailurePolicy] RAISE without retry: rank %d raised %s, which a "
                            "restart would raise again", rank, type(raised).__name__)
                return FailureDecision.RAISE
        return super().make_decision(training_failed_error)


class FailFastTorchTrainer(TorchTrainer):
    """A ``TorchTrainer`` whose controller uses :class:`FailFastPolicy`."""

    def _initialize_and_run_controller(self, **controller_init_kwargs):
        controller_init_kwargs["failure_policy"] = FailFastPolicy(
            self.run_config.failure_config)
        return super()._initialize_and_run_controller(**controller_init_kwargs)


__all__ = ["FailFastPolicy", "FailFastTorchTrainer", "deterministic_failures",
           "restart_may_fix", "user_exception"]
