"""The driver with real Ray workers: which failures are retried, resources checked before any
worker starts, the config's storage options used everywhere, paths resolved on the driver."""
from __future__ import annotations

import json
import os
import time

import pytest
from ray.train.v2.api.exceptions import WorkerGroupError

from raytrainer import launch, storage
from raytrainer.launch.driver.cluster import InfeasibleResourcesError
from raytrainer.utils.net import free_port

from .test_ray_train import digits_cfg


def _short(cfg, **more):
    cfg.merge_from_dict({"train_cfg.max_epochs": 1, "train_cfg.val_interval": 1,
                         "default_hooks.checkpoint": dict(type="CheckpointHook", interval=1),
                         **more})
    return cfg


def _failing_model(log, error, message, **more) -> dict:
    return dict(type="tests.launch.ray_hooks.RaiseOnBuild", log=str(log), error=error,
                message=message, **more)


def test_an_error_that_would_recur_fails_the_run_without_a_restart(ray_cluster, tmp_path):
    log = tmp_path / "builds.txt"
    cfg = _short(digits_cfg(tmp_path / "work", tmp_path), **{"ray.max_failures": 3})
    cfg["model"] = _failing_model(log, "ValueError", "model.depth must be positive, got -1")
    started = time.monotonic()
    with pytest.raises(WorkerGroupError) as info:
        launch.train(cfg, num_workers=2)
    assert sorted(log.read_text().split()) == ["0", "1"]  # one attempt of two ranks
    failures = info.value.worker_failures
    assert {type(e).__name__ for e in failures.values()} == {"ValueError"}
    assert "model.depth must be positive" in str(failures[0])
    assert time.monotonic() - started < 120


def test_a_transient_error_is_retried_and_the_run_completes(ray_cluster, tmp_path):
    log = tmp_path / "builds.txt"
    cfg = _short(digits_cfg(tmp_path / "work", tmp_path), **{"ray.max_failures": 3})
    real = dict(cfg["model"])
    cfg["model"] = _failing_model(log, "ConnectionError", "endpoint reset the connection",
                                  real=real, attempts_failing=1)
    result = launch.train(cfg, num_workers=2)
    assert sorted(log.read_text().split()) == ["0", "0", "1", "1"]  # two attempts
    assert result.details["iter"] == 23 and "accuracy/top1" in result.metrics


def test_impossible_resources_fail_in_seconds_naming_what_was_asked(ray_cluster, tmp_path):
    cfg = _short(digits_cfg(tmp_path / "work", tmp_path),
                 **{"ray.worker_group_start_timeout_s": 2})
    started = time.monotonic()
    with pytest.raises(InfeasibleResourcesError) as info:
        launch.train(cfg, num_workers=4, use_gpu=True)
    assert time.monotonic() - started < 30
    message = str(info.value)
    assert "4 worker(s) x (1 GPU" in message and "2 CPU" in message
    assert "room for 0 worker(s)" in message
    # nothing was started: no log directory, no checkpoint
    assert not os.path.exists(tmp_path / "work" / "checkpoints")


def _dead_endpoint() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_the_configs_storage_options_reach_the_driver_and_every_worker(
        ray_cluster, s3_bucket, s3_server, tmp_path, monkeypatch):
    s3_bucket = s3_bucket.removeprefix("s3://")
    # The environment names a dead endpoint; only the config's storage section is right.
    monkeypatch.setenv("AWS_ENDPOINT_URL", _dead_endpoint())
    monkeypatch.setenv("RAYTRAINER_STORAGE_OPTIONS",
                       json.dumps({"s3": {"endpoint_url": _dead_endpoint()}}))
    storage.reset_storage_options()
    work = f"s3://{s3_bucket}/runs/configured"
    cfg = _short(digits_cfg(work, tmp_path))
    cfg["storage"] = dict(s3=dict(endpoint_url=s3_server))
    try:
        result = launch.train(cfg, num_workers=2)
    finally:
        storage.reset_storage_options()
    last = result.details["last_checkpoint"]
    assert last.startswith(f"{work}/checkpoints/iter_")
    storage.set_storage_options({"endpoint_url": s3_server}, protocol="s3")
    assert storage.exists(f"{last}/commit.json")
    assert storage.exists(f"{work}/{result.spec.timestamp}/result.json")
