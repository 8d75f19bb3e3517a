"""pretty_text and dump: valid Python, round trips, import paths for classes."""
from __future__ import annotations

import json
import math

import pytest
import torch

from raytrainer import storage
from raytrainer.config import Config, ConfigError
from raytrainer.registry import Registry, build_from_cfg

PLAIN = dict(
    model=dict(type="Net", depth=50, norm=dict(type="BN", eps=1e-5, requires_grad=True),
               channels=(64, 128, 256), single=(1,), empty=(), weird_keys={"a-b": 1, 3: "x"}),
    pipeline=[dict(type="Load", path=f"/data/{i}", scale=(0.5, 2.0)) for i in range(6)],
    work_dir=None,
    names=["a", "b'c", 'd"e'],
    ratio=-0.25,
)


def test_pretty_text_is_valid_python_that_recreates_the_values():
    text = Config(PLAIN).pretty_text
    namespace: dict = {}
    exec(text, namespace)
    assert {key: namespace[key] for key in PLAIN} == PLAIN
    assert text.startswith("model = dict(")
    assert max(len(line) for line in text.splitlines()) <= 100


def test_dump_without_path_returns_text():
    assert Config(dict(a=1)).dump() == "a = 1\n"
    assert json.loads(Config(dict(a=1), filename="/x/cfg.json").dump()) == {"a": 1}


@pytest.mark.parametrize("suffix", [".py", ".json", ".yaml", ".yml"])
def test_dump_and_fromfile_round_trip(tmp_path, suffix):
    if suffix in (".yaml", ".yml"):
        pytest.importorskip("yaml")
    cfg = Config(PLAIN)
    path = tmp_path / f"dumped{suffix}"
    assert cfg.dump(path) is None
    loaded = Config.fromfile(path)
    if suffix == ".py":
        assert loaded.to_dict() == cfg.to_dict()
        assert isinstance(loaded.model.channels, tuple)
    else:  # JSON and YAML have no tuples or non-string keys
        expected = json.loads(json.dumps(cfg.to_dict()))
        assert json.loads(json.dumps(loaded.to_dict())) == expected


def test_round_trip_of_a_loaded_config_with_bases(write, tmp_path):
    write("base.py", "model = dict(type='Net', depth=18)\nsteps = [1, 2]\n")
    cfg = Config.fromfile(write("child.py", "_base_ = 'base.py'\nmodel = dict(depth=50)\n"))
    cfg.dump(tmp_path / "out.py")
    assert Config.fromfile(tmp_path / "out.py").to_dict() == cfg.to_dict()


def test_classes_and_functions_dump_as_import_paths_the_registry_resolves(tmp_path):
    cfg = Config(dict(optimizer=dict(type=torch.optim.SGD, lr=0.1),
                      act=torch.nn.functional.relu))
    text = cfg.pretty_text
    assert "type='torch.optim.sgd.SGD'" in text
    assert "act = 'torch.nn.functional.relu'" in text
    cfg.dump(tmp_path / "out.py")
    loaded = Config.fromfile(tmp_path / "out.py")
    optimizers = Registry("optimizer")
    params = [torch.nn.Parameter(torch.zeros(1))]
    built = build_from_cfg(dict(loaded.optimizer, params=params), optimizers)
    assert isinstance(built, torch.optim.SGD)
    cfg.dump(tmp_path / "out.json")
    dumped = json.loads((tmp_path / "out.json").read_text())
    assert dumped["optimizer"]["type"] == "torch.optim.sgd.SGD"


def test_values_without_a_faithful_text_form_name_their_key():
    with pytest.raises(ConfigError, match=r"'model\.act'.*cannot be imported"):
        _ = Config(dict(model=dict(act=lambda x: x))).pretty_text
    with pytest.raises(ConfigError, match=r"'model\.dtype'.*torch\.float16"):
        Config(dict(model=dict(dtype=torch.float16))).dump()


def test_top_level_keys_that_are_not_python_names_cannot_be_dumped_as_python(tmp_path):
    with pytest.raises(ConfigError, match="'my-key'.*json"):
        Config({"my-key": 1}).dump(tmp_path / "x.py")
    Config({"my-key": 1}).dump(tmp_path / "x.json")
    assert Config.fromfile(tmp_path / "x.json")["my-key"] == 1


def test_special_floats_and_paths(tmp_path):
    cfg = Config(dict(low=float("-inf"), high=math.inf, work_dir=tmp_path))
    cfg.dump(tmp_path / "x.py")
    loaded = Config.fromfile(tmp_path / "x.py")
    assert (loaded.low, loaded.high, loaded.work_dir) == (-math.inf, math.inf, str(tmp_path))


def test_unsupported_dump_suffix(tmp_path):
    with pytest.raises(ConfigError, match="'.txt'"):
        Config(dict(a=1)).dump(tmp_path / "x.txt")


def test_dump_to_memory_url_and_load_it_back(memory_dir):
    cfg = Config(PLAIN)
    cfg.dump(f"{memory_dir}/out/cfg.py")
    assert storage.read_text(f"{memory_dir}/out/cfg.py") == cfg.pretty_text
    assert Config.fromfile(f"{memory_dir}/out/cfg.py").to_dict() == cfg.to_dict()
