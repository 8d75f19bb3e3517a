"""Samplers: MMEngine's order for a seed, sharding by rank, resuming without replay."""
import itertools

import pytest
import torch

from raytrainer.dataset import DefaultSampler, InfiniteSampler
from raytrainer.dataset import sampler as sampler_module


def _sharded(monkeypatch, rank, world):
    monkeypatch.setattr(sampler_module, "get_rank", lambda: rank)
    monkeypatch.setattr(sampler_module, "get_world_size", lambda: world)


@pytest.mark.parametrize("seed,epoch", [(0, 0), (7, 3), (2024, 11)])
def test_default_sampler_matches_mmengine(seed, epoch):
    mmengine_sampler = pytest.importorskip("mmengine.dataset").DefaultSampler
    data = list(range(103))
    ours, theirs = DefaultSampler(data, seed=seed), mmengine_sampler(data, seed=seed)
    ours.set_epoch(epoch)
    theirs.set_epoch(epoch)
    assert list(ours) == list(theirs)


def test_infinite_sampler_matches_mmengine():
    mmengine_sampler = pytest.importorskip("mmengine.dataset").InfiniteSampler
    data = list(range(37))
    ours, theirs = InfiniteSampler(data, seed=5), mmengine_sampler(data, seed=5)
    assert list(itertools.islice(ours, 200)) == list(itertools.islice(theirs, 200))


def test_default_sampler_shards_ranks_disjointly_and_pads(monkeypatch):
    data = list(range(10))
    shards = []
    for rank in range(3):
        _sharded(monkeypatch, rank, 3)
        shards.append(list(DefaultSampler(data, seed=1)))
    assert [len(s) for s in shards] == [4, 4, 4]
    g = torch.Generator()
    g.manual_seed(1)
    order = torch.randperm(10, generator=g).tolist()
    padded = (order * 2)[:12]
    assert shards == [padded[0::3], padded[1::3], padded[2::3]]


def test_default_sampler_without_round_up_covers_each_index_once(monkeypatch):
    shards = []
    for rank in range(3):
        _sharded(monkeypatch, rank, 3)
        shards.append(list(DefaultSampler(list(range(10)), seed=1, round_up=False)))
    assert sorted(i for shard in shards for i in shard) == list(range(10))


def test_skip_samples_starts_mid_epoch_once():
    sampler = DefaultSampler(list(range(50)), seed=3)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.skip_samples(20)
    assert list(sampler) == full[20:]
    assert list(sampler) == full  # the skip applies to one pass only
    with pytest.raises(ValueError, match="cannot skip 51 samples of an epoch of 50"):
        sampler.skip_samples(51)


def test_infinite_sampler_skip_equals_consuming(monkeypatch):
    _sharded(monkeypatch, 1, 2)
    reference = list(itertools.islice(InfiniteSampler(list(range(13)), seed=9), 100))
    resumed = InfiniteSampler(list(range(13)), seed=9)
    resumed.skip_samples(37)
    assert list(itertools.islice(resumed, 63)) == reference[37:]


def test_seed_none_is_drawn_once_and_state_round_trips():
    sampler = DefaultSampler(list(range(8)), seed=None)
    assert isinstance(sampler.seed, int)
    sampler.set_epoch(4)
    other = DefaultSampler(list(range(8)), seed=0)
    other.load_state_dict(sampler.state_dict())
    assert list(other) == list(sampler)
