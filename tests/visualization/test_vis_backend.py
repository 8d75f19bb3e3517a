"""Visualization backends: scalars.json lines, config.py, TensorBoard event files."""
from __future__ import annotations

import json
import struct
import uuid
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from raytrainer import storage
from raytrainer.registry import VISBACKENDS
from raytrainer.visualization import vis_backend
from raytrainer.visualization.vis_backend import LocalVisBackend, TensorboardVisBackend, to_number


def read_lines(location):
    return [json.loads(line) for line in storage.read_text(location).splitlines()]


@pytest.fixture(params=["local", "memory"])
def save_dir(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "vis_data")
    return f"memory://vis-{uuid.uuid4().hex}/vis_data"


def test_scalars_written_as_json_lines(save_dir):
    backend = LocalVisBackend(save_dir)
    backend.add_scalars({"loss": torch.tensor(0.5), "lr": np.float32(0.25), "epoch": 1}, step=10)
    backend.add_scalar("acc", np.array([0.75]), step=11)
    # each line is readable as soon as it is written (flushed), before close
    assert read_lines(storage.join(save_dir, "scalars.json")) == [
        {"loss": 0.5, "lr": 0.25, "epoch": 1, "step": 10}, {"acc": 0.75, "step": 11}]
    backend.close()
    backend.add_scalars({"loss": 0.25}, step=20)  # reopens in append mode
    backend.close()
    assert [line["step"] for line in read_lines(backend.scalar_file)] == [10, 11, 20]


def test_extra_file_path(save_dir):
    backend = LocalVisBackend(save_dir)
    backend.add_scalars({"loss": 1.0}, step=1, file_path="20240101_000000.json")
    backend.close()
    assert read_lines(storage.join(save_dir, "20240101_000000.json")) == [{"loss": 1.0, "step": 1}]
    assert read_lines(storage.join(save_dir, "scalars.json")) == [{"loss": 1.0, "step": 1}]
    with pytest.raises(ValueError, match="must end with '.json'"):
        backend.add_scalars({"loss": 1.0}, file_path="x.txt")
    with pytest.raises(ValueError, match="is the scalars file itself"):
        backend.add_scalars({"loss": 1.0}, file_path="scalars.json")


def test_nothing_written_until_used(tmp_path):
    backend = LocalVisBackend(str(tmp_path / "vis_data"))
    backend.close()
    assert not (tmp_path / "vis_data").exists()


def test_config_written(save_dir):
    backend = LocalVisBackend(save_dir, config_save_file="cfg.py")
    backend.add_config(SimpleNamespace(pretty_text="model = dict(type='Net')\n"))
    assert storage.read_text(storage.join(save_dir, "cfg.py")) == "model = dict(type='Net')\n"
    with pytest.raises(TypeError, match="pretty_text"):
        backend.add_config({"model": 1})


@pytest.mark.parametrize(("value", "message"), [
    (torch.ones(3), r"scalar 'bad' must be .* got shape \(3,\)"),
    (np.zeros((2, 2)), r"scalar 'bad' must be .* got shape \(2, 2\)"),
    ("high", "scalar 'bad' must be .* got str"),
    ([1, 2], "scalar 'bad' must be .* got list"),
])
def test_non_scalars_rejected_by_name(tmp_path, value, message):
    backend = LocalVisBackend(str(tmp_path))
    with pytest.raises(TypeError, match=message):
        backend.add_scalars({"ok": 1.0, "bad": value}, step=1)
    assert not (tmp_path / "scalars.json").exists()  # nothing half-written


def test_step_key_is_reserved(tmp_path):
    with pytest.raises(ValueError, match="'step' is reserved"):
        LocalVisBackend(str(tmp_path)).add_scalars({"step": 3, "loss": 1.0})


def test_file_name_checks(tmp_path):
    with pytest.raises(ValueError, match="scalar_save_file must end with '.json'"):
        LocalVisBackend(str(tmp_path), scalar_save_file="scalars.txt")
    with pytest.raises(ValueError, match="config_save_file must end with '.py'"):
        LocalVisBackend(str(tmp_path), config_save_file="config.yaml")


def test_to_number():
    assert to_number("x", torch.tensor([[2]])) == 2 and isinstance(
        to_number("x", torch.tensor(2.5)), float)
    assert type(to_number("x", np.int64(3))) is int
    assert to_number("x", float("nan")) != to_number("x", float("nan"))


def test_registered(tmp_path):
    backend = VISBACKENDS.build(dict(type="LocalVisBackend", save_dir=str(tmp_path)))
    assert isinstance(backend, LocalVisBackend)


def test_tensorboard_missing_gives_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(vis_backend, "_import_summary_writer", lambda: None)
    with pytest.raises(ImportError, match="pip install tensorboard"):
        TensorboardVisBackend(str(tmp_path))


def _read_events(directory):
    """Scalar (tag, step, value) records from TFRecord event files, without TensorBoard."""
    from tensorboardX.proto import event_pb2

    records = []
    for path in sorted(directory.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset:offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    records.append((value.tag, event.step, value.simple_value))
                elif value.HasField("tensor") and value.tensor.string_val:
                    records.append((value.tag, event.step, value.tensor.string_val[0].decode()))
    return records


def test_tensorboard_writes_scalars(tmp_path):
    if vis_backend._import_summary_writer() is None:
        pytest.skip("neither tensorboard nor tensorboardX is installed")
    pytest.importorskip("tensorboardX")
    backend = TensorboardVisBackend(str(tmp_path / "tb"))
    assert not (tmp_path / "tb").exists()  # the writer is created on first use
    backend.add_scalars({"loss": torch.tensor(0.5), "lr": 0.125}, step=3)
    backend.add_scalar("acc", np.float64(0.75), step=4)
    backend.add_config(SimpleNamespace(pretty_text="a = 1"))
    with pytest.raises(TypeError, match="scalar 'bad'"):
        backend.add_scalars({"bad": torch.ones(2)}, step=5)
    backend.close()
    records = _read_events(tmp_path / "tb")
    assert ("loss", 3, 0.5) in records and ("lr", 3, 0.125) in records
    assert ("acc", 4, 0.75) in records
    assert any(tag.startswith("config") and "a = 1" in str(value)
               for tag, _, value in records)
