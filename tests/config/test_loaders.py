"""Config.fromfile: file formats, _base_ inheritance, substitutions and error messages."""
from __future__ import annotations

import json
import sys

import pytest
import torch

from raytrainer import storage
from raytrainer.config import Config, ConfigError, ConfigFileNotFound

MODEL_BASE = """
model = dict(type='Net', depth=18, norm=dict(type='BN', eps=1e-5), layers=[1, 2])
"""


def test_py_config_keeps_assigned_values_and_drops_helpers(write):
    path = write("cfg.py", """
        import math
        from torch.optim import SGD
        from torch import optim as optim_pkg

        def helper(x):
            return x * 2

        class Local:
            pass

        _private = 3
        scale = helper(_private)
        optim = SGD
        optimizer = dict(type=SGD, lr=math.sqrt(0.01), betas=(0.9, 0.99))
        """)
    cfg = Config.fromfile(path)
    assert cfg.to_dict() == {"scale": 6, "optim": torch.optim.SGD,
                             "optimizer": {"type": torch.optim.SGD, "lr": 0.1,
                                           "betas": (0.9, 0.99)}}
    assert cfg.filename == str(path)
    assert "def helper" in cfg.text


def test_relative_path_is_resolved_against_the_working_directory(write, tmp_path,
                                                                 monkeypatch):
    write("configs/a.py", "x = 1\n")
    monkeypatch.chdir(tmp_path)
    cfg = Config.fromfile("configs/a.py")
    assert cfg.x == 1
    assert cfg.filename == str(tmp_path / "configs" / "a.py")


def test_json_and_yaml_configs(write):
    json_cfg = Config.fromfile(write("a.json", json.dumps({"model": {"depth": 18}})))
    assert json_cfg.model.depth == 18
    pytest.importorskip("yaml")
    yaml_cfg = Config.fromfile(write("a.yaml", "model:\n  depth: 50\nlist: [1, 2]\n"))
    assert yaml_cfg.to_dict() == {"model": {"depth": 50}, "list": [1, 2]}
    assert Config.fromfile(write("b.yml", "")).to_dict() == {}


def test_single_base_merges_dicts_and_replaces_lists(write):
    write("_base_/model.py", MODEL_BASE)
    path = write("child.py", """
        _base_ = './_base_/model.py'
        model = dict(depth=50, layers=[3])
        """)
    assert Config.fromfile(path).to_dict() == {
        "model": {"type": "Net", "depth": 50, "norm": {"type": "BN", "eps": 1e-5},
                  "layers": [3]}}


def test_list_of_bases_in_nested_dirs_relative_to_the_referring_file(write):
    write("configs/_base_/models/net.py", MODEL_BASE)
    write("configs/_base_/schedules/short.py", """
        _base_ = '../models/net.py'
        max_epochs = 2
        model = dict(depth=34)
        """)
    path = write("configs/exp/child.py", """
        _base_ = ['../_base_/schedules/short.py', '../_base_/default.py']
        max_epochs = 12
        """)
    with pytest.raises(ConfigFileNotFound):
        Config.fromfile(path)
    write("configs/_base_/default.py", "log_level = 'INFO'\n")
    cfg = Config.fromfile(path)
    assert cfg.model.depth == 34
    assert cfg.max_epochs == 12
    assert cfg.log_level == "INFO"
    assert "_base_" not in cfg


def test_later_base_and_child_override_earlier_values(write):
    write("a.py", "model = dict(depth=18, width=1)\n")
    write("b.py", "_base_ = 'a.py'\nmodel = dict(depth=34)\n")
    path = write("c.py", "_base_ = ['b.py']\nmodel = dict(width=2)\n")
    assert Config.fromfile(path).model == {"depth": 34, "width": 2}


def test_delete_replaces_the_base_dict(write):
    write("base.py", MODEL_BASE)
    path = write("child.py", """
        _base_ = 'base.py'
        model = dict(norm=dict(_delete_=True, type='GN', groups=4))
        """)
    cfg = Config.fromfile(path)
    assert cfg.model.norm == {"type": "GN", "groups": 4}
    assert cfg.model.depth == 18


def test_child_dict_over_non_dict_base_value_names_key_and_file(write):
    write("base.py", "model = dict(norm='BN')\n")
    path = write("child.py", "_base_ = 'base.py'\nmodel = dict(norm=dict(type='GN'))\n")
    with pytest.raises(ConfigError) as info:
        Config.fromfile(path)
    message = str(info.value)
    assert str(path) in message and "'model.norm'" in message and "_delete_=True" in message


def test_same_key_in_two_bases_names_the_key_and_both_files(write):
    first = write("a.py", "model = dict(depth=18)\nx = 1\n")
    second = write("b.py", "model = dict(depth=50)\n")
    path = write("child.py", "_base_ = ['a.py', 'b.py']\n")
    with pytest.raises(ConfigError) as info:
        Config.fromfile(path)
    message = str(info.value)
    assert "'model'" in message
    assert str(first) in message and str(second) in message


def test_base_value_substitution_and_base_attribute_access(write):
    write("base.py", MODEL_BASE + "pipeline = [dict(type='Load'), dict(type='Resize')]\n")
    path = write("child.py", """
        _base_ = 'base.py'
        backbone_depth = {{_base_.model.depth}}
        train = dict(pipeline={{ _base_.pipeline }}, first={{_base_.pipeline.0.type}})
        doubled = _base_.model.depth * 2
        """)
    cfg = Config.fromfile(path)
    assert cfg.backbone_depth == 18
    assert cfg.train.pipeline == [{"type": "Load"}, {"type": "Resize"}]
    assert cfg.train.first == "Load"
    assert cfg.doubled == 36


def test_base_value_substitution_in_json(write):
    write("base.py", MODEL_BASE)
    path = write("child.json", '{"_base_": "base.py", "depth": {{_base_.model.depth}}}')
    assert Config.fromfile(path).depth == 18


def test_unknown_base_reference_names_it_and_the_file(write):
    write("base.py", MODEL_BASE)
    path = write("child.py", "_base_ = 'base.py'\nx = {{_base_.model.width}}\n")
    with pytest.raises(ConfigError) as info:
        Config.fromfile(path)
    assert "{{_base_.model.width}}" in str(info.value) and str(path) in str(info.value)


def test_predefined_and_environment_variables(write, monkeypatch):
    monkeypatch.setenv("RT_EPOCHS", "7")
    path = write("exp/my_exp.py", """
        work_dir = './work_dirs/{{ fileBasenameNoExtension }}'
        here = '{{ fileDirname }}'
        epochs = {{$RT_EPOCHS:3}}
        batch = {{$RT_UNSET_BATCH:16}}
        """)
    cfg = Config.fromfile(path)
    assert cfg.work_dir == "./work_dirs/my_exp"
    assert cfg.here == str(path.parent)
    assert (cfg.epochs, cfg.batch) == (7, 16)


def test_syntax_error_names_the_file_line_and_shows_it(write):
    path = write("bad.py", "a = 1\nmodel = dict(type='Net',, depth=3)\n")
    with pytest.raises(ConfigError) as info:
        Config.fromfile(path)
    message = str(info.value)
    assert str(path) in message and "line 2" in message
    assert "model = dict(type='Net',, depth=3)" in message


def test_exception_while_executing_names_the_file_and_line(write):
    path = write("bad.py", "a = 1\nb = a / 0\n")
    with pytest.raises(ConfigError) as info:
        Config.fromfile(path)
    message = str(info.value)
    assert str(path) in message and "line 2" in message and "ZeroDivisionError" in message
    assert isinstance(info.value.__cause__, ZeroDivisionError)


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.py"
    with pytest.raises(ConfigFileNotFound) as info:
        Config.fromfile(missing)
    assert str(missing) in str(info.value)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ConfigError)


def test_missing_base_names_the_base_path_and_the_referring_file(write, tmp_path):
    path = write("child.py", "_base_ = ['./_base_/missing.py']\n")
    with pytest.raises(ConfigFileNotFound) as info:
        Config.fromfile(path)
    message = str(info.value)
    assert str(tmp_path / "_base_" / "missing.py") in message
    assert str(path) in message and "'./_base_/missing.py'" in message


def test_unsupported_suffix_names_it_and_the_supported_ones(write):
    path = write("cfg.toml", "a = 1\n")
    with pytest.raises(ConfigError) as info:
        Config.fromfile(path)
    assert "'.toml'" in str(info.value) and ".py, .json, .yaml, .yml" in str(info.value)


def test_circular_bases_are_reported(write):
    write("a.py", "_base_ = 'b.py'\n")
    path = write("b.py", "_base_ = 'a.py'\n")
    with pytest.raises(ConfigError, match="circular _base_ inheritance"):
        Config.fromfile(path)


def test_non_literal_base_is_an_error(write):
    path = write("a.py", "name = 'b.py'\n_base_ = name\n")
    with pytest.raises(ConfigError, match=r"line 2: _base_ must be a literal"):
        Config.fromfile(path)


def test_invalid_json_names_file_and_line(write):
    path = write("a.json", '{\n  "a": 1,\n  "b": \n}')
    with pytest.raises(ConfigError) as info:
        Config.fromfile(path)
    assert str(path) in str(info.value) and "line 4" in str(info.value)


def test_custom_imports_are_imported(write, tmp_path, monkeypatch):
    write("my_plugins/__init__.py", "")
    write("my_plugins/marker.py", "LOADED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_plugins.marker", raising=False)
    path = write("cfg.py", "custom_imports = dict(imports=['my_plugins.marker'])\n")
    Config.fromfile(path, import_custom_modules=False)
    assert "my_plugins.marker" not in sys.modules
    Config.fromfile(path)
    assert sys.modules["my_plugins.marker"].LOADED is True


def test_failed_custom_import_names_the_module_and_the_file(write):
    path = write("cfg.py", "custom_imports = dict(imports=['no_such_module_xyz'])\n")
    with pytest.raises(ConfigError) as info:
        Config.fromfile(path)
    assert "'no_such_module_xyz'" in str(info.value) and str(path) in str(info.value)
    allowed = write("ok.py", "custom_imports = dict(imports=['no_such_module_xyz'], "
                             "allow_failed_imports=True)\n")
    assert Config.fromfile(allowed).custom_imports.allow_failed_imports is True


def test_fromfile_memory_url_with_relative_base(memory_dir):
    storage.write_text(f"{memory_dir}/_base_/model.py", MODEL_BASE)
    storage.write_text(f"{memory_dir}/exp/child.py",
                       "_base_ = '../_base_/model.py'\nmodel = dict(depth=50)\n")
    cfg = Config.fromfile(f"{memory_dir}/exp/child.py")
    assert cfg.model.depth == 50 and cfg.model.type == "Net"
    assert cfg.filename == f"{memory_dir}/exp/child.py"


def test_fromstring_formats():
    assert Config.fromstring("a = dict(b=1)\n").a.b == 1
    assert Config.fromstring('{"a": [1, 2]}', ".json").a == [1, 2]
    with pytest.raises(ConfigError, match="'.ini'"):
        Config.fromstring("a=1", ".ini")


def test_pure_python_read_base_configs_are_rejected_clearly(write):
    path = write("a.py", "from mmengine.config import read_base\nwith read_base():\n"
                         "    from .b import *\n")
    with pytest.raises(ConfigError, match="read_base"):
        Config.fromfile(path)
