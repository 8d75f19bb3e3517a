"""Arrays from one ``.npz`` file at any storage location (path, ``s3://`` ...) as a dataset."""
from __future__ import annotations

import io

import numpy as np
import torch
from torch.utils.data import Dataset

from .. import storage
from ..registry import DATASETS


@DATASETS.register_module()
class NpzDataset(Dataset):
    """Samples ``dict(inputs=x[i], data_samples=y[i])`` from two arrays of an ``.npz`` file.

    The file is read once through fsspec (no pickled objects are accepted).

    Args:
        path: Location of the ``.npz`` file (local path or URL).
        inputs_key: Name of the input array.
        labels_key: Name of the label array (None for inputs only).
        dtype: Torch dtype name the inputs are converted to.
    """

    def __init__(self, path: str, inputs_key: str = "inputs", labels_key: str | None = "labels",
                 dtype: str = "float32"):
        self.path = str(path)
        with np.load(io.BytesIO(storage.read_bytes(self.path)), allow_pickle=False) as arrays:
            missing = [k for k in (inputs_key, labels_key) if k and k not in arrays.files]
            if missing:
                raise KeyError(f"NpzDataset: {storage.describe(self.path)} has no array "
                               f"{missing[0]!r}; it holds {sorted(arrays.files)}")
            self.inputs = torch.from_numpy(arrays[inputs_key]).to(getattr(torch, dtype))
            self.labels = torch.from_numpy(arrays[labels_key]) if labels_key else None
        if self.labels is not None and len(self.labels) != len(self.inputs):
            raise ValueError(f"NpzDataset: {inputs_key!r} has {len(self.inputs)} rows but "
                             f"{labels_key!r} has {len(self.labels)}")

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> dict:
        sample = {"inputs": self.inputs[index]}
        if self.labels is not None:
            sample["data_samples"] = self.labels[index]
        return sample
