"""OptimWrapperDict: mapping access, combined lr/momentum, state dicts, refused methods."""
from __future__ import annotations

import io

import pytest
import torch
import torch.nn as nn
from torch.optim import SGD, Adam

from raytrainer.optim.optimizer import BaseOptimWrapper, OptimWrapper, OptimWrapperDict


def _gan_wrappers() -> tuple[nn.Module, nn.Module, OptimWrapperDict]:
    generator, discriminator = nn.Linear(2, 3), nn.Linear(3, 1)
    wrappers = OptimWrapperDict(
        generator=OptimWrapper(Adam(generator.parameters(), lr=0.01, betas=(0.5, 0.999))),
        discriminator=OptimWrapper(SGD(discriminator.parameters(), lr=0.1, momentum=0.9)))
    return generator, discriminator, wrappers


def test_mapping_access():
    _, _, wrappers = _gan_wrappers()
    assert isinstance(wrappers, BaseOptimWrapper)
    assert len(wrappers) == 2
    assert "generator" in wrappers and "critic" not in wrappers
    assert list(wrappers.keys()) == list(wrappers) == ["generator", "discriminator"]
    assert [name for name, _ in wrappers.items()] == ["generator", "discriminator"]
    assert all(isinstance(w, OptimWrapper) for w in wrappers.values())
    assert wrappers["generator"].get_lr() == {"lr": [0.01]}
    with pytest.raises(KeyError, match="no optim wrapper named 'critic'.*generator"):
        wrappers["critic"]


def test_lr_and_momentum_are_prefixed_by_name():
    _, _, wrappers = _gan_wrappers()
    assert wrappers.get_lr() == {"generator.lr": [0.01], "discriminator.lr": [0.1]}
    assert wrappers.get_momentum() == {"generator.momentum": [0.5],
                                       "discriminator.momentum": [0.9]}


@pytest.mark.parametrize("call", [
    lambda w: w.update_params(torch.tensor(1.0)),
    lambda w: w.backward(torch.tensor(1.0)),
    lambda w: w.step(),
    lambda w: w.optim_context(nn.Linear(1, 1)),
])
def test_ambiguous_methods_point_to_the_named_wrappers(call):
    _, _, wrappers = _gan_wrappers()
    with pytest.raises(NotImplementedError, match=r"optim_wrapper\['generator'\]"):
        call(wrappers)


def test_param_groups_is_not_supported():
    _, _, wrappers = _gan_wrappers()
    with pytest.raises(NotImplementedError, match=r"optim_wrapper\[name\].param_groups"):
        _ = wrappers.param_groups


def test_zero_grad_clears_every_wrapper():
    generator, discriminator, wrappers = _gan_wrappers()
    discriminator(generator(torch.randn(4, 2))).sum().backward()
    wrappers.zero_grad()
    assert all(p.grad is None for p in [*generator.parameters(), *discriminator.parameters()])


def test_state_dict_round_trip_through_weights_only_load():
    generator, discriminator, wrappers = _gan_wrappers()
    wrappers["generator"].update_params(discriminator(generator(torch.randn(4, 2))).sum())
    wrappers["discriminator"].update_params(discriminator(torch.randn(4, 3)).sum())

    buffer = io.BytesIO()
    torch.save(wrappers.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert set(state) == {"generator", "discriminator"}
    restored = OptimWrapperDict(
        generator=OptimWrapper(Adam(generator.parameters(), lr=1.0)),
        discriminator=OptimWrapper(SGD(discriminator.parameters(), lr=1.0, momentum=0.0)))
    restored.load_state_dict(state)
    assert restored.get_lr() == wrappers.get_lr()
    assert restored.get_momentum() == wrappers.get_momentum()
    torch.testing.assert_close(restored["generator"].optimizer.state_dict()["state"],
                               wrappers["generator"].optimizer.state_dict()["state"])


def test_load_state_dict_names_mismatched_wrappers():
    _, _, wrappers = _gan_wrappers()
    state = wrappers.state_dict()
    state["critic"] = state.pop("discriminator")
    with pytest.raises(ValueError, match=r"missing \['discriminator'\], unexpected \['critic'\]"):
        wrappers.load_state_dict(state)


def test_values_must_be_optim_wrappers():
    with pytest.raises(TypeError, match="generator=SGD"):
        OptimWrapperDict(generator=SGD(nn.Linear(1, 1).parameters(), lr=0.1))
