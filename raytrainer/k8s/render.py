"""Rendering RayJob and RayCluster manifests that run one raytrainer config at a given scale
(a training run, or a sweep whose concurrent trials each get their workers).

One Ray Train worker per worker pod (all of them in one pod with ``STRICT_PACK``), each pod
sized to what a worker asks Ray for; a head pod that holds no workers (``num-cpus: "0"``) and
runs the driver; S3 credentials and endpoint from a Secret; Ray pinned to ``RAY_VERSION``.
"""
from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import yaml

from .checks import ENTRYPOINT_ANNOTATION
from .image import RAY_VERSION, image_path, image_reference_problem
from .quantity import parse_quantity

if TYPE_CHECKING:
    from ..config.ray_settings import RaySettings

HEAD_CPU = "2"
HEAD_MEMORY = "8Gi"
# A retry starts a new Ray cluster and runs the entrypoint again, which resumes from the last
# committed checkpoint; worker failures inside a run are Ray Train's to handle (ray.max_failures).
BACKOFF_LIMIT = 1
TTL_SECONDS_AFTER_FINISHED = 300
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_GPU = "nvidia.com/gpu"
_SIZED = ("CPU", "GPU", "memory")
# The largest worker pod rendered: about the largest common node shapes (cloud instances of
# 192 vCPUs, 8 GPUs, 2 TiB). A worker asking more could never be scheduled on common nodes.
POD_CEILING = {"CPU": 192.0, "GPU": 8.0, "memory": float(2 * 2**40)}
# raytrainer tune flags a tunejob passes on, in this order
TUNE_FLAGS = ("num_samples", "scheduler", "metric", "mode", "workers_per_trial",
              "max_concurrent")


@dataclass
class RenderRequest:
    """What to render (the ``raytrainer k8s`` arguments).

    Attributes:
        kind: ``"rayjob"``, ``"tunejob"`` (a RayJob that runs a sweep) or ``"raycluster"``.
        config: The config, relative to the repository root (the image holds it under
            ``IMAGE_WORKDIR``) or a storage URL.
        image: The image built from ``k8s/Dockerfile``.
        work_dir: Where the run writes (storage every pod reaches, e.g. ``s3://b/runs/x``).
        num_workers: Ray Train workers; None keeps the config's ``ray.num_workers``.
        gpu: One GPU per worker.
        cfg_options: ``KEY=VALUE`` overrides, passed on to ``raytrainer train``.
        name: ``metadata.name``; default ``raytrainer-<config name>``.
        secret: The Secret whose keys become the pods' environment (AWS_* ...); "" for none.
        service_account: The pods' service account (IAM roles for service accounts).
        memory_per_worker: Memory of a worker pod per Ray Train worker it holds.
        space: ``tunejob``: the search space file (like ``config``, as the image holds it).
        tune: ``tunejob``: more ``raytrainer tune`` flags by name (``num_samples``,
            ``scheduler``, ``metric``, ``mode``, ``workers_per_trial``, ``max_concurrent``).
    """

    kind: str
    config: str
    image: str
    work_dir: str
    num_workers: int | None = None
    gpu: bool = False
    cfg_options: list[str] = field(default_factory=list)
    name: str | None = None
    secret: str = "raytrainer-s3"
    service_account: str | None = None
    memory_per_worker: str = "4Gi"
    space: str | None = None
    tune: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """Reject arguments no manifest can be rendered from: an image that is not an image
        reference, a worker memory that is not a positive quantity, fewer than one worker per
        trial or trial at once.

        Raises:
            ValueError: naming the flag and what was expected.
        """
        problem = image_reference_problem(self.image)
        if problem:
            raise ValueError(f"--image {problem}")
        try:
            memory = parse_quantity(self.memory_per_worker)
        except ValueError as exc:
            raise ValueError(f"--memory-per-worker {exc}") from None
        if memory <= 0:
            raise ValueError(f"--memory-per-worker {self.memory_per_worker!r}: expected a "
                             "positive quantity such as 4Gi")
        for name in ("workers_per_trial", "max_concurrent"):
            count = self.tune.get(name)
            if count is not None and count < 1:
                raise ValueError(f"--{name.replace('_', '-')} {count}: expected a positive "
                                 "integer")

    def entrypoint(self) -> str:
        """The ``raytrainer train`` (or, for a ``tunejob``, ``raytrainer tune``) command the
        job runs, or the cluster is sized for."""
        if self.kind == "tunejob":
            return self._tune_entrypoint()
        argv = ["raytrainer", "train", image_path(self.config), "--work-dir", self.work_dir]
        if self.num_workers is not None:
            argv += ["--num-workers", str(self.num_workers)]
        if self.gpu:
            argv.append("--gpu")
        argv.append("--resume")
        if self.cfg_options:
            argv += ["--cfg-options", *self.cfg_options]
        return shlex.join(argv)

    def _tune_entrypoint(self) -> str:
        if not self.space:
            raise ValueError("tunejob: --space is required (the search space file)")
        argv = ["raytrainer", "tune", image_path(self.config), "--space", image_path(self.space),
                "--work-dir", self.work_dir]
        for name in TUNE_FLAGS:
            if self.tune.get(name) is not None:
                argv += ["--" + name.replace("_", "-"), str(self.tune[name])]
        argv += ["--resume", "auto"]  # a retried job continues its sweep; a first one starts it
        options = list(self.cfg_options)
        if self.gpu:
            options.append("ray.use_gpu=True")
        if options:
            argv += ["--cfg-options", *options]
        return shlex.join(argv)

    def trials(self) -> int:
        """Trials that run at once (what the worker group is sized for)."""
        return int(self.tune.get("max_concurrent") or 1) if self.kind == "tunejob" else 1

    def resource_name(self) -> str:
        if self.name is not None:
            name = self.name
        else:
            stem = PurePosixPath(self.config.split("://")[-1]).stem
            name = "raytrainer-" + re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")
        if len(name) > 40 or not _NAME.match(name):
            raise ValueError(f"--name {name!r}: expected at most 40 lowercase letters, digits "
                             "and '-', starting and ending with a letter or digit")
        return name


def _memory(amount: float) -> str:
    mib = math.ceil(amount / 2**20)
    return f"{mib // 1024}Gi" if mib % 1024 == 0 else f"{mib}Mi"


def _pod_spec(req: RenderRequest, container: dict, gpu: bool) -> dict:
    if req.secret:
        container["envFrom"] = [{"secretRef": {"name": req.secret}}]
    spec: dict[str, Any] = {"containers": [container]}
    if req.service_account:
        spec["serviceAccountName"] = req.service_account
    if gpu:
        spec["tolerations"] = [{"key": _GPU, "operator": "Exists", "effect": "NoSchedule"}]
    return spec


def _head_group(req: RenderRequest) -> dict:
    amounts = {"cpu": HEAD_CPU, "memory": HEAD_MEMORY}
    container = {
        "name": "ray-head", "image": req.image,
        "resources": {"requests": dict(amounts), "limits": dict(amounts)},
        "ports": [{"name": "gcs-server", "containerPort": 6379},
                  {"name": "dashboard", "containerPort": 8265},
                  {"name": "client", "containerPort": 10001}],
    }
    # num-cpus 0: no Ray Train worker lands on the head, which runs the driver and Ray's services.
    return {"rayStartParams": {"num-cpus": "0"},
            "template": {"spec": _pod_spec(req, container, gpu=False)}}


def _check_pod_size(pod: dict[str, float], per_pod: int, demand: dict[str, float]) -> None:
    for name, ceiling in POD_CEILING.items():
        if pod[name] > ceiling:
            def shown(amount: float, name: str = name) -> str:
                return _memory(amount) if name == "memory" else f"{amount:g} {name}"
            raise ValueError(
                f"ray.resources_per_worker: a worker pod would need {shown(pod[name])} "
                f"({per_pod} worker(s) of {demand}); nodes rarely have more than "
                f"{shown(ceiling)}, so it could never be scheduled: ask less per worker (use "
                "more workers) or write the worker group yourself")


def _worker_group(req: RenderRequest, settings: RaySettings) -> dict:
    from .sizing import worker_demand

    demand = worker_demand(settings)
    unsized = sorted(set(demand) - set(_SIZED))
    if unsized:
        raise ValueError(f"ray.resources_per_worker: raytrainer k8s sizes pods for CPU, GPU and "
                         f"memory, not {unsized}; write the worker group yourself")
    per_pod = settings.num_workers if settings.placement_strategy == "STRICT_PACK" else 1
    pods = settings.num_workers // per_pod * req.trials()
    memory = max(float(parse_quantity(req.memory_per_worker)), demand.get("memory", 0.0))
    amounts = {"cpu": str(max(1, math.ceil(demand.get("CPU", 0.0) * per_pod))),
               "memory": _memory(memory * per_pod)}
    gpus = math.ceil(demand.get("GPU", 0.0) * per_pod)
    _check_pod_size({"CPU": demand.get("CPU", 0.0) * per_pod, "GPU": float(gpus),
                     "memory": memory * per_pod}, per_pod, demand)
    if gpus:
        amounts[_GPU] = str(gpus)
    container = {"name": "ray-worker", "image": req.image,
                 "resources": {"requests": dict(amounts), "limits": dict(amounts)}}
    return {"groupName": "gpu-workers" if gpus else "cpu-workers",
            "replicas": pods, "minReplicas": pods, "maxReplicas": pods,
            "rayStartParams": {},
            "template": {"spec": _pod_spec(req, container, gpu=bool(gpus))}}


def _cluster_spec(req: RenderRequest, settings: RaySettings) -> dict:
    # Ray 2.60 clusters authenticate clients with a token: with mode token KubeRay makes one
    # (a Secret) and hands it to the Ray containers and to the job submitter.
    return {"rayVersion": RAY_VERSION, "authOptions": {"mode": "token"},
            "headGroupSpec": _head_group(req), "workerGroupSpecs": [_worker_group(req, settings)]}


def render(req: RenderRequest, settings: RaySettings) -> dict:
    """The manifest (a dict) for ``req``, sized for ``settings`` (the run's Ray settings)."""
    metadata: dict[str, Any] = {"name": req.resource_name(),
                                "labels": {"app.kubernetes.io/name": "raytrainer"}}
    if req.kind == "raycluster":
        metadata["annotations"] = {ENTRYPOINT_ANNOTATION: req.entrypoint()}
        return {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": metadata,
                "spec": _cluster_spec(req, settings)}
    # rayjob and tunejob: a job that runs its entrypoint on a cluster of its own
    return {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": metadata, "spec": {
        "entrypoint": req.entrypoint(),
        "shutdownAfterJobFinishes": True,
        "ttlSecondsAfterFinished": TTL_SECONDS_AFTER_FINISHED,
        "backoffLimit": BACKOFF_LIMIT,
        "rayClusterSpec": _cluster_spec(req, settings),
    }}


def to_yaml(doc: dict, header: list[str] = ()) -> str:
    """``doc`` as YAML, keys in the order rendered, after ``header`` comment lines."""
    comments = "".join(f"# {line}\n" for line in header)
    return comments + yaml.safe_dump(doc, sort_keys=False, width=4096)
