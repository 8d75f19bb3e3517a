"""Locations resolved on the driver: relative paths become absolute, URLs stay as they are."""
from __future__ import annotations

from raytrainer.config import Config
from raytrainer.launch.driver.paths import import_roots, resolve_locations


def test_relative_locations_become_absolute_against_the_drivers_directory(tmp_path):
    cfg = Config(dict(
        work_dir="work_dirs/x", load_from="ckpt/model.pth", resume="work_dirs/x/checkpoints/e1",
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", out_dir="out")),
        train_dataloader=dict(dataset=dict(type="NpzDataset", path="data/train.npz")),
        val_dataloader=dict(dataset=dict(type="RepeatDataset", dataset=dict(
            type="X", data_root="data/root", ann_file="ann.json"))),
        test_dataloader=dict(dataset=dict(type="X", ann_file="data/test.json")),
    ), filename=str(tmp_path / "configs" / "c.py"))
    resolved, checkpoint = resolve_locations(cfg, "w/checkpoints/epoch_5", base=str(tmp_path))
    assert resolved.work_dir == str(tmp_path / "work_dirs/x")
    assert resolved.load_from == str(tmp_path / "ckpt/model.pth")
    assert resolved.resume == str(tmp_path / "work_dirs/x/checkpoints/e1")
    assert resolved.default_hooks.checkpoint.out_dir == str(tmp_path / "out")
    assert resolved.train_dataloader.dataset.path == str(tmp_path / "data/train.npz")
    inner = resolved.val_dataloader.dataset.dataset
    assert inner.data_root == str(tmp_path / "data/root")
    assert inner.ann_file == "ann.json"  # relative to data_root, as in MMEngine
    assert resolved.test_dataloader.dataset.ann_file == str(tmp_path / "data/test.json")
    assert checkpoint == str(tmp_path / "w/checkpoints/epoch_5")
    assert import_roots(cfg, base=str(tmp_path)) == [str(tmp_path), str(tmp_path / "configs")]


def test_urls_and_special_values_are_left_alone(tmp_path):
    cfg = Config(dict(work_dir="s3://bucket/runs/x", load_from=None, resume="auto",
                      train_dataloader=dict(dataset=dict(type="NpzDataset",
                                                         path="s3://bucket/d.npz"))))
    resolved, checkpoint = resolve_locations(cfg, None, base=str(tmp_path))
    assert resolved.work_dir == "s3://bucket/runs/x"
    assert resolved.load_from is None and resolved.resume == "auto"
    assert resolved.train_dataloader.dataset.path == "s3://bucket/d.npz"
    assert checkpoint is None
