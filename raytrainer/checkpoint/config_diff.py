"""Which config keys of the model differ between a checkpoint and the current config.

A checkpoint records the config of the run that wrote it (``meta['cfg']``, the config's
Python text). When its weights do not fit the current model, naming the model keys that
changed (``model.hidden_dims: checkpoint [64, 64], config [128, 128]``) says why. The stored
text is read with :mod:`ast` as literals only: a checkpoint's text is never executed.
"""
from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any

from ..config.literals import literal_value

_SECTIONS = ("model", "data_preprocessor")
_UNREADABLE = object()


def _literal(node: ast.AST) -> Any:
    return literal_value(node, unreadable=_UNREADABLE)


def saved_sections(cfg_text: str) -> dict[str, Any]:
    """The model sections of a stored config text, read as literals (never executed)."""
    try:
        tree = ast.parse(cfg_text or "")
    except SyntaxError:
        return {}
    found = {}
    for statement in tree.body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1 and \
                isinstance(statement.targets[0], ast.Name) and \
                statement.targets[0].id in _SECTIONS:
            found[statement.targets[0].id] = _literal(statement.value)
    return found


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}", out)
    else:
        out[prefix] = list(value) if isinstance(value, tuple) else value
    return out


def model_key_differences(cfg_text: str, current: Mapping) -> list[str]:
    """``'model.hidden_dims: checkpoint [64, 64], config [128, 128]'`` for every model key whose
    value differs between the stored config text and ``current``."""
    saved = saved_sections(cfg_text)
    lines = []
    for section in _SECTIONS:
        if section not in saved and section not in current:
            continue
        before = _flatten(saved.get(section), section, {}) if section in saved else {}
        after = _flatten(current.get(section), section, {}) if section in current else {}
        for key in sorted(set(before) | set(after)):
            old, new = before.get(key, "<unset>"), after.get(key, "<unset>")
            if old is _UNREADABLE or old == new:
                continue
            if callable(new) and isinstance(old, str) and getattr(new, "__name__", "") in old:
                continue  # a class in the config, its name in the stored text
            lines.append(f"{key}: checkpoint {old!r}, config {new!r}")
    return lines


__all__ = ["model_key_differences", "saved_sections"]
