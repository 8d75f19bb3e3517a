"""A 10 s S3 outage during a Ray run is absorbed: Ray's controller writes its checkpoint
manager snapshot through raytrainer's retrying filesystem, and the workers' writes retry too.
"""
from __future__ import annotations

import json

from raytrainer import launch, storage

from ..storage.fault_proxy import FaultProxy
from .test_ray_train import digits_cfg

_SNAPSHOT = "checkpoint_manager_snapshot.json"


def test_a_ten_second_outage_at_rays_snapshot_write_is_absorbed(ray_cluster, s3_bucket,
                                                                s3_server, tmp_path):
    work = f"{s3_bucket}/runs/blip"
    cfg = digits_cfg(work, tmp_path)
    cfg.merge_from_dict({"train_cfg.max_epochs": 1, "train_cfg.val_interval": 1,
                         "ray.max_failures": 0})  # a failed write would end the run
    # Every request fails (503) for 10 s from the moment Ray first writes its snapshot.
    with FaultProxy(s3_server, faults=0, code="ServiceUnavailable", outage_on=_SNAPSHOT,
                    outage_s=10.0) as proxy:
        cfg["storage"] = dict(s3=dict(endpoint_url=proxy.url))
        try:
            result = launch.train(cfg, num_workers=1)
        finally:
            storage.reset_storage_options()
    assert any(_SNAPSHOT in path for path in proxy.faulted_paths), proxy.faulted_paths
    storage.set_storage_options({"endpoint_url": s3_server}, protocol="s3")
    last = result.details["last_checkpoint"]
    assert storage.exists(f"{last}/commit.json")
    snapshot = json.loads(storage.read_text(f"{work}/{_SNAPSHOT}"))
    assert snapshot, snapshot
