"""Ray resources: what one Ray Train worker asks for, what a manifest's pods advertise, and
whether a run's workers can be placed on them.

A pod advertises what KubeRay starts Ray with: ``rayStartParams`` ``num-cpus``/``num-gpus``/
``memory`` when given, else its Ray container's (the first container's) limits, or requests
where there is no limit (``cpu``, ``nvidia.com/gpu``, ``memory``).
"""
from __future__ import annotations

import math
from collections.abc import Mapping

from ..config.ray_settings import RaySettings
from .quantity import parse_quantity

_SOURCES = {"CPU": ("num-cpus", "cpu"), "GPU": ("num-gpus", "nvidia.com/gpu"),
            "memory": ("memory", "memory")}
_UNBOUNDED = 10**9


def worker_demand(settings: RaySettings) -> dict[str, float]:
    """The Ray resources of one Ray Train worker, by Ray's own rule (``{"CPU": 1}`` by default,
    ``{"GPU": 1}`` with ``use_gpu``, else ``resources_per_worker`` plus a GPU with
    ``use_gpu``)."""
    from ray.train import ScalingConfig

    scaling = ScalingConfig(num_workers=settings.num_workers, use_gpu=settings.use_gpu,
                            resources_per_worker=settings.resources_per_worker)
    demand = {"CPU": scaling.num_cpus_per_worker, "GPU": scaling.num_gpus_per_worker,
              **scaling.additional_resources_per_worker}
    return {name: float(amount) for name, amount in demand.items() if amount}


def pod_resources(group: Mapping) -> dict[str, float]:
    """The Ray resources one pod of a head or worker group advertises."""
    params = group.get("rayStartParams") or {}
    pod = (group.get("template") or {}).get("spec") or {}
    container = (pod.get("containers") or [{}])[0]
    resources = container.get("resources") or {}
    amounts = {**(resources.get("requests") or {}), **(resources.get("limits") or {})}
    advertised = {}
    for name, (param, key) in _SOURCES.items():
        value = params.get(param, amounts.get(key, 0))
        advertised[name] = float(parse_quantity(value))
    return advertised


def workers_per_pod(advertised: Mapping[str, float], demand: Mapping[str, float]) -> int:
    """How many workers asking ``demand`` each fit into one pod advertising ``advertised``."""
    fits = [math.floor(advertised.get(name, 0.0) / amount + 1e-9)
            for name, amount in demand.items() if amount > 0]
    return min(fits) if fits else _UNBOUNDED


def group_pods(group: Mapping) -> int:
    """Pods a worker group runs without an autoscaler: ``replicas`` (else ``minReplicas``)
    times ``numOfHosts``."""
    replicas = group.get("replicas", group.get("minReplicas", 0)) or 0
    return int(replicas) * int(group.get("numOfHosts", 1) or 1)


def placement_problem(settings: RaySettings, head: Mapping, worker_groups: list[Mapping],
                      head_share: Mapping[str, float], trials: int = 1) -> str | None:
    """Why the run's workers (those of ``trials`` runs at once, for a sweep) cannot be placed
    on these pods, or None when they can.

    ``head_share`` is what the job's driver reserves on the head (``entrypointNumCpus`` ...); the
    rest of the head's resources hold workers too, so a head started with ``num-cpus: "0"``
    holds none. ``placement_strategy`` is honoured: ``STRICT_PACK`` needs one pod for all
    workers, ``STRICT_SPREAD`` one pod per worker.
    """
    demand = worker_demand(settings)
    head_left = dict(pod_resources(head))
    for name, amount in head_share.items():
        if head_left.get(name, 0.0) + 1e-9 < amount:
            return (f"the head pod advertises {head_left.get(name, 0.0):g} {name}, less than the "
                    f"{amount:g} the entrypoint reserves")
        head_left[name] = head_left.get(name, 0.0) - amount
    slots = [workers_per_pod(head_left, demand)]
    described = [f"head: {slots[0] if slots[0] < _UNBOUNDED else 'any'}"]
    for group in worker_groups:
        per_pod = workers_per_pod(pod_resources(group), demand)
        pods = group_pods(group)
        slots += [per_pod] * pods
        described.append(f"{group.get('groupName')}: {pods} pod(s) x {per_pod}")
    per_run = settings.num_workers
    needed = per_run * trials
    strategy = settings.placement_strategy
    if strategy == "STRICT_PACK":  # each run's workers in one pod
        placed = max(slots) if trials == 1 else \
            min(sum(count // per_run for count in slots), trials) * per_run
    elif strategy == "STRICT_SPREAD":  # at most one worker of each run per pod
        placed = sum(min(count, trials) for count in slots)
    else:
        placed = sum(slots)
    if placed >= needed:
        return None
    runs = f" ({trials} trials x {per_run})" if trials > 1 else ""
    return (f"{needed} Ray Train worker(s){runs} of {demand} each do not fit ({strategy}): the "
            f"pods hold {placed} ({'; '.join(described)})")
