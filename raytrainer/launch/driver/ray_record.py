"""Ray Train's record of a run's checkpoints agrees with storage before the run starts.

Ray keeps the checkpoints it registered in its run snapshot
(``<work_dir>/checkpoint_manager_snapshot.json``). A new controller loads it and refuses to
start (``CheckpointManagerInitializationError``) when a listed checkpoint folder is missing,
e.g. after a user deleted an old checkpoint by hand. This module owns that file's agreement
with storage: :func:`reconcile_ray_record` drops the records whose folders are gone or hold no
committed checkpoint, keeps the rest (with their order and metrics), and points Ray's latest
checkpoint at the newest record left. It never deletes a checkpoint.
"""
from __future__ import annotations

import json

from ... import checkpoint as ckpt
from ... import storage
from ...logging import print_log

try:
    from ray.train.v2._internal.constants import CHECKPOINT_MANAGER_SNAPSHOT_FILENAME
except ImportError:  # pragma: no cover - the name Ray 2.60 uses
    CHECKPOINT_MANAGER_SNAPSHOT_FILENAME = "checkpoint_manager_snapshot.json"

_NAME_LISTS = ("validated_checkpoint_dir_names", "timed_out_validation_checkpoint_dir_names",
               "failed_validation_checkpoint_dir_names")


def snapshot_location(work_dir: str) -> str:
    """Where Ray Train keeps its record of the run's checkpoints."""
    return storage.join(work_dir, CHECKPOINT_MANAGER_SNAPSHOT_FILENAME)


def _without(state: dict, kept: set[str]) -> dict:
    """``state`` (Ray's snapshot) keeping only the checkpoints named in ``kept``."""
    pairs = [(result, index) for result, index in
             zip(state["checkpoint_results"], state["checkpoint_report_indices"])
             if result["checkpoint_dir_name"] in kept]
    state["checkpoint_results"] = [result for result, _ in pairs]
    state["checkpoint_report_indices"] = [index for _, index in pairs]
    latest = state.get("latest_checkpoint_result")
    if latest is not None and latest["checkpoint_dir_name"] not in kept:
        state["latest_checkpoint_result"] = max(pairs, key=lambda pair: pair[1])[0] \
            if pairs else None
    pending = [(result, spec) for result, spec in
               zip(state.get("pending_training_results", []),
                   state.get("pending_validation_specs", []))
               if result["checkpoint_dir_name"] in kept]
    state["pending_training_results"] = [result for result, _ in pending]
    state["pending_validation_specs"] = [spec for _, spec in pending]
    for key in _NAME_LISTS:
        state[key] = [name for name in state.get(key, []) if name in kept]
    return state


def reconcile_ray_record(work_dir: str) -> list[str]:
    """Drop from Ray's run snapshot in ``work_dir`` every checkpoint whose folder is gone or
    not committed; returns the names dropped ([] when the record agrees or there is none).

    A snapshot that cannot be read is removed (Ray would refuse it): Ray then starts its
    record afresh and the run registers its lineage's committed checkpoints again.
    """
    location = snapshot_location(work_dir)
    if not storage.exists(location):
        return []
    try:
        state = json.loads(storage.read_text(location))
        names = [result["checkpoint_dir_name"] for result in state["checkpoint_results"]]
    except (ValueError, KeyError, TypeError) as exc:
        storage.remove(location)
        print_log(f"Ray's record of the checkpoints in {storage.describe(work_dir)} could not "
                  f"be read ({exc!r}) and was reset", logger="current")
        return []
    kept = {name for name in names if ckpt.is_committed(storage.join(work_dir, name))}
    dropped = [name for name in names if name not in kept]
    if dropped:
        storage.write_text(location, json.dumps(_without(state, kept)))
        print_log(f"Ray's record of the checkpoints in {storage.describe(work_dir)} listed "
                  f"{', '.join(dropped)}, which no longer hold a committed checkpoint; "
                  "dropped them from the record (the other checkpoints are kept)",
                  logger="current")
    return dropped


__all__ = ["reconcile_ray_record", "snapshot_location"]
