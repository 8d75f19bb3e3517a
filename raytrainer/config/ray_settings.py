"""The ``ray`` config section: how many workers, which resources, how failures are handled."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError
from .sections import from_section


@dataclass
class RaySettings:
    """Scaling and fault-tolerance settings of a Ray Train run.

    Set them in the config (``ray = dict(num_workers=2, ...)``); CLI flags override them.

    Attributes:
        num_workers: Training processes (ranks); each gets one GPU with ``use_gpu``.
        use_gpu: Put every worker on a GPU (NCCL backend by default).
        resources_per_worker: Ray resources per worker, e.g. ``{"CPU": 2}``.
        placement_strategy: ``PACK``, ``SPREAD``, ``STRICT_PACK`` or ``STRICT_SPREAD``.
        max_failures: Worker-group restarts to attempt after a failure a restart can fix (a
            worker or node died, a collective broke, a transient storage error); -1:
            unlimited, 0: none. Errors that would recur (config, import, checkpoint mismatch)
            are never retried. Default 3.
        controller_failure_limit: Times the run may fail to (re)start its worker group, e.g.
            for lack of resources, before giving up (-1: unlimited).
        backend: ``'gloo'`` or ``'nccl'``; defaults to nccl with GPUs, gloo without.
        address: Ray cluster address; None joins ``RAY_ADDRESS`` or starts a local instance.
        num_cpus: CPUs of a local instance started by the driver (default: all).
        report_interval_s: Minimum seconds between periodic metric reports to Ray (reports
            after validation, with checkpoints and at the end always happen).
        worker_group_start_timeout_s: Seconds to wait for the workers' resources: on a joined
            cluster that cannot hold the workers yet (nodes still starting, an autoscaler),
            the driver waits this long before failing (default 60); an instance the driver
            started is checked once.
    """

    num_workers: int = 1
    use_gpu: bool = False
    resources_per_worker: dict | None = None
    placement_strategy: str = "PACK"
    max_failures: int = 3
    controller_failure_limit: int = 3
    backend: str | None = None
    address: str | None = None
    num_cpus: int | None = None
    report_interval_s: float = 10.0
    worker_group_start_timeout_s: float | None = None

    @classmethod
    def from_config(cls, section: Mapping | None, **overrides: Any) -> RaySettings:
        """Build from the config's ``ray`` section, then apply non-None ``overrides``."""
        return from_section(cls, section, "ray", **overrides)

    def validate(self) -> None:
        if not isinstance(self.num_workers, int) or self.num_workers < 1:
            raise ConfigError(f"ray.num_workers must be a positive integer, got "
                              f"{self.num_workers!r}")
        for name in ("max_failures", "controller_failure_limit"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < -1:
                raise ConfigError(f"ray.{name} must be an integer >= -1, got {value!r}")
        resources = self.resources_per_worker
        if resources is not None and not (
                isinstance(resources, Mapping)
                and all(isinstance(name, str) and isinstance(amount, (int, float))
                        and not isinstance(amount, bool) and amount >= 0
                        for name, amount in resources.items())):
            raise ConfigError("ray.resources_per_worker must map resource names to amounts >= 0, "
                              f"e.g. {{'CPU': 2}}, got {resources!r}")
        if self.backend not in (None, "gloo", "nccl"):
            raise ConfigError(f"ray.backend must be 'gloo' or 'nccl', got {self.backend!r}")
        if self.backend == "nccl" and not self.use_gpu:
            raise ConfigError("ray.backend='nccl' needs ray.use_gpu=True (or --gpu)")
        strategies = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
        if self.placement_strategy not in strategies:
            raise ConfigError(f"ray.placement_strategy must be one of {strategies}, got "
                              f"{self.placement_strategy!r}")
        if self.report_interval_s < 0:
            raise ConfigError(f"ray.report_interval_s must be >= 0, got {self.report_interval_s}")

    @property
    def torch_backend(self) -> str:
        return self.backend or ("nccl" if self.use_gpu else "gloo")
