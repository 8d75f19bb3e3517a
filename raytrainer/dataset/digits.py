"""scikit-learn's bundled digits (1,797 8x8 images, no download) as a train/val dataset."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from ..registry import DATASETS


@DATASETS.register_module()
class DigitsDataset(Dataset):
    """Handwritten digits from ``sklearn.datasets.load_digits``, split reproducibly.

    Each sample is ``dict(inputs=float tensor of 64 pixels in [0, 1], data_samples=label)``.

    Args:
        split: ``'train'``, ``'val'`` or ``'all'``.
        val_ratio: Fraction of the images held out for ``'val'``.
        split_seed: Seed of the permutation that splits the images (fixed, not the run's seed,
            so train and val never overlap across runs).
    """

    METAINFO = {"classes": tuple(str(i) for i in range(10))}

    def __init__(self, split: str = "train", val_ratio: float = 0.2, split_seed: int = 0):
        if split not in ("train", "val", "all"):
            raise ValueError(f"DigitsDataset: split must be 'train', 'val' or 'all', got {split!r}")
        if not 0.0 < val_ratio < 1.0:
            raise ValueError(f"DigitsDataset: val_ratio must be in (0, 1), got {val_ratio}")
        try:
            from sklearn.datasets import load_digits
        except ImportError as exc:
            raise ImportError("DigitsDataset needs scikit-learn: pip install scikit-learn "
                              "(or raytrainer[examples])") from exc
        digits = load_digits()
        order = np.random.RandomState(split_seed).permutation(len(digits.target))
        n_val = int(round(len(order) * val_ratio))
        chosen = {"train": order[n_val:], "val": order[:n_val], "all": order}[split]
        self.images = torch.from_numpy(digits.data[chosen] / 16.0).float()
        self.labels = torch.from_numpy(digits.target[chosen]).long()
        self.metainfo = dict(self.METAINFO)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"inputs": self.images[index], "data_samples": self.labels[index]}
