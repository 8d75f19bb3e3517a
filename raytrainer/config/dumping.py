"""Writing config values back out as Python source (``pretty_text``), JSON or YAML.

This module owns the textual form of config values. A dump must load back to the same values:
a class or function becomes its import path string (``'torch.optim.sgd.SGD'``), which the
registry resolves again; a value with no faithful textual form raises an error naming its
config key instead of producing a file that loads differently or not at all.
"""
from __future__ import annotations

import importlib
import inspect
import json
import keyword
import math
import numbers
import os
from collections.abc import Mapping
from typing import Any

from raytrainer.config.errors import ConfigError

__all__ = ["dump_text", "python_source", "plain_data", "import_path"]

_LINE_LIMIT = 100
_INDENT = " " * 4


def dump_text(cfg: Mapping, suffix: str) -> str:
    """The text of ``cfg`` in the format of a file suffix (``.py``, ``.json``, ``.yaml``)."""
    if suffix == ".py":
        return python_source(cfg)
    if suffix == ".json":
        return json.dumps(plain_data(cfg), indent=4) + "\n"
    if suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as exc:
            raise ConfigError("dumping a YAML config needs PyYAML (pip install pyyaml)") from exc
        return yaml.safe_dump(plain_data(cfg), sort_keys=False, allow_unicode=True)
    raise ConfigError(f"cannot dump a config as '{suffix or '(no suffix)'}'; supported types are "
                      f".py, .json, .yaml, .yml")


def python_source(cfg: Mapping) -> str:
    """A Python config file (``model = dict(type='Net', ...)``) that loads back to ``cfg``.

    Raises:
        ConfigError: A top-level key is not a public Python name, or a value has no Python form.
    """
    lines = []
    for key, value in cfg.items():
        if not _is_keyword_name(key) or key.startswith("_"):
            raise ConfigError(f"cannot write top-level config key {key!r} as a variable of a "
                              f"Python config (it must be a public Python name); dump to "
                              f".json or .yaml instead")
        lines.append(f"{key} = {_expression(value, key, len(key) + 3, 0)}")
    return "\n".join(lines) + "\n"


def plain_data(value: Any, path: str = "") -> Any:
    """``value`` as JSON/YAML-ready data: dicts, lists, str, numbers, bools and None."""
    if isinstance(value, Mapping):
        return {key: plain_data(item, _join(path, key)) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain_data(item, _join(path, i)) for i, item in enumerate(value)]
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if inspect.isclass(value) or inspect.isroutine(value):
        return import_path(value, path)
    raise _no_text_form(value, path)


def import_path(obj: Any, path: str) -> str:
    """``'module.Name'`` for a class or function that can be imported back by that name.

    Raises:
        ConfigError: ``obj`` is nested, local, a lambda or defined in a config file; the
            message names the config key ``path``.
    """
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", "")
    if module and qualname.isidentifier():
        try:
            found = getattr(importlib.import_module(module), qualname, None)
        except ImportError:
            found = None
        if found is obj:
            return f"{module}.{qualname}"
    raise ConfigError(f"cannot dump config key '{path}': {obj!r} cannot be imported by name "
                      f"(it is nested, local, a lambda or defined in a config file); define it "
                      f"in a module and refer to it by import path or registered name")


def _expression(value: Any, path: str, used: int, level: int) -> str:
    """``value`` as Python, on one line if it fits after ``used`` characters, else indented."""
    inline = _inline(value, path)
    fits = used + len(inline) <= _LINE_LIMIT
    if fits or not isinstance(value, (Mapping, list, tuple)) or not value:
        return inline
    pad, items = _INDENT * (level + 1), []
    if isinstance(value, Mapping):
        call_style = all(_is_keyword_name(key) for key in value)
        for key, item in value.items():
            head = f"{key}=" if call_style else f"{_inline(key, path)}: "
            body = _expression(item, _join(path, key), len(pad) + len(head) + 1, level + 1)
            items.append(f"{pad}{head}{body},")
        opener, closer = ("dict(", ")") if call_style else ("{", "}")
    else:
        for i, item in enumerate(value):
            body = _expression(item, _join(path, i), len(pad) + 1, level + 1)
            items.append(f"{pad}{body},")
        opener, closer = ("[", "]") if isinstance(value, list) else ("(", ")")
    return opener + "\n" + "\n".join(items) + "\n" + _INDENT * level + closer


def _inline(value: Any, path: str) -> str:
    if isinstance(value, Mapping):
        if all(_is_keyword_name(key) for key in value):
            return "dict(" + ", ".join(f"{key}={_inline(item, _join(path, key))}"
                                       for key, item in value.items()) + ")"
        return "{" + ", ".join(f"{_inline(key, path)}: {_inline(item, _join(path, key))}"
                               for key, item in value.items()) + "}"
    if isinstance(value, (list, tuple, set, frozenset)):
        body = ", ".join(_inline(item, _join(path, i)) for i, item in enumerate(value))
        if isinstance(value, list):
            return f"[{body}]"
        if isinstance(value, tuple):
            return f"({body},)" if len(value) == 1 else f"({body})"
        text = f"{{{body}}}" if value else "set()"
        return text if isinstance(value, set) else f"frozenset({text})"
    return _literal(value, path)


def _literal(value: Any, path: str) -> str:
    if value is None or isinstance(value, (bool, str, bytes)):
        return repr(value)
    if isinstance(value, numbers.Integral):
        return repr(int(value))
    if isinstance(value, numbers.Real):
        number = float(value)
        return repr(number) if math.isfinite(number) else f"float('{number}')"
    if isinstance(value, numbers.Complex):
        return f"complex({_literal(value.real, path)}, {_literal(value.imag, path)})"
    if isinstance(value, os.PathLike):
        return repr(os.fspath(value))
    if inspect.isclass(value) or inspect.isroutine(value):
        return repr(import_path(value, path))
    raise _no_text_form(value, path)


def _no_text_form(value: Any, path: str) -> ConfigError:
    return ConfigError(f"cannot dump config key '{path}': {value!r} (type {type(value).__name__})"
                       f" has no text form that loads back; use a str, number, bool, None, "
                       f"list, tuple, dict, or an importable class or function")


def _is_keyword_name(key: Any) -> bool:
    """Whether ``key`` can be written as ``key=value`` in ``dict(...)``."""
    return isinstance(key, str) and key.isidentifier() and not keyword.iskeyword(key)


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)
