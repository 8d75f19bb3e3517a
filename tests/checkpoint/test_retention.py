"""Retention and resume=auto when a checkpoint directory holds more than one run.

``max_keep_ckpts`` counts only the checkpoints of the run's lineage (the first run's timestamp,
inherited on resume) in commit order; ``resume=True``/``'auto'`` continues the most recently
committed checkpoint, not the one with the highest iteration.
"""
from __future__ import annotations

import json
import os

from raytrainer import checkpoint as ckpt
from raytrainer import storage
from raytrainer.config import Config
from raytrainer.hooks import Hook
from raytrainer.launch.run_spec import decide_run
from raytrainer.runner import Runner

from ..runner.helpers import runner_kwargs


def _run(work_dir, iters, keep=-1, **overrides):
    hooks = dict(checkpoint=dict(type="CheckpointHook", by_epoch=False, interval=20,
                                 max_keep_ckpts=keep))
    runner = Runner(**runner_kwargs(work_dir, iters=iters, val=False, default_hooks=hooks,
                                    **overrides))
    runner.train()
    return runner


def _names(root, **filters):
    return [os.path.basename(x) for x in ckpt.list_checkpoints(root, **filters)]


def _on_disk(root):
    return sorted(e["name"] for e in storage.listdir(root))


def _meta(root, name):
    return ckpt.read_meta(storage.join(root, name))


class RecordCheckpoints(Hook):
    """After each save (it runs after the CheckpointHook), the directories left on disk."""

    priority = "LOWEST"

    def __init__(self, root):
        self.root = root
        self.seen: dict[int, list[str]] = {}

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if (runner.iter + 1) % 20 == 0:
            self.seen[runner.iter + 1] = _on_disk(self.root)


def test_a_fresh_run_keeps_its_own_checkpoints_beside_a_longer_older_run(tmp_path):
    root = os.path.join(str(tmp_path), "checkpoints")
    _run(tmp_path, iters=100, keep=2, timestamp="20200101_000000")
    assert _on_disk(root) == ["iter_100", "iter_80"]
    fresh = _run(tmp_path, iters=40, keep=2, timestamp="20200101_000001")
    # Before: the fresh run's iter_20 was older (by iteration) than the older run's two, so
    # pruning deleted every checkpoint the fresh run had just committed.
    assert _on_disk(root) == ["iter_100", "iter_20", "iter_40", "iter_80"]
    assert _names(root, lineage=fresh.checkpoints.lineage) == ["iter_20", "iter_40"]
    assert _names(root, lineage="20200101_000000") == ["iter_80", "iter_100"]
    assert _names(root) == ["iter_80", "iter_100", "iter_20", "iter_40"]  # commit order


def test_resume_auto_continues_the_most_recent_commit_not_the_highest_iteration(tmp_path):
    root = os.path.join(str(tmp_path), "checkpoints")
    _run(tmp_path, iters=100, keep=2, timestamp="20200101_000000")
    _run(tmp_path, iters=40, keep=2, timestamp="20200101_000001")
    latest = storage.join(root, "iter_40")
    assert ckpt.latest_checkpoint(root) == latest

    spec = decide_run(Config(dict(work_dir=str(tmp_path), resume="auto",
                                  randomness=dict(seed=None))))
    assert spec.resume == latest
    assert spec.timestamp == "20200101_000001"

    resumed = _run(tmp_path, iters=60, keep=2, resume=True)
    assert resumed.resumed_from == latest
    assert resumed.checkpoints.lineage == "20200101_000001" != resumed.timestamp
    assert _meta(root, "iter_60")["lineage"] == "20200101_000001"
    # its lineage keeps two (iter_40, iter_60); the older run's two are untouched
    assert _on_disk(root) == ["iter_100", "iter_40", "iter_60", "iter_80"]


def test_a_resumed_run_prunes_its_pre_resume_checkpoints_but_not_the_one_it_resumed_from(
        tmp_path):
    root = os.path.join(str(tmp_path), "checkpoints")
    # (timestamps given: runs this short start within the same second)
    first = _run(tmp_path, iters=60, keep=2, timestamp="20200101_000000")
    assert _on_disk(root) == ["iter_40", "iter_60"]
    # An unrelated run (another lineage) committed in between: neither counted nor deleted.
    _run(tmp_path, iters=20, keep=2, timestamp="20990101_000000")
    record = RecordCheckpoints(root)
    resumed = _run(tmp_path, iters=100, keep=2, resume=storage.join(root, "iter_60"),
                   custom_hooks=[record], timestamp="20200101_000002")
    assert resumed.checkpoints.lineage == first.checkpoints.lineage == "20200101_000000"
    # iter_80 committed: the pre-resume iter_40 goes, the resumed-from iter_60 stays
    assert record.seen[80] == ["iter_20", "iter_60", "iter_80"]
    # iter_100 committed: two newer ones exist, so iter_60 goes too
    assert record.seen[100] == ["iter_100", "iter_20", "iter_80"]
    assert _names(root, lineage=first.checkpoints.lineage) == ["iter_80", "iter_100"]


def _rewrite_commit(location, **changes):
    path = storage.join(location, ckpt.COMMIT_FILE)
    record = json.loads(storage.read_text(path))
    for key, value in changes.items():
        if value is None:
            record.pop(key, None)
        else:
            record[key] = value
    storage.write_text(path, json.dumps(record))


def test_checkpoints_without_a_commit_time_are_older_and_ordered_by_iteration(tmp_path):
    root = os.path.join(str(tmp_path), "checkpoints")
    _run(tmp_path, iters=60)
    for name in ("iter_20", "iter_40", "iter_60"):
        assert isinstance(json.loads(storage.read_text(storage.join(
            root, name, ckpt.COMMIT_FILE)))["created_unix"], float)
    # pretend iter_60 was committed first and iter_20 last
    for name, created in (("iter_60", 1.0), ("iter_40", 2.0), ("iter_20", 3.0)):
        _rewrite_commit(storage.join(root, name), created_unix=created)
    assert _names(root) == ["iter_60", "iter_40", "iter_20"]
    # written before commit times were recorded: older than any that has one, by iteration
    _rewrite_commit(storage.join(root, "iter_60"), created_unix=None)
    _rewrite_commit(storage.join(root, "iter_20"), created_unix=None)
    assert _names(root) == ["iter_20", "iter_60", "iter_40"]
    assert ckpt.latest_checkpoint(root) == storage.join(root, "iter_40")
    _rewrite_commit(storage.join(root, "iter_40"), created_unix=None)
    assert _names(root) == ["iter_20", "iter_40", "iter_60"]


def test_a_run_resumed_at_its_end_names_the_checkpoint_it_resumed_as_its_last(tmp_path):
    # iter_40 holds the hub of before its own save (last_ckpt iter_20): a run resumed from it
    # with nothing left to train reported iter_20 as its last checkpoint in the summary
    first = _run(tmp_path, 40)
    root = storage.join(str(tmp_path), "checkpoints")
    assert _names(root) == ["iter_20", "iter_40"]
    assert first.message_hub.get_info("last_ckpt") == storage.join(root, "iter_40")
    again = _run(tmp_path, 40, resume=True)
    assert again.resumed_from == storage.join(root, "iter_40")
    assert again.message_hub.get_info("last_ckpt") == storage.join(root, "iter_40")
