"""Text substitutions done to a config file before it is parsed, as MMEngine does them.

This module owns three placeholders and nothing else:

* ``{{ fileDirname }}``, ``{{ fileBasename }}``, ``{{ fileBasenameNoExtension }}``,
  ``{{ fileExtname }}``: facts about the config file's own location, inserted as raw text.
* ``{{$NAME:default}}``: the environment variable ``NAME`` (or ``default``), as raw text.
* ``{{_base_.key.path}}``: a value of the file's bases. The text gets a unique string marker
  (so the file still parses as Python, JSON or YAML); after parsing, each marker is replaced by
  a copy of the base value.
"""
from __future__ import annotations

import copy
import os
import re
import uuid
from collections.abc import Mapping
from typing import Any

from raytrainer.config.config_dict import ConfigDict, is_dict_node
from raytrainer.config.errors import ConfigError

__all__ = ["substitute_predefined_vars", "substitute_env_vars", "mark_base_references",
           "resolve_base_references"]

_ENV_PATTERN = re.compile(r"\{\{['\"]?\s*\$(\w+)\s*:\s*(.*?)\s*['\"]?\}\}")
_BASE_REF_PATTERN = re.compile(r"\{\{\s*_base_\.([\w.]+?)\s*\}\}")


def substitute_predefined_vars(text: str, location: str) -> str:
    """Insert the config file's directory, name, stem and suffix where the text asks for them."""
    if "://" in location:
        dirname, basename = location.rsplit("/", 1)
    else:
        dirname, basename = os.path.split(location)
    stem, suffix = os.path.splitext(basename)
    values = {"fileDirname": dirname, "fileBasename": basename,
              "fileBasenameNoExtension": stem, "fileExtname": suffix}
    for name, value in values.items():
        text = re.sub(r"\{\{\s*" + name + r"\s*\}\}", lambda _m, v=value: v, text)
    return text


def substitute_env_vars(text: str, filename: str) -> str:
    """Replace ``{{$NAME:default}}`` by the environment variable ``NAME`` or by ``default``.

    Raises:
        ConfigError: ``NAME`` is unset and no default is given.
    """
    def replace(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default:
            return default
        raise ConfigError(f"{filename}: environment variable '{name}' is not set and "
                          f"'{match.group(0)}' gives no default (write {{{{${name}:default}}}})")

    return _ENV_PATTERN.sub(replace, text)


def mark_base_references(text: str) -> tuple[str, dict[str, str]]:
    """Replace each ``{{_base_.a.b}}`` by a quoted unique marker.

    Returns:
        The new text, and ``{marker: 'a.b'}``.
    """
    markers: dict[str, str] = {}
    by_key: dict[str, str] = {}

    def replace(match: re.Match) -> str:
        key = match.group(1)
        if key not in by_key:
            by_key[key] = f"_raytrainer_base_ref_{len(by_key)}_{uuid.uuid4().hex[:8]}"
            markers[by_key[key]] = key
        return f'"{by_key[key]}"'

    return _BASE_REF_PATTERN.sub(replace, text), markers


def resolve_base_references(value: Any, markers: Mapping[str, str], base: Mapping,
                            filename: str) -> Any:
    """Replace the markers left by :func:`mark_base_references` by copies of base values.

    Raises:
        ConfigError: A reference names a key the bases do not define.
    """
    if not markers:
        return value
    if is_dict_node(value):
        return ConfigDict((key, resolve_base_references(item, markers, base, filename))
                          for key, item in value.items())
    if type(value) in (list, tuple):
        return type(value)(resolve_base_references(item, markers, base, filename)
                           for item in value)
    if isinstance(value, str) and value in markers:
        return copy.deepcopy(_lookup(base, markers[value], filename))
    return value


def _lookup(base: Mapping, dotted: str, filename: str) -> Any:
    node: Any = base
    for part in dotted.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise ConfigError(f"{filename}: {{{{_base_.{dotted}}}}} names a value its _base_ "
                              f"files do not define (top-level base keys: {sorted(base)})")
    return node
