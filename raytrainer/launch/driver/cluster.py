"""Which Ray instance a run uses, and whether it can ever hold the run's workers.

This module owns connecting the driver to Ray and nothing else about the run:

- With no ``address`` (``--address``/``ray.address``) and no ``RAY_ADDRESS``, the driver starts
  its **own** local instance (``address='local'``) and stops it at the end. It never
  joins an instance it did not start (another user's run, a ``ray start`` cluster), and a stale
  ``/tmp/ray/ray_current_cluster`` record is never read. A reaper process
  (:mod:`raytrainer.launch.driver.reaper`) stops that instance's processes when the driver dies
  without stopping it (SIGKILL, a crash).
- Joining a cluster is explicit: ``address='auto'`` (the cluster ``ray start`` made on this
  machine), ``HOST:PORT``, ``ray://...``, or ``RAY_ADDRESS`` (which ``ray job submit`` sets).

Ray Train's helper actors (its placement-group cleaner) look their cluster up through
``RAY_ADDRESS``; without it they fail with "Found multiple active Ray instances" when a second
instance runs on the machine. The driver therefore fixes its local instance's GCS port before
starting it and exports ``RAY_ADDRESS`` to every process of that instance.

A private instance is one node that no autoscaler or cloud provider drains, so Ray Train's
preemption watcher (one more actor process, started while the workers build their Runners) has
nothing to watch: the driver turns it off there (``RAY_TRAIN_ENABLE_PREEMPTION_WATCHER=0``,
which Ray Train propagates from the driver to its controller) unless the environment sets it.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from ...config.ray_settings import RaySettings
from ...logging import print_log
from ...utils.net import LOOPBACK, free_port
from .reaper import watch

_ENV = ("RAY_ADDRESS", "RAY_GCS_SERVER_PORT", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER")
_REACH_TIMEOUT_S = 10.0


class ClusterUnreachableError(RuntimeError):
    """Nothing answers at the ``HOST:PORT`` a run was told to join."""


class InfeasibleResourcesError(RuntimeError):
    """The cluster can never place the run's workers (and does not autoscale)."""


@dataclass(frozen=True)
class Connection:
    """The Ray instance a driver uses.

    Attributes:
        address: The GCS address (``host:port``).
        started: True when this driver started the instance (and stops it at the end).
    """

    address: str
    started: bool


def cluster_address(settings: RaySettings) -> str | None:
    """The cluster to join: ``settings.address``, else ``RAY_ADDRESS``, else None (start a
    private instance; ``'local'`` asks for one explicitly)."""
    address = settings.address or os.environ.get("RAY_ADDRESS") or None
    return None if address == "local" else address


def check_reachable(address: str, timeout_s: float = _REACH_TIMEOUT_S) -> None:
    """Fail fast when nothing listens at a ``HOST:PORT`` cluster address.

    ``ray.init`` retries a GCS that does not answer for minutes (forever under some settings)
    and prints nothing meanwhile, so a mistyped ``--address`` looked like a hang. A plain TCP
    connect settles it in at most ``timeout_s``. ``auto`` and ``ray://`` addresses are left to
    Ray (``auto`` reads this machine's record, Ray Client reports its own failure).

    Raises:
        ClusterUnreachableError: Naming the address and why it could not be reached.
    """
    if address == "auto" or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ClusterUnreachableError(
            f"--address/ray.address {address!r} is not HOST:PORT, 'auto', 'local' or ray://...")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ClusterUnreachableError(
            f"cannot reach the Ray cluster at {address} (--address/ray.address or "
            f"RAY_ADDRESS): {exc.strerror or exc}; start it (ray start --head) or fix the "
            "address") from None


@contextlib.contextmanager
def connect(settings: RaySettings, log_to_driver: bool = True,
            init_kwargs: Mapping | None = None) -> Iterator[Connection]:
    """Connect this process to Ray for the duration of the block.

    Args:
        settings: ``address`` and ``num_cpus`` are used.
        log_to_driver: Forward workers' stdout/stderr to this process.
        init_kwargs: More keyword arguments for ``ray.init`` (logging settings ...).

    Yields:
        The :class:`Connection`. An instance started here is shut down when the block ends;
        a joined cluster is left running (only this driver disconnects).
    """
    import ray

    if ray.is_initialized():
        context = ray.get_runtime_context()
        yield Connection(address=context.gcs_address, started=False)
        return
    extra = dict(init_kwargs or {})
    address = cluster_address(settings)
    saved = {name: os.environ.get(name) for name in _ENV}
    reaper = None
    if address:
        check_reachable(address)
        ray.init(address=address, log_to_driver=log_to_driver, **extra)
        connection = Connection(address=ray.get_runtime_context().gcs_address, started=False)
        print_log(f"joined the Ray cluster at {connection.address}", logger="current")
    else:
        port = free_port()
        own = f"{LOOPBACK}:{port}"
        # Inherited by the raylet and so by every worker and helper actor of this instance.
        os.environ.update(RAY_GCS_SERVER_PORT=str(port), RAY_ADDRESS=own)
        os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")  # nothing to preempt
        if sys.stdout.isatty():  # ray.init takes seconds on a small machine and says nothing
            print_log(f"starting a private local Ray instance at {own} ...", logger="current")
        try:
            reaper = watch()  # the instance ends with this driver, even a SIGKILLed one
            # The dashboard serves the state API that Ray Train's PlacementGroupCleaner polls
            # (ray.util.state.get_actor); without it the cleaner warns every second, and
            # leaving it out did not bring the first iteration forward (benchmarks/startup.py).
            with _quiet_token_auth_notice(not log_to_driver):
                ray.init(address="local", num_cpus=settings.num_cpus,
                         _node_ip_address=LOOPBACK, dashboard_host=LOOPBACK,
                         dashboard_port=free_port(), log_to_driver=log_to_driver, **extra)
        except BaseException:
            _restore(saved)
            if reaper is not None:
                reaper.close()
            raise
        connection = Connection(address=own, started=True)
        print_log(f"started a private local Ray instance at {own} for this run (join a "
                  "cluster instead with --address auto|HOST:PORT or RAY_ADDRESS)",
                  logger="current")
    try:
        yield connection
    finally:
        ray.shutdown()
        _restore(saved)
        if reaper is not None:
            reaper.close()  # stops what ray.shutdown() left of the instance


@contextlib.contextmanager
def _quiet_token_auth_notice(quiet: bool) -> Iterator[None]:
    """Without ``--verbose``, drop the WARNING a new local instance logs about token
    authentication ("Token authentication is enabled for this Ray cluster ..."): it opened the
    console of every run. The instance keeps Ray's default (token auth on loopback)."""
    logger = logging.getLogger("ray._private.authentication.authentication_token_setup")

    def drop(record: logging.LogRecord) -> bool:
        return "Token authentication is" not in record.getMessage()

    if quiet:
        logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _restore(saved: dict) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _per_worker(settings: RaySettings) -> dict[str, float]:
    """The resources one Ray Train worker asks for, as Ray Train computes them."""
    from ray.train import ScalingConfig

    scaling = ScalingConfig(num_workers=settings.num_workers, use_gpu=settings.use_gpu,
                            resources_per_worker=settings.resources_per_worker)
    return {name: float(amount) for name, amount in
            scaling._resources_per_worker_not_none.items() if amount}


def _describe(resources: Mapping[str, float]) -> str:
    shown = {k: v for k, v in resources.items() if k in ("CPU", "GPU") or not k.startswith(
        ("node:", "memory", "object_store_memory", "accelerator_type"))}
    return ", ".join(f"{v:g} {k}" for k, v in sorted(shown.items())) or "nothing"


def _room(settings: RaySettings, per_worker: Mapping[str, float]) -> tuple[int, list]:
    """How many workers the alive nodes can hold now (honouring the placement strategy)."""
    import ray

    nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    per_node = [min((int(node.get(k, 0) // v) for k, v in per_worker.items()), default=0)
                for node in nodes]
    if settings.placement_strategy == "STRICT_PACK":
        return max(per_node, default=0), nodes
    if settings.placement_strategy == "STRICT_SPREAD":
        return sum(1 for n in per_node if n > 0), nodes
    return sum(per_node), nodes


def check_feasible(settings: RaySettings, connection: Connection,
                   wait_s: float | None = None) -> None:
    """Fail fast when the cluster cannot hold ``num_workers`` workers.

    Each worker's resources must fit on one alive node, and all workers together on the
    cluster. An instance this driver started never grows, so it is checked once. A joined
    cluster may still be adding nodes (worker pods starting, an autoscaler): it is polled for
    ``wait_s`` seconds (``ray.worker_group_start_timeout_s``, default 60) before failing.

    Raises:
        InfeasibleResourcesError: Naming what was asked and what the cluster has.
    """
    import ray

    per_worker = _per_worker(settings)
    if not per_worker:
        return  # workers that ask for no resources always fit
    wait_s = 0.0 if connection.started else (60.0 if wait_s is None else wait_s)
    deadline = time.monotonic() + wait_s
    announced = False
    while True:
        fits, nodes = _room(settings, per_worker)
        if fits >= settings.num_workers:
            return
        asked = (f"{settings.num_workers} worker(s) x ({_describe(per_worker)}, "
                 f"{settings.placement_strategy})")
        has = f"the cluster has {_describe(ray.cluster_resources())} on {len(nodes)} node(s)"
        if time.monotonic() >= deadline:
            raise InfeasibleResourcesError(
                f"cannot start {asked}: {has}, room for {fits} worker(s); lower "
                "--num-workers, drop --gpu or change ray.resources_per_worker, or join a bigger "
                "cluster with --address")
        if not announced:
            print_log(f"{asked} do not fit yet ({has}); waiting up to {wait_s:g} s for nodes",
                      logger="current", level=logging.WARNING)
            announced = True
        time.sleep(min(2.0, max(0.0, deadline - time.monotonic())))


__all__ = ["ClusterUnreachableError", "Connection", "InfeasibleResourcesError", "check_feasible",
           "check_reachable", "cluster_address", "connect"]
