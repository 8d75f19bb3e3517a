"""Registered torch optimizers and build_optim_wrapper: config forms, results and errors."""
from __future__ import annotations

import copy
import inspect

import pytest
import torch
import torch.nn as nn

from raytrainer.optim.optimizer import (
    OPTIM_WRAPPER_CONSTRUCTORS,
    OPTIMIZERS,
    AmpOptimWrapper,
    OptimWrapper,
    OptimWrapperDict,
    build_optim_wrapper,
)
from raytrainer.registry import UnknownTypeError


class _Gan(nn.Module):
    def __init__(self):
        super().__init__()
        self.generator = nn.Linear(2, 3)
        self.discriminator = nn.Linear(3, 1)


def test_every_torch_optimizer_is_registered():
    torch_optimizers = {name for name, obj in vars(torch.optim).items()
                        if inspect.isclass(obj) and issubclass(obj, torch.optim.Optimizer)
                        and obj is not torch.optim.Optimizer}
    assert {"SGD", "Adam", "AdamW", "RMSprop"} <= torch_optimizers
    for name in torch_optimizers:
        assert OPTIMIZERS.get(name) is getattr(torch.optim, name)
    assert OPTIMIZERS.get("TorchAdafactor") is torch.optim.Adafactor


def test_default_config_builds_an_optim_wrapper_with_its_arguments():
    model = nn.Linear(2, 2)
    cfg = dict(optimizer=dict(type="AdamW", lr=0.01, weight_decay=0.05),
               accumulative_counts=4, clip_grad=dict(max_norm=1.0))
    original = copy.deepcopy(cfg)
    wrapper = build_optim_wrapper(model, cfg)
    assert type(wrapper) is OptimWrapper
    assert isinstance(wrapper.optimizer, torch.optim.AdamW)
    assert wrapper.accumulative_counts == 4
    assert wrapper.clip_grad_kwargs == dict(max_norm=1.0)
    assert wrapper.get_lr() == {"lr": [0.01]}
    assert cfg == original


def test_amp_type_and_paramwise_cfg():
    model = nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2))
    wrapper = build_optim_wrapper(model, dict(
        type="AmpOptimWrapper", dtype="bfloat16",
        optimizer=dict(type="SGD", lr=0.1, weight_decay=1e-4),
        paramwise_cfg=dict(norm_decay_mult=0.0)))
    assert isinstance(wrapper, AmpOptimWrapper)
    assert [g["weight_decay"] for g in wrapper.param_groups] == [1e-4, 1e-4, 0.0, 0.0]


def test_built_optimizer_and_built_wrapper_are_used_as_they_are():
    model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.3)
    wrapper = build_optim_wrapper(model, dict(optimizer=optimizer, accumulative_counts=2))
    assert wrapper.optimizer is optimizer and wrapper.accumulative_counts == 2
    assert build_optim_wrapper(model, wrapper) is wrapper
    with pytest.raises(ValueError, match="'optim_wrapper.paramwise_cfg' cannot apply"):
        build_optim_wrapper(model, dict(optimizer=optimizer, paramwise_cfg=dict()))


def test_named_configs_build_an_optim_wrapper_dict_per_submodule():
    model = _Gan()
    wrappers = build_optim_wrapper(model, dict(
        generator=dict(optimizer=dict(type="Adam", lr=1e-3, betas=(0.5, 0.999))),
        discriminator=dict(type="OptimWrapper", optimizer=dict(type="SGD", lr=0.1),
                           accumulative_counts=2)))
    assert isinstance(wrappers, OptimWrapperDict)
    assert wrappers.get_lr() == {"generator.lr": [1e-3], "discriminator.lr": [0.1]}
    assert wrappers["generator"].param_groups[0]["params"] == list(
        model.generator.parameters())
    assert wrappers["discriminator"].param_groups[0]["params"] == list(
        model.discriminator.parameters())
    assert wrappers["discriminator"].accumulative_counts == 2


def test_named_config_for_a_missing_submodule_names_the_key():
    with pytest.raises(ValueError, match=r"'optim_wrapper.critic'.*\['generator', "
                                         r"'discriminator'\]"):
        build_optim_wrapper(_Gan(), dict(critic=dict(optimizer=dict(type="SGD", lr=0.1))))


def test_missing_optimizer_names_the_key():
    with pytest.raises(ValueError, match="config 'optim_wrapper' has no 'optimizer' key"):
        build_optim_wrapper(nn.Linear(2, 2), dict(type="OptimWrapper", clip_grad=None))
    with pytest.raises(ValueError, match="config 'optim_wrapper' has no 'optimizer' key"):
        build_optim_wrapper(nn.Linear(2, 2), dict())


def test_unknown_optimizer_names_the_key_and_suggests():
    with pytest.raises(UnknownTypeError, match=r"'SDG'.*config key 'optim_wrapper.optimizer."
                                               r"type'.*did you mean 'SGD'"):
        build_optim_wrapper(nn.Linear(2, 2), dict(optimizer=dict(type="SDG", lr=0.1)))


def test_nested_errors_name_the_full_key():
    with pytest.raises(UnknownTypeError, match="'optim_wrapper.generator.optimizer.type'"):
        build_optim_wrapper(_Gan(), dict(generator=dict(optimizer=dict(type="Adamm")),
                                         discriminator=dict(optimizer=dict(type="SGD", lr=1))))
    with pytest.raises(TypeError, match="'optim_wrapper.optimizer' .*has no 'type' key"):
        build_optim_wrapper(nn.Linear(2, 2), dict(optimizer=dict(lr=0.1)))


def test_bad_wrapper_argument_is_noted_with_the_key():
    with pytest.raises(ValueError, match="clip_grad.type") as info:
        build_optim_wrapper(nn.Linear(2, 2), dict(optimizer=dict(type="SGD", lr=0.1),
                                                  clip_grad=dict(type="l1", max_norm=1)))
    assert any("config key 'optim_wrapper'" in note for note in info.value.__notes__)


def test_unknown_constructor_names_the_key():
    with pytest.raises(UnknownTypeError, match="config key 'optim_wrapper.constructor'"):
        build_optim_wrapper(nn.Linear(2, 2), dict(optimizer=dict(type="SGD", lr=0.1),
                                                  constructor="NoSuchConstructor"))


def test_custom_constructor_receives_the_config():
    seen = {}

    class RecordingConstructor:
        def __init__(self, optim_wrapper_cfg, paramwise_cfg=None):
            seen.update(cfg=optim_wrapper_cfg, paramwise=paramwise_cfg)

        def __call__(self, model):
            return OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.5))

    OPTIM_WRAPPER_CONSTRUCTORS.register_module(name="_TestRecordingConstructor",
                                               module=RecordingConstructor, force=True)
    wrapper = build_optim_wrapper(nn.Linear(2, 2), dict(
        constructor="_TestRecordingConstructor", optimizer=dict(type="SGD", lr=0.1),
        paramwise_cfg=dict(bias_lr_mult=2.0)))
    assert wrapper.get_lr() == {"lr": [0.5]}
    assert seen == dict(cfg=dict(optimizer=dict(type="SGD", lr=0.1)),
                        paramwise=dict(bias_lr_mult=2.0))
