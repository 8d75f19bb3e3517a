"""--cfg-options parsing: the value syntax table and the argparse action."""
from __future__ import annotations

import argparse

import pytest

from raytrainer.config import ConfigError, DictAction, parse_cfg_options
from raytrainer.config.parsing import parse_value


@pytest.mark.parametrize("text, expected", [
    ("1", 1),
    ("-3", -3),
    ("0.1", 0.1),
    ("1e-3", 1e-3),
    ("true", True),
    ("False", False),
    ("TRUE", True),
    ("None", None),
    ("none", None),
    ("abc", "abc"),
    ("'str'", "str"),
    ('"1"', "1"),
    ("'a,b'", "a,b"),
    ("'[x]'", "[x]"),
    ("", ""),
    ("hello world", "hello world"),
    ("[1,2]", [1, 2]),
    ("[1, 2, ]", [1, 2]),
    ("[]", []),
    ("()", ()),
    ("(1,2)", (1, 2)),
    ("(1,)", (1,)),
    ("[(1,2),[3,4]]", [(1, 2), [3, 4]]),
    ("[a, 'b,c', [d]]", ["a", "b,c", ["d"]]),
    ("a,b", ["a", "b"]),
    ("1,2,3", [1, 2, 3]),
    ("a,", ["a"]),
    ("(1,2),(3,4)", [(1, 2), (3, 4)]),
    ("[1,2]x", "[1,2]x"),
])
def test_value_syntax(text, expected):
    value = parse_value(text)
    assert value == expected
    assert type(value) is type(expected)


def test_parse_cfg_options_table():
    tokens = ["a.b=1", "c=[1,2]", "d=None", "e=true", "f.0.lr=0.1", "g=(1,2)", "h='str'",
              "i=abc", "j=1e-3", "k=[(1,2),[3,4]]", "m=a,b", "n=x=y"]
    assert parse_cfg_options(tokens) == {
        "a.b": 1, "c": [1, 2], "d": None, "e": True, "f.0.lr": 0.1, "g": (1, 2), "h": "str",
        "i": "abc", "j": 1e-3, "k": [(1, 2), [3, 4]], "m": ["a", "b"], "n": "x=y"}


@pytest.mark.parametrize("token", ["model.depth", "=3"])
def test_token_without_key_value_form_names_the_token(token):
    with pytest.raises(ConfigError) as info:
        parse_cfg_options([token])
    assert f"'{token}'" in str(info.value) and "key=value" in str(info.value)


@pytest.mark.parametrize("token, bracket", [("a=[1,2", "'['"), ("a=(1,2]", "'('"),
                                            ("a=1,2]", "']'"), ("a=['x]", "'['")])
def test_unbalanced_brackets_name_the_token(token, bracket):
    with pytest.raises(ConfigError) as info:
        parse_cfg_options([token])
    assert f"'{token}'" in str(info.value) and f"unbalanced {bracket}" in str(info.value)


def _parser():
    parser = argparse.ArgumentParser(prog="train")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    return parser


def test_dict_action_collects_and_accumulates():
    args = _parser().parse_args(["--cfg-options", "model.depth=50", "gpu_ids=0,1",
                                 "--cfg-options", "lr=0.1", "model.depth=101"])
    assert args.cfg_options == {"model.depth": 101, "gpu_ids": [0, 1], "lr": 0.1}
    assert _parser().parse_args([]).cfg_options is None


def test_dict_action_reports_bad_tokens_as_usage_errors(capsys):
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(["--cfg-options", "model.depth"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --cfg-options" in err and "'model.depth'" in err and "key=value" in err


@pytest.mark.parametrize("text,expected", [
    ('{"a": 1}', {"a": 1}),
    ("{'a': 1, 'b': [2, 3]}", {"a": 1, "b": [2, 3]}),
    ("dict(a=1)", {"a": 1}),
    ("dict(type='SGD', lr=0.1, betas=(0.9, 0.99), nested=dict(x=None))",
     {"type": "SGD", "lr": 0.1, "betas": (0.9, 0.99), "nested": {"x": None}}),
    ("[{'a': 1, 'b': 2}, 3]", [{"a": 1, "b": 2}, 3]),
    ("epoch_{}", "epoch_{}"),  # braces inside a word stay text
])
def test_dicts_are_parsed_not_kept_as_strings(text, expected):
    assert parse_value(text) == expected


@pytest.mark.parametrize("text,message", [
    ('{"a": 1', "is not valid Python"),
    ("{1, 2}", "is a set"),
    ("dict(a=open('x'))", "cannot read \"open('x')\""),
    ("dict(**x)", "cannot read"),
])
def test_malformed_dicts_are_rejected_with_a_message(text, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_value(text)
