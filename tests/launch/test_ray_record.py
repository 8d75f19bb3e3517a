"""Ray's record of a run's checkpoints is reconciled with storage (no Ray needed)."""
from __future__ import annotations

import json

from raytrainer.launch.driver.ray_record import reconcile_ray_record, snapshot_location


def _result(name: str) -> dict:
    return {"version": 0, "checkpoint_dir_name": f"checkpoints/{name}", "metrics": {"x": 1}}


def _record(work_dir, names, latest) -> None:
    state = {"ray_version": "2.60.0", "checkpoint_results": [_result(n) for n in names],
             "checkpoint_report_indices": list(range(len(names))),
             "latest_checkpoint_result": _result(latest), "pending_training_results": [],
             "pending_validation_specs": [], "current_report_index": len(names),
             "validated_checkpoint_dir_names": [f"checkpoints/{n}" for n in names],
             "timed_out_validation_checkpoint_dir_names": [],
             "failed_validation_checkpoint_dir_names": []}
    (work_dir / "checkpoint_manager_snapshot.json").write_text(json.dumps(state))


def test_gone_and_uncommitted_records_are_dropped_and_latest_moves_to_the_newest_left(tmp_path):
    for name in ("iter_2", "iter_4"):
        (tmp_path / "checkpoints" / name).mkdir(parents=True)
        (tmp_path / "checkpoints" / name / "commit.json").write_text("{}")
    (tmp_path / "checkpoints" / "iter_6").mkdir()  # never committed; iter_8 deleted by hand
    _record(tmp_path, ["iter_2", "iter_4", "iter_6", "iter_8"], latest="iter_8")

    assert reconcile_ray_record(str(tmp_path)) == ["checkpoints/iter_6", "checkpoints/iter_8"]
    state = json.loads(open(snapshot_location(str(tmp_path))).read())
    assert [r["checkpoint_dir_name"] for r in state["checkpoint_results"]] == \
        ["checkpoints/iter_2", "checkpoints/iter_4"]
    assert state["checkpoint_report_indices"] == [0, 1]
    assert state["latest_checkpoint_result"]["checkpoint_dir_name"] == "checkpoints/iter_4"
    assert state["validated_checkpoint_dir_names"] == ["checkpoints/iter_2", "checkpoints/iter_4"]
    assert reconcile_ray_record(str(tmp_path)) == []  # it agrees now


def test_an_unreadable_record_is_reset(tmp_path):
    (tmp_path / "checkpoint_manager_snapshot.json").write_text("{not json")
    assert reconcile_ray_record(str(tmp_path)) == []
    assert not (tmp_path / "checkpoint_manager_snapshot.json").exists()
