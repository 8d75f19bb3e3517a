"""CharTextDataset: byte windows with targets shifted by one, disjoint splits, clear errors."""
import sysconfig

import pytest
import torch

from raytrainer.dataset import CharTextDataset, build_dataloader
from raytrainer.dataset.charlm import STDLIB_FILES
from raytrainer.model import BaseDataPreprocessor


@pytest.fixture
def text_root(tmp_path):
    (tmp_path / "a.txt").write_bytes(bytes(range(60)))
    (tmp_path / "b.txt").write_bytes(bytes(range(100, 140)))
    return tmp_path


def test_windows_do_not_overlap_and_targets_are_the_next_bytes(text_root):
    text = bytes(range(60)) + bytes(range(100, 140))  # 100 bytes; train is the first 90
    train = CharTextDataset(block_size=8, data_root=str(text_root),
                            file_names=["a.txt", "b.txt"])
    assert len(train) == (90 - 1) // 8 == 11
    for i in range(len(train)):
        sample = train[i]
        assert sample["inputs"].dtype == sample["data_samples"].dtype == torch.long
        assert bytes(sample["inputs"].tolist()) == text[8 * i:8 * i + 8]
        assert bytes(sample["data_samples"].tolist()) == text[8 * i + 1:8 * i + 9]
    assert train.metainfo["vocab_size"] == 256
    assert train.metainfo["block_size"] == 8


def test_train_and_val_split_the_text_without_sharing_a_byte(text_root):
    kwargs = dict(block_size=4, data_root=str(text_root), file_names=["a.txt", "b.txt"],
                  val_ratio=0.2)
    train, val = CharTextDataset(split="train", **kwargs), CharTextDataset(split="val", **kwargs)
    assert bytes(train.data.tolist()) == bytes(range(60)) + bytes(range(100, 120))
    assert bytes(val.data.tolist()) == bytes(range(120, 140))
    assert len(val) == (20 - 1) // 4
    assert bytes(val[0]["inputs"].tolist()) == bytes(range(120, 124))


def test_default_corpus_is_the_stdlib_sources():
    train = CharTextDataset(block_size=64)
    val = CharTextDataset(block_size=64, split="val")
    stdlib = sysconfig.get_paths()["stdlib"]
    text = b"".join(open(f"{stdlib}/{name}", "rb").read() for name in STDLIB_FILES)
    assert train.metainfo["num_bytes"] + val.metainfo["num_bytes"] == len(text)
    assert val.metainfo["num_bytes"] == pytest.approx(0.1 * len(text), abs=1)
    assert 200_000 < len(text) < 1_000_000
    assert len(train) == (train.metainfo["num_bytes"] - 1) // 64


def test_max_samples_keeps_evenly_spaced_windows(text_root):
    kwargs = dict(block_size=2, data_root=str(text_root), file_names=["a.txt", "b.txt"])
    full = CharTextDataset(**kwargs)
    few = CharTextDataset(max_samples=4, **kwargs)
    assert len(full) == 44
    assert few.starts.tolist() == [0, 22, 44, 66]
    assert few[1]["inputs"].tolist() == full[11]["inputs"].tolist()
    assert len(CharTextDataset(max_samples=1000, **kwargs)) == len(full)


def test_batches_collate_and_preprocess_like_the_digits_example():
    loader = build_dataloader(dict(
        batch_size=5, dataset=dict(type="CharTextDataset", split="val", block_size=16,
                                   max_samples=10),
        collate_fn=dict(type="default_collate")))
    batch = BaseDataPreprocessor()(next(iter(loader)))
    assert batch["inputs"].shape == batch["data_samples"].shape == (5, 16)
    assert torch.equal(batch["inputs"][:, 1:], batch["data_samples"][:, :-1])


def test_a_missing_file_is_named_in_the_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"text file .*nope\.py does not exist"):
        CharTextDataset(data_root=str(tmp_path), file_names=["nope.py"])


def test_unusable_arguments_are_rejected(text_root):
    with pytest.raises(ValueError, match="split must be 'train' or 'val'"):
        CharTextDataset(split="test")
    with pytest.raises(ValueError, match="too few for one window of block_size=64"):
        CharTextDataset(block_size=64, split="val", data_root=str(text_root),
                        file_names=["a.txt"])
