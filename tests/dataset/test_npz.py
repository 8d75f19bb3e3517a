"""NpzDataset reads arrays from any storage location."""
import io

import numpy as np
import pytest
import torch

from raytrainer import storage
from raytrainer.dataset import build_dataloader


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_dataset_root_may_be_any_storage_url(storage_root):
    location = storage.join(storage_root, "data", "train.npz")
    storage.write_bytes(location, _npz(inputs=np.arange(12).reshape(6, 2), labels=np.arange(6)))
    loader = build_dataloader(dict(batch_size=4, dataset=dict(type="NpzDataset", path=location),
                                   collate_fn=dict(type="default_collate")))
    batch = next(iter(loader))
    assert batch["inputs"].dtype == torch.float32
    assert batch["inputs"].tolist() == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert batch["data_samples"].tolist() == [0, 1, 2, 3]


def test_errors_name_the_file_and_the_array(tmp_path):
    location = str(tmp_path / "x.npz")
    storage.write_bytes(location, _npz(x=np.zeros((2, 2)), labels=np.zeros(3)))
    from raytrainer.dataset import NpzDataset

    with pytest.raises(KeyError, match="x.npz has no array 'inputs'; it holds"):
        NpzDataset(location)
    with pytest.raises(ValueError, match="'x' has 2 rows but 'labels' has 3"):
        NpzDataset(location, inputs_key="x")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        NpzDataset(str(tmp_path / "missing.npz"))
