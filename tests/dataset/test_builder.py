"""build_dataloader: components from configs, seeding, collate functions, errors."""
import pytest
import torch

from raytrainer.dataset import (
    DefaultSampler,
    DigitsDataset,
    build_dataloader,
    default_collate,
    pseudo_collate,
    worker_init_fn,
)


def test_builds_dataset_sampler_and_collate_from_config():
    loader = build_dataloader(dict(
        batch_size=8, dataset=dict(type="DigitsDataset", split="val"),
        sampler=dict(type="DefaultSampler", shuffle=True),
        collate_fn=dict(type="default_collate")), seed=11)
    assert isinstance(loader.sampler, DefaultSampler) and loader.sampler.seed == 11
    batch = next(iter(loader))
    assert batch["inputs"].shape == (8, 64) and batch["data_samples"].dtype == torch.long
    assert len(loader) == 45  # 360 val images / 8


def test_diff_rank_seed_leaves_sampler_seed_to_the_sampler(monkeypatch):
    from raytrainer.dataset import sampler as sampler_module

    monkeypatch.setattr(sampler_module, "draw_seed", lambda: 77)
    loader = build_dataloader(dict(batch_size=4, dataset=dict(type="DigitsDataset", split="val"),
                                   sampler=dict(type="DefaultSampler")),
                              seed=11, diff_rank_seed=True)
    assert loader.sampler.seed == 77


def test_pseudo_collate_keeps_samples_unstacked():
    batch = pseudo_collate([{"x": torch.zeros(2), "y": 1}, {"x": torch.ones(3), "y": 2}])
    assert isinstance(batch["x"], list) and [t.shape[0] for t in batch["x"]] == [2, 3]
    assert batch["y"] == [1, 2]
    stacked = default_collate([{"x": torch.zeros(2), "y": 1}, {"x": torch.ones(2), "y": 2}])
    assert stacked["x"].shape == (2, 2) and stacked["y"].tolist() == [1, 2]


def test_worker_init_fn_seeds_from_rank_worker_and_seed():
    worker_init_fn(worker_id=1, num_workers=2, rank=3, seed=100)
    first = torch.rand(1)
    torch.manual_seed(2 * 3 + 1 + 100)
    assert torch.equal(first, torch.rand(1))


def test_errors_name_the_config_key():
    with pytest.raises(KeyError, match="'train_dataloader' has no 'dataset'"):
        build_dataloader(dict(batch_size=2), key="train_dataloader")
    with pytest.raises(KeyError, match="'train_dataloader.collate_fn.type': 'default_colate' "
                                       "is not registered.*did you mean 'default_collate'"):
        build_dataloader(dict(batch_size=2, dataset=dict(type="DigitsDataset"),
                              collate_fn=dict(type="default_colate")), key="train_dataloader")
    with pytest.raises(ValueError, match="DigitsDataset: split must be"):
        DigitsDataset(split="test")


def test_digits_split_is_a_partition_of_all_images():
    train, val, everything = DigitsDataset("train"), DigitsDataset("val"), DigitsDataset("all")
    assert (len(train), len(val), len(everything)) == (1438, 359, 1797)
    rows = sorted(tuple(x.tolist()) + (int(y),) for part in (train, val)
                  for x, y in zip(part.images, part.labels))
    expected = sorted(tuple(x.tolist()) + (int(y),)
                      for x, y in zip(everything.images, everything.labels))
    assert rows == expected
