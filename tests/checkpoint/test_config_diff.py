"""Naming the model keys that differ between a checkpoint's stored config and the current one."""
from __future__ import annotations

import pytest
import torch

from raytrainer.checkpoint.config_diff import model_key_differences, saved_sections
from raytrainer.config import Config
from raytrainer.runner import Runner
from tests.runner.helpers import runner_kwargs


def _text(**model) -> str:
    return Config(dict(model=dict(type="MLPClassifier", **model), work_dir="w")).pretty_text


def test_the_differing_model_keys_are_named_with_both_values():
    lines = model_key_differences(_text(hidden_dims=[64, 64], dropout=0.1),
                                  {"model": dict(type="MLPClassifier", hidden_dims=[128, 128],
                                                 dropout=0.1)})
    assert lines == ["model.hidden_dims: checkpoint [64, 64], config [128, 128]"]


def test_added_and_removed_keys_are_named():
    lines = model_key_differences(_text(hidden_dims=[64]),
                                  {"model": dict(type="MLPClassifier", num_classes=5)})
    assert lines == ["model.hidden_dims: checkpoint [64], config '<unset>'",
                     "model.num_classes: checkpoint '<unset>', config 5"]


def test_a_class_given_as_type_matches_its_name_in_the_stored_text():
    text = Config(dict(model=dict(type=torch.nn.Linear, in_features=2))).pretty_text
    assert model_key_differences(text, {"model": dict(type=torch.nn.Linear,
                                                      in_features=2)}) == []


def test_an_unreadable_stored_value_is_left_out():
    assert model_key_differences("model = dict(a={[1]: 2}, b=1)\n",
                                 {"model": dict(a=3, b=2)}) == ["model.b: checkpoint 1, config 2"]


def test_the_stored_text_is_never_executed(tmp_path):
    marker = tmp_path / "ran"
    text = f"import os\nos.mkdir({str(marker)!r})\nmodel = dict(type=__import__('os').getcwd())\n"
    assert saved_sections(text)["model"] is not None
    assert model_key_differences(text, {"model": dict(type="X")}) == []
    assert not marker.exists()


def test_resuming_into_a_changed_model_names_the_config_keys_that_differ(tmp_path):
    def cfg(hidden, epochs, **more):
        kwargs = runner_kwargs(tmp_path / "work", epochs=epochs, val=False, **more)
        kwargs["model"] = dict(type="MLPClassifier", hidden_dims=hidden)
        return Config(kwargs)

    Runner.from_cfg(cfg([16], 1)).train()
    with pytest.raises(ValueError) as info:
        Runner.from_cfg(cfg([32], 2, resume=True)).train()
    message = str(info.value)
    assert "size mismatch" in message
    assert "model.hidden_dims: checkpoint [16], config [32]" in message
