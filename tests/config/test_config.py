"""Config: construction, access, copies, pickling and reserved keys."""
from __future__ import annotations

import copy
import pickle

import pytest

from raytrainer.config import Config, ConfigDict, ConfigError


@pytest.fixture
def cfg():
    return Config(dict(model=dict(type="Net", backbone=dict(depth=18)), lr=0.1),
                  filename="/cfgs/exp.py")


def test_attribute_and_item_access_with_stable_identity(cfg):
    assert cfg.model.backbone.depth == 18
    assert cfg["model"]["type"] == "Net"
    assert isinstance(cfg.model, ConfigDict)
    assert cfg.model is cfg.model and cfg["model"] is cfg.model


def test_mapping_methods(cfg):
    assert cfg.get("lr") == 0.1 and cfg.get("missing", 3) == 3
    assert cfg.setdefault("seed", 7) == 7 and cfg.seed == 7
    assert cfg.setdefault("lr", 1.0) == 0.1
    assert "model" in cfg and "nope" not in cfg
    assert list(cfg) == ["model", "lr", "seed"] == list(cfg.keys())
    assert dict(cfg.items())["lr"] == 0.1 and 0.1 in list(cfg.values())
    assert len(cfg) == 3
    assert cfg.pop("seed") == 7  # forwarded to the ConfigDict, as in MMEngine


def test_setting_values_converts_dicts(cfg):
    cfg.optim = dict(type="SGD")
    cfg["hooks"] = [dict(type="Log")]
    assert cfg.optim.type == "SGD" and cfg.hooks[0].type == "Log"
    del cfg.optim
    del cfg["hooks"]
    assert "optim" not in cfg and "hooks" not in cfg


def test_missing_attribute_names_the_key_and_the_available_keys(cfg):
    with pytest.raises(AttributeError, match=r"'modle'.*\['lr', 'model'\].*did you mean 'model'"):
        cfg.modle  # noqa: B018


def test_constructor_copies_and_unshares_dicts():
    shared = dict(type="BN")
    source = dict(a=dict(norm=shared), b=dict(norm=shared))
    cfg = Config(source)
    cfg.a.norm.type = "GN"
    assert cfg.b.norm.type == "BN" and shared["type"] == "BN"
    assert Config().to_dict() == {} and Config().filename is None


def test_constructor_rejects_non_mappings_and_reserved_keys():
    with pytest.raises(ConfigError, match="list"):
        Config([1, 2])
    with pytest.raises(ConfigError, match="'filename'.*reserved"):
        Config(dict(filename="x"))
    with pytest.raises(ConfigError, match="'pretty_text'"):
        Config()["pretty_text"] = 1


def test_to_dict_is_plain_and_new(cfg):
    plain = cfg.to_dict()
    assert type(plain["model"]) is dict and type(plain["model"]["backbone"]) is dict
    plain["model"]["type"] = "Other"
    assert cfg.model.type == "Net"


def test_copy_and_deepcopy(cfg):
    shallow, deep = cfg.copy(), copy.deepcopy(cfg)
    assert copy.copy(cfg).model is cfg.model and shallow.model is cfg.model
    shallow.lr = 1.0
    assert cfg.lr == 0.1
    deep.model.backbone.depth = 50
    assert cfg.model.backbone.depth == 18
    assert deep.filename == cfg.filename == "/cfgs/exp.py"


def test_pickle_round_trip(cfg):
    loaded = pickle.loads(pickle.dumps(cfg))
    assert loaded.to_dict() == cfg.to_dict() and loaded.filename == cfg.filename
    assert isinstance(loaded.model, ConfigDict)


def test_repr_names_the_file(cfg):
    assert repr(cfg).startswith("Config (path: /cfgs/exp.py): {'model'")
