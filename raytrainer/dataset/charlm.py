"""Byte-level language-modelling windows over text files (by default: Python's own stdlib
sources, which ship with every Python, so the example needs no download)."""
from __future__ import annotations

import sysconfig
from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from .. import storage
from ..registry import DATASETS

# About 350 KB of Python source; every name exists in the stdlib of Python 3.10 and later.
STDLIB_FILES = ("argparse.py", "dataclasses.py", "difflib.py", "functools.py", "heapq.py",
                "random.py", "textwrap.py")
VOCAB_SIZE = 256


@DATASETS.register_module()
class CharTextDataset(Dataset):
    """Non-overlapping windows of bytes from text files, for next-byte prediction.

    The files are read in the given order and concatenated; the first ``1 - val_ratio`` of
    the bytes are ``'train'``, the rest ``'val'``, so the splits never share a byte. Window
    ``i`` of a split starts at byte ``i * block_size``; each sample is
    ``dict(inputs=LongTensor[block_size], data_samples=LongTensor[block_size])`` where the
    targets are the inputs shifted by one byte. The vocabulary is the 256 byte values, so no
    vocabulary file is needed.

    Args:
        block_size: Context length (bytes per sample).
        split: ``'train'`` or ``'val'``.
        data_root: Directory (or storage URL) the files are read from; defaults to the
            running Python's standard library directory.
        file_names: File names relative to ``data_root``.
        val_ratio: Fraction of the bytes (taken from the end) held out for ``'val'``.
        max_samples: Keep at most this many windows, evenly spaced over the split (for quick
            runs and tests); None keeps all.
    """

    def __init__(self, block_size: int = 64, split: str = "train", data_root: str | None = None,
                 file_names: Sequence[str] = STDLIB_FILES, val_ratio: float = 0.1,
                 max_samples: int | None = None):
        if split not in ("train", "val"):
            raise ValueError(f"CharTextDataset: split must be 'train' or 'val', got {split!r}")
        if block_size < 1:
            raise ValueError(f"CharTextDataset: block_size must be positive, got {block_size}")
        if not 0.0 < val_ratio < 1.0:
            raise ValueError(f"CharTextDataset: val_ratio must be in (0, 1), got {val_ratio}")
        if max_samples is not None and max_samples < 1:
            raise ValueError(f"CharTextDataset: max_samples must be positive or None, got "
                             f"{max_samples}")
        if isinstance(file_names, str) or not file_names:
            raise ValueError("CharTextDataset: file_names must be a non-empty list of names, "
                             f"got {file_names!r}")
        self.data_root = str(data_root or sysconfig.get_paths()["stdlib"])
        self.file_names = tuple(file_names)
        self.block_size = block_size
        text = b"".join(self._read(name) for name in self.file_names)
        cut = int(len(text) * (1.0 - val_ratio))
        part = text[:cut] if split == "train" else text[cut:]
        self.data = torch.frombuffer(bytearray(part), dtype=torch.uint8)
        num_windows = max((len(part) - 1) // block_size, 0)
        if num_windows == 0:
            raise ValueError(f"CharTextDataset: the {split!r} split has {len(part)} bytes, too "
                             f"few for one window of block_size={block_size} plus its target")
        if max_samples is None or max_samples >= num_windows:
            self.starts = torch.arange(num_windows) * block_size
        else:
            picks = torch.arange(max_samples) * num_windows // max_samples
            self.starts = picks * block_size
        self.metainfo = dict(vocab_size=VOCAB_SIZE, block_size=block_size,
                             num_bytes=len(part), files=self.file_names)

    def _read(self, name: str) -> bytes:
        location = storage.join(self.data_root, name)
        try:
            return storage.read_bytes(location)
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                f"CharTextDataset: text file {storage.describe(location)} does not exist "
                f"(file_names are relative to data_root={storage.describe(self.data_root)})"
            ) from exc

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> dict:
        start = int(self.starts[index])
        chunk = self.data[start:start + self.block_size + 1].long()
        return {"inputs": chunk[:-1], "data_samples": chunk[1:]}
