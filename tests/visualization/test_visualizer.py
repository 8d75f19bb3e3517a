"""Visualizer: named instances, building backends, fan-out, rank-0-only writes."""
from __future__ import annotations

import json
import uuid

import pytest

from raytrainer import dist, storage
from raytrainer.registry import VISUALIZERS
from raytrainer.visualization import LocalVisBackend, Visualizer
from raytrainer.visualization.vis_backend import BaseVisBackend


@pytest.fixture
def name():
    instance_name = f"vis-{uuid.uuid4().hex}"
    yield instance_name
    Visualizer.drop_instance(instance_name)


class RecordingBackend(BaseVisBackend):
    def __init__(self, save_dir=None):
        super().__init__(save_dir)
        self.calls = []

    def add_scalars(self, scalar_dict, step=0, file_path=None, **kwargs):
        self.calls.append((dict(scalar_dict), step, file_path))

    def close(self):
        self.calls.append("closed")


def test_save_dir_gets_vis_data(tmp_path, name):
    vis = Visualizer(name, vis_backends=[dict(type="LocalVisBackend")], save_dir=str(tmp_path))
    vis.add_scalars({"loss": 0.5}, step=2)
    vis.close()
    lines = (tmp_path / "vis_data" / "scalars.json").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"loss": 0.5, "step": 2}]


def test_memory_url(name):
    root = f"memory://{uuid.uuid4().hex}"
    vis = Visualizer.get_instance(name, vis_backends=dict(type="LocalVisBackend"),
                                  save_dir=root)
    vis.add_scalar("acc", 0.9, step=1)
    vis.add_config(type("Cfg", (), {"pretty_text": "x = 1\n"})())
    vis.close()
    assert json.loads(storage.read_text(f"{root}/vis_data/scalars.json")) == {"acc": 0.9,
                                                                              "step": 1}
    assert storage.read_text(f"{root}/vis_data/config.py") == "x = 1\n"


def test_named_instances(name):
    first = Visualizer.get_instance(name)
    assert Visualizer.get_instance(name) is first
    assert Visualizer.get_current_instance() is first


def test_registry_build_becomes_current(tmp_path, name):
    vis = VISUALIZERS.build(dict(type="Visualizer", name=name, save_dir=str(tmp_path),
                                 vis_backends=[dict(type="LocalVisBackend")]))
    assert Visualizer.get_current_instance() is vis
    assert isinstance(vis.get_backend("LocalVisBackend"), LocalVisBackend)


def test_subclass_instance_found_from_base(name):
    class MyVisualizer(Visualizer):
        pass

    vis = MyVisualizer.get_instance(name)
    assert Visualizer.get_current_instance() is vis
    assert MyVisualizer.get_current_instance() is vis


def test_fan_out_and_names(tmp_path, name):
    recording = RecordingBackend()
    vis = Visualizer(name, save_dir=str(tmp_path), vis_backends=[
        dict(type="LocalVisBackend", name="json"), recording])
    assert set(vis.vis_backends) == {"json", "RecordingBackend"}
    assert vis.get_backend("RecordingBackend") is recording
    assert vis.get_backend("missing") is None
    vis.add_scalars({"loss": 1.0}, step=7, file_path="run.json")
    vis.close()
    assert recording.calls == [({"loss": 1.0}, 7, "run.json"), "closed"]
    assert (tmp_path / "vis_data" / "run.json").exists()


def test_duplicate_backend_names(tmp_path, name):
    with pytest.raises(ValueError, match="two vis_backends are named 'LocalVisBackend'"):
        Visualizer(name, save_dir=str(tmp_path),
                   vis_backends=[dict(type="LocalVisBackend"), dict(type="LocalVisBackend")])


def test_bad_backend_types(name):
    with pytest.raises(TypeError, match=r"vis_backends\[0\] must be a dict or a BaseVisBackend"):
        Visualizer(name, vis_backends=[42])
    with pytest.raises(TypeError, match="vis_backends must be"):
        Visualizer(name, vis_backends="LocalVisBackend")


def test_backend_without_save_dir_is_skipped(name):
    with pytest.warns(UserWarning, match="needs a save_dir"):
        vis = Visualizer(name, vis_backends=[dict(type="LocalVisBackend")])
    assert vis.vis_backends == {}


def test_only_rank_zero_writes(tmp_path, name, monkeypatch):
    vis = Visualizer(name, vis_backends=[dict(type="LocalVisBackend")], save_dir=str(tmp_path))
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    vis.add_scalars({"loss": 1.0}, step=1)
    vis.add_config(type("Cfg", (), {"pretty_text": "x = 1"})())
    assert vis.get_backend("LocalVisBackend") is None
    vis.close()
    assert not (tmp_path / "vis_data").exists()
