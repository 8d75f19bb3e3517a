"""DefaultOptimWrapperConstructor: paramwise_cfg against MMEngine's, wrappers, config errors."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from raytrainer.optim.optimizer import DefaultOptimWrapperConstructor, OptimWrapper

from ...gloo_process import run_in_gloo_process

_OPTIMIZER = dict(type="SGD", lr=0.1, momentum=0.9, weight_decay=1e-4)


class _Net(nn.Module):
    """Every kind of parameter paramwise_cfg tells apart."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(4))  # a top-level 1-D parameter
        self.frozen = nn.Parameter(torch.ones(2), requires_grad=False)
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4),
            nn.Conv2d(4, 4, 3, groups=4),  # depth-wise
            nn.GroupNorm(2, 4))
        self.neck = nn.Sequential(nn.Conv2d(4, 4, 1, bias=False), nn.InstanceNorm2d(4, affine=True))
        self.head = nn.Sequential(nn.LayerNorm(4), nn.Linear(4, 2), nn.Embedding(3, 4))


_PARAMWISE_CASES = {
    "custom_keys": dict(custom_keys={
        "backbone": dict(lr_mult=0.1, decay_mult=0.5),
        "backbone.1": dict(lr_mult=0.0),  # longer key wins for the BatchNorm
        "neck.0": dict(lr_mult=3.0), "eck.0.": dict(lr_mult=5.0),  # same length: alphabetical
        "head": dict(decay_mult=0.0, momentum=0.5),  # extra options reach the group
    }),
    "bias_lr_mult": dict(bias_lr_mult=2.0),
    "bias_decay_mult": dict(bias_decay_mult=0.5),
    "norm_decay_mult": dict(norm_decay_mult=0.0),
    "dwconv_decay_mult": dict(dwconv_decay_mult=0.1),
    "flat_decay_mult": dict(flat_decay_mult=0.3),
    "all_rules": dict(bias_lr_mult=2.0, bias_decay_mult=0.5, norm_decay_mult=0.0,
                      dwconv_decay_mult=0.1, flat_decay_mult=0.3,
                      custom_keys={"head.1": dict(lr_mult=10.0)}),
}


def _groups(optimizer: torch.optim.Optimizer) -> list[tuple[list[int], dict]]:
    return [([id(p) for p in group["params"]], {k: v for k, v in group.items() if k != "params"})
            for group in optimizer.param_groups]


@pytest.mark.parametrize("case", sorted(_PARAMWISE_CASES))
def test_param_groups_match_mmengine(case):
    MMConstructor = pytest.importorskip("mmengine.optim").DefaultOptimWrapperConstructor

    model = _Net()
    paramwise_cfg = _PARAMWISE_CASES[case]
    wrapper_cfg = dict(type="OptimWrapper", optimizer=dict(_OPTIMIZER))
    ours = DefaultOptimWrapperConstructor(wrapper_cfg, paramwise_cfg)(model)
    theirs = MMConstructor(wrapper_cfg, paramwise_cfg)(model)
    assert isinstance(ours, OptimWrapper)
    assert _groups(ours.optimizer) == _groups(theirs.optimizer)


def test_rules_give_the_documented_values():
    model = _Net()
    cfg = _PARAMWISE_CASES["all_rules"]
    wrapper = DefaultOptimWrapperConstructor(dict(optimizer=dict(_OPTIMIZER)), cfg)(model)
    by_param = {id(g["params"][0]): g for g in wrapper.param_groups}
    group = lambda param: by_param[id(param)]  # noqa: E731
    assert group(model.backbone[0].bias)["lr"] == pytest.approx(0.2)
    assert group(model.backbone[0].bias)["weight_decay"] == pytest.approx(5e-5)
    assert group(model.backbone[1].weight)["weight_decay"] == 0.0  # norm
    assert group(model.backbone[1].bias)["lr"] == 0.1  # no bias_lr_mult on norms
    assert group(model.backbone[2].weight)["weight_decay"] == pytest.approx(1e-5)  # dwconv
    assert group(model.scale)["weight_decay"] == pytest.approx(3e-5)  # flat
    assert group(model.head[1].weight)["lr"] == pytest.approx(1.0)  # custom key
    assert group(model.head[2].weight)["weight_decay"] == 1e-4  # untouched 2-D
    assert id(model.frozen) not in by_param


def test_without_paramwise_cfg_one_group_holds_all_parameters():
    model = _Net()
    wrapper = DefaultOptimWrapperConstructor(dict(optimizer=dict(_OPTIMIZER)))(model)
    assert len(wrapper.param_groups) == 1
    assert len(wrapper.param_groups[0]["params"]) == len(list(model.parameters()))


class _Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(3, 3)
        self.decoder = nn.Linear(3, 3)
        self.decoder.weight = self.encoder.weight  # tied weights


def test_shared_parameter_needs_bypass_duplicate():
    cfg = dict(optimizer=dict(_OPTIMIZER))
    with pytest.raises(ValueError, match="'decoder.weight' is the same tensor as 'encoder.weight'"
                                         ".*bypass_duplicate=True"):
        DefaultOptimWrapperConstructor(cfg, dict(bias_lr_mult=2.0))(_Shared())


def test_bypass_duplicate_matches_mmengine():
    MMConstructor = pytest.importorskip("mmengine.optim").DefaultOptimWrapperConstructor

    model = _Shared()
    paramwise_cfg = dict(bias_lr_mult=2.0, bypass_duplicate=True)
    cfg = dict(type="OptimWrapper", optimizer=dict(_OPTIMIZER))
    ours = DefaultOptimWrapperConstructor(cfg, paramwise_cfg)(model)
    theirs = MMConstructor(cfg, paramwise_cfg)(model)
    assert _groups(ours.optimizer) == _groups(theirs.optimizer)
    assert len(ours.param_groups) == 3


class _Wrapper(nn.Module):
    """A DDP-like wrapper: every parameter lives in ``module``."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module


class _ModelWithModuleChild(nn.Module):
    """Not a wrapper: it has a child called ``module`` and parameters of its own."""

    def __init__(self):
        super().__init__()
        self.module = nn.Linear(2, 2)
        self.other = nn.Linear(2, 2)


def test_wrapped_model_uses_inner_parameter_names():
    paramwise_cfg = dict(custom_keys={"module.": dict(lr_mult=0.0)})
    cfg = dict(optimizer=dict(_OPTIMIZER))
    wrapped = DefaultOptimWrapperConstructor(cfg, paramwise_cfg)(_Wrapper(nn.Linear(2, 2)))
    assert wrapped.get_lr() == {"lr": [0.1, 0.1]}  # names have no 'module.' prefix
    plain = DefaultOptimWrapperConstructor(cfg, paramwise_cfg)(_ModelWithModuleChild())
    assert plain.get_lr() == {"lr": [0.0, 0.0, 0.1, 0.1]}  # not unwrapped


def _ddp_lrs_and_bias_identity() -> tuple[dict, bool]:
    """In a one-rank gloo process: the lrs of a DDP model's groups, and whether group 1
    holds the inner module's bias itself."""
    ddp = nn.parallel.DistributedDataParallel(nn.Sequential(nn.Linear(2, 2)))
    paramwise_cfg = dict(custom_keys={"0.bias": dict(lr_mult=0.5)})
    wrapper = DefaultOptimWrapperConstructor(dict(optimizer=dict(_OPTIMIZER)),
                                             paramwise_cfg)(ddp)
    return wrapper.get_lr(), wrapper.param_groups[1]["params"][0] is ddp.module[0].bias


@pytest.mark.slow
def test_ddp_wrapped_model_uses_inner_parameter_names():
    lrs, same_bias = run_in_gloo_process(_ddp_lrs_and_bias_identity)
    assert lrs == {"lr": [0.1, 0.05]}
    assert same_bias


@pytest.mark.parametrize("paramwise_cfg, error, match", [
    (dict(bias_lr_mul=2.0), ValueError,
     r"'optim_wrapper.paramwise_cfg' has unknown keys \['bias_lr_mul'\]"),
    (dict(custom_keys={"head": 0.1}), TypeError, "'optim_wrapper.paramwise_cfg.custom_keys'"),
    ([("bias_lr_mult", 2.0)], TypeError, "'optim_wrapper.paramwise_cfg' must be None or a dict"),
])
def test_bad_paramwise_cfg_names_the_key(paramwise_cfg, error, match):
    with pytest.raises(error, match=match):
        DefaultOptimWrapperConstructor(dict(optimizer=dict(_OPTIMIZER)), paramwise_cfg)


def test_multipliers_need_their_base_values():
    with pytest.raises(ValueError, match="'optim_wrapper.optimizer.weight_decay' must be set"):
        DefaultOptimWrapperConstructor(dict(optimizer=dict(type="SGD", lr=0.1)),
                                       dict(norm_decay_mult=0.0))
    with pytest.raises(ValueError, match="'optim_wrapper.optimizer.lr' must be set"):
        DefaultOptimWrapperConstructor(dict(optimizer=dict(type="Adam")),
                                       dict(bias_lr_mult=2.0))


def test_missing_optimizer_names_the_key():
    with pytest.raises(ValueError, match="config 'optim_wrapper' has no 'optimizer' key"):
        DefaultOptimWrapperConstructor(dict(type="OptimWrapper"))
