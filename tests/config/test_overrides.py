"""Config.merge_from_dict: dotted keys, list indices, new keys, and the errors."""
from __future__ import annotations

import pytest

from raytrainer.config import Config, ConfigError


@pytest.fixture
def cfg():
    return Config(dict(
        model=dict(type="Net", depth=18, norm=dict(type="BN")),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.1, momentum=0.9)),
        param_scheduler=[dict(type="LinearLR", end=5), dict(type="StepLR", step=3)],
        sizes=((1, 2), dict(scale=3)),
    ))


def test_dotted_keys_set_nested_values(cfg):
    cfg.merge_from_dict({"model.depth": 50, "optim_wrapper.optimizer.lr": 0.01})
    assert cfg.model.depth == 50 and cfg.model.type == "Net"
    assert cfg.optim_wrapper.optimizer == {"type": "SGD", "lr": 0.01, "momentum": 0.9}


def test_integer_components_index_lists_and_rebuild_tuples(cfg):
    cfg.merge_from_dict({"param_scheduler.0.end": 10, "sizes.0.1": 7, "sizes.1.scale": 4})
    assert cfg.param_scheduler[0] == {"type": "LinearLR", "end": 10}
    assert cfg.param_scheduler[1].step == 3
    assert cfg.sizes == ((1, 7), {"scale": 4})
    assert isinstance(cfg.sizes, tuple) and isinstance(cfg.sizes[0], tuple)


def test_list_element_dicts_merge_unless_delete(cfg):
    cfg.merge_from_dict({"param_scheduler.1": dict(type="CosineAnnealingLR", T_max=9)})
    assert cfg.param_scheduler[1] == {"type": "CosineAnnealingLR", "step": 3, "T_max": 9}
    cfg.merge_from_dict({"param_scheduler.1": dict(_delete_=True, type="ConstantLR")})
    assert cfg.param_scheduler[1] == {"type": "ConstantLR"}


def test_new_keys_and_new_dicts_are_created(cfg):
    cfg.merge_from_dict({"model.with_cp": True, "work_dir": "/tmp/x",
                         "default_hooks.checkpoint.interval": 2})
    assert cfg.model.with_cp is True
    assert cfg.work_dir == "/tmp/x"
    assert cfg.default_hooks.checkpoint.interval == 2


def test_dict_values_merge_unless_delete(cfg):
    cfg.merge_from_dict({"model": dict(depth=34, norm=dict(eps=1e-3))})
    assert cfg.model == {"type": "Net", "depth": 34, "norm": {"type": "BN", "eps": 1e-3}}
    cfg.merge_from_dict({"model.norm": dict(_delete_=True, type="GN")})
    assert cfg.model.norm == {"type": "GN"}


def test_dict_with_integer_keys_merges_into_a_list(cfg):
    cfg.merge_from_dict({"param_scheduler": {"1": dict(step=4)}})
    assert cfg.param_scheduler[1] == {"type": "StepLR", "step": 4}


def test_lists_are_replaced_not_merged(cfg):
    cfg.merge_from_dict({"param_scheduler": [dict(type="ConstantLR")]})
    assert cfg.param_scheduler == [{"type": "ConstantLR"}]


def test_identity_is_stable_after_a_merge(cfg):
    cfg.merge_from_dict({"model.depth": 50})
    assert cfg.model is cfg["model"] is cfg.model


def test_traversing_into_a_scalar_names_the_key_and_the_type(cfg):
    with pytest.raises(ConfigError) as info:
        cfg.merge_from_dict({"model.depth.x": 1})
    message = str(info.value)
    assert "'model.depth.x'" in message and "'model.depth'" in message and "int" in message
    assert cfg.model.depth == 18


def test_list_index_out_of_range_names_the_key_and_the_length(cfg):
    with pytest.raises(ConfigError) as info:
        cfg.merge_from_dict({"param_scheduler.5.end": 1})
    message = str(info.value)
    assert "'param_scheduler.5.end'" in message and "length 2" in message


def test_non_integer_component_on_a_list_is_an_error(cfg):
    with pytest.raises(ConfigError, match=r"'param_scheduler' is a list of length 2, so "
                                          r"'type' must be an integer index"):
        cfg.merge_from_dict({"param_scheduler.type": "X"})


def test_list_keys_can_be_disallowed(cfg):
    with pytest.raises(ConfigError, match="allow_list_keys=False"):
        cfg.merge_from_dict({"param_scheduler.0.end": 1}, allow_list_keys=False)


def test_near_miss_of_an_existing_key_suggests_it(cfg):
    with pytest.raises(ConfigError) as info:
        cfg.merge_from_dict({"optim_wrapper.optimzer.lr": 0.1})
    assert "did you mean 'optim_wrapper.optimizer'?" in str(info.value)
    assert "optimzer" not in cfg.optim_wrapper
    with pytest.raises(ConfigError, match="did you mean 'model'"):
        cfg.merge_from_dict({"modle.depth": 3})


def test_near_miss_check_can_be_turned_off(cfg):
    cfg.merge_from_dict({"optim_wrapper.optimzer": 1}, check_typos=False)
    assert cfg.optim_wrapper.optimzer == 1


def test_real_new_keys_next_to_similar_names_are_accepted(cfg):
    cfg.merge_from_dict({"test_dataloader.batch_size": 2})
    cfg.merge_from_dict({"val_dataloader.batch_size": 4, "model.in_channels": 3})
    cfg.merge_from_dict({"model.out_channels": 8})
    assert cfg.val_dataloader.batch_size == 4 and cfg.model.out_channels == 8


def test_a_failed_merge_leaves_the_config_unchanged(cfg):
    before = cfg.to_dict()
    with pytest.raises(ConfigError):
        cfg.merge_from_dict({"model.depth": 50, "param_scheduler.9": 1})
    assert cfg.to_dict() == before


def test_empty_key_component_is_an_error(cfg):
    with pytest.raises(ConfigError, match="'model..depth'"):
        cfg.merge_from_dict({"model..depth": 1})
