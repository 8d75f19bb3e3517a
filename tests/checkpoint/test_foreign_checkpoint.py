"""The fallback reader of other engines' checkpoints changes no global state, whatever the file."""
from __future__ import annotations

import collections
import io
import pickle
import zipfile

import pytest
import torch

from raytrainer import checkpoint as ckpt
from raytrainer.checkpoint import foreign as foreign_checkpoint


def _torch_file_with_pickle(path, pickled: bytes) -> None:
    """A torch.save zip whose data.pkl is replaced by ``pickled``."""
    buffer = io.BytesIO()
    torch.save({"state_dict": {}}, buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as src, \
            zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = pickled if info.filename.endswith("/data.pkl") else src.read(info)
            dst.writestr(info.filename, data)


def _build_on_global(module: str, name: str) -> bytes:
    """``{'state_dict': {}, 'x': module.name}`` where module.name is BUILT with the slot state
    ``{'polluted': True}`` (a plain unpickler sets that attribute on the class itself)."""
    return (b"\x80\x02}X\n\x00\x00\x00state_dict}sX\x01\x00\x00\x00x"
            + f"c{module}\n{name}\n".encode() + b"N}X\x08\x00\x00\x00polluted\x88s\x86bs.")


@pytest.fixture
def clean_counter():
    yield
    if "polluted" in vars(collections.Counter):
        del collections.Counter.polluted


def test_a_crafted_build_cannot_set_attributes_on_an_allowed_class(tmp_path, clean_counter):
    path = tmp_path / "crafted.pth"
    _torch_file_with_pickle(path, _build_on_global("collections", "Counter"))
    with pytest.raises(ckpt.CheckpointError, match="cannot read"):
        ckpt.load_checkpoint(str(path))
    assert not hasattr(collections.Counter, "polluted")
    with pytest.raises(pickle.UnpicklingError, match="Can only build"):
        foreign_checkpoint.load_foreign_checkpoint(str(path), "cpu")
    assert not hasattr(collections.Counter, "polluted")


def test_a_crafted_build_on_a_foreign_class_sets_nothing(tmp_path):
    path = tmp_path / "crafted.pth"
    _torch_file_with_pickle(path, _build_on_global("mmengine.logging", "HistoryBuffer"))
    with pytest.raises(pickle.UnpicklingError):
        foreign_checkpoint.load_foreign_checkpoint(str(path), "cpu")
    assert not hasattr(foreign_checkpoint.Opaque, "polluted")


class Foreign:
    """A class the loading process must neither import nor call (stands in for MMEngine's)."""

    calls = 0

    def __init__(self, values):
        Foreign.calls += 1
        self.values = values


def test_weights_load_next_to_foreign_objects_without_calling_them(tmp_path):
    path = tmp_path / "mmengine_like.pth"
    weights = {"net.weight": torch.arange(6.0).reshape(2, 3)}
    torch.save({"state_dict": weights, "meta": {"epoch": 3, "hub": Foreign([1.5])},
                "message_hub": Foreign([2.0])}, path)
    Foreign.calls = 0
    loaded, skipped = foreign_checkpoint.load_foreign_checkpoint(str(path), "cpu")
    assert torch.equal(loaded["state_dict"]["net.weight"], weights["net.weight"])
    assert loaded["meta"] == {"epoch": 3} and skipped == ["message_hub"]
    assert Foreign.calls == 0
    placeholders = [g for g in torch.serialization.get_safe_globals()
                    if isinstance(g, type) and issubclass(g, foreign_checkpoint.Opaque)]
    assert placeholders == []  # allowed for that one load only
