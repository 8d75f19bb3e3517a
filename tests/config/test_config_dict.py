"""ConfigDict: attribute access, conversion of nested dicts, identity, copies."""
from __future__ import annotations

import copy
import pickle

import pytest

from raytrainer.config import ConfigDict


def test_nested_dicts_become_config_dicts_also_inside_lists_and_tuples():
    cfg = ConfigDict(model=dict(type="Net", heads=[dict(w=1)], pair=(dict(a=1), 2)))
    assert isinstance(cfg.model, ConfigDict)
    assert cfg.model.heads[0].w == 1
    assert isinstance(cfg.model.pair, tuple) and cfg.model.pair[0].a == 1


def test_lookup_returns_the_same_object_every_time():
    cfg = ConfigDict(model=dict(backbone=dict(depth=50)))
    assert cfg.model is cfg.model
    assert cfg["model"] is cfg.model
    assert cfg.model.backbone is cfg["model"]["backbone"]


def test_attribute_and_item_assignment_convert_dicts():
    cfg = ConfigDict()
    cfg.model = {"type": "Net"}
    cfg["data"] = [{"path": "x"}]
    cfg.setdefault("optim", {"lr": 0.1})
    cfg.update(hooks={"log": {"interval": 5}})
    assert cfg.model.type == "Net"
    assert cfg.data[0].path == "x"
    assert cfg.optim.lr == 0.1
    assert cfg.hooks.log.interval == 5


def test_missing_attribute_names_the_key_and_the_available_keys():
    cfg = ConfigDict(model=1, optimizer=2)
    with pytest.raises(AttributeError) as info:
        cfg.optimzer  # noqa: B018
    message = str(info.value)
    assert "'optimzer'" in message
    assert "['model', 'optimizer']" in message
    assert "did you mean 'optimizer'" in message
    assert not hasattr(cfg, "missing")


def test_to_dict_returns_plain_dicts():
    cfg = ConfigDict(a=dict(b=[dict(c=1)], t=(dict(d=2),)))
    plain = cfg.to_dict()
    assert plain == {"a": {"b": [{"c": 1}], "t": ({"d": 2},)}}
    assert type(plain["a"]) is dict and type(plain["a"]["b"][0]) is dict
    assert type(plain["a"]["t"][0]) is dict


def test_user_mapping_types_are_left_alone():
    class Mine(dict):
        pass

    cfg = ConfigDict(x=Mine(a=1))
    assert type(cfg.x) is Mine


def test_copy_is_shallow_and_deepcopy_is_deep():
    cfg = ConfigDict(model=dict(depth=18))
    shallow, deep = copy.copy(cfg), copy.deepcopy(cfg)
    assert isinstance(shallow, ConfigDict) and shallow.model is cfg.model
    assert isinstance(deep, ConfigDict) and deep.model is not cfg.model
    deep.model.depth = 50
    assert cfg.model.depth == 18


def test_pickle_keeps_the_type_and_values():
    cfg = ConfigDict(model=dict(layers=[dict(w=1)]))
    loaded = pickle.loads(pickle.dumps(cfg))
    assert loaded == cfg
    assert isinstance(loaded.model.layers[0], ConfigDict)
