"""Dotted-key overrides: ``{'model.depth': 50, 'param_scheduler.0.end': 10}`` applied to a config.

This module owns the rules of ``Config.merge_from_dict`` (and so of ``--cfg-options``):

* each dotted component names a dict key; an integer component indexes a list or tuple (tuples
  are rebuilt), when ``allow_list_keys`` is set;
* missing keys are created, with new dicts for missing intermediate components, unless the new
  key is a near miss of an existing sibling (``optimzer`` next to ``optimizer``): that is almost
  always a typo that would otherwise be silently ignored;
* a dict value merges into an existing dict (or, with integer keys, into a list) unless it has
  ``_delete_=True``; any other value replaces.

The result is a new tree; only the containers along each overridden path are copied, so a
failing override leaves the original config untouched.
"""
from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from raytrainer.config.config_dict import ConfigDict, is_dict_node
from raytrainer.config.errors import ConfigError
from raytrainer.config.inheritance import DELETE_KEY, without_delete_keys

__all__ = ["apply_overrides"]

# Close enough to be a typo (optimzer/optimizer: 0.94) but not a real sibling
# (val_dataloader/test_dataloader: 0.76, in_channels/out_channels: 0.78).
_TYPO_CUTOFF = 0.8


@dataclass(frozen=True)
class _Rules:
    allow_list_keys: bool
    check_typos: bool


def apply_overrides(cfg: ConfigDict, options: Mapping[str, Any], allow_list_keys: bool = True,
                    check_typos: bool = True) -> ConfigDict:
    """Return ``cfg`` with each ``dotted.key: value`` of ``options`` applied, in order.

    Args:
        cfg: The config tree (not modified).
        options: Dotted keys and their new values.
        allow_list_keys: Whether integer components may index lists and tuples.
        check_typos: Whether a new key that closely matches an existing sibling is an error.

    Raises:
        ConfigError: A component passes through a value that is neither dict nor list, an index
            is out of range, or a new key looks like a typo of an existing one. The message
            names the full dotted key.
    """
    rules = _Rules(allow_list_keys, check_typos)
    result = cfg
    for key, value in options.items():
        parts = tuple(str(key).split("."))
        if not all(parts):
            raise ConfigError(f"cannot set '{key}': a dotted key needs a name between every two "
                              f"dots, like 'model.backbone.depth'")
        result = _assign(result, (), parts, value, rules)
    return result


def _assign(node: Any, done: tuple[str, ...], rest: tuple[str, ...], value: Any,
            rules: _Rules) -> Any:
    """Return a copy of ``node`` with ``value`` at ``rest`` (``done`` is the path to ``node``)."""
    if not rest:
        return _merge_value(node, value, done, rules)
    part, here = rest[0], done + (rest[0],)
    if type(node) in (list, tuple):
        items = list(node)
        index = _list_index(node, done, rest, rules)
        items[index] = _assign(items[index], here, rest[1:], value, rules)
        return type(node)(items)
    if is_dict_node(node):
        new = node.copy() if isinstance(node, ConfigDict) else ConfigDict(node)
        if part in node:
            new[part] = _assign(node[part], here, rest[1:], value, rules)
        else:
            if rules.check_typos:
                _reject_near_miss(node, done, rest)
            new[part] = _fresh(rest[1:], value)
        return new
    raise ConfigError(
        f"cannot set '{_dotted(done + rest)}': '{_dotted(done)}' is of type "
        f"{type(node).__name__} ({_short_repr(node)}), not a dict or list, so it has no key "
        f"'{part}'")


def _merge_value(old: Any, value: Any, done: tuple[str, ...], rules: _Rules) -> Any:
    if is_dict_node(value) and not value.get(DELETE_KEY, False):
        result = old
        for key, item in value.items():
            if key != DELETE_KEY:
                result = _assign(result, done, (str(key),), item, rules)
        return result
    return without_delete_keys(value)


def _list_index(node: list | tuple, done: tuple[str, ...], rest: tuple[str, ...],
                rules: _Rules) -> int:
    full, kind = _dotted(done + rest), type(node).__name__
    if not rules.allow_list_keys:
        raise ConfigError(f"cannot set '{full}': '{_dotted(done)}' is a {kind} and list indices "
                          f"are not allowed here (allow_list_keys=False)")
    if not rest[0].isdigit():
        raise ConfigError(
            f"cannot set '{full}': '{_dotted(done)}' is a {kind} of length {len(node)}, so "
            f"'{rest[0]}' must be an integer index (to replace the whole {kind} with a dict, "
            f"give the dict with {DELETE_KEY}=True)")
    index = int(rest[0])
    if index >= len(node):
        raise ConfigError(f"cannot set '{full}': index {index} is out of range for "
                          f"'{_dotted(done)}', a {kind} of length {len(node)}")
    return index


def _reject_near_miss(node: Mapping, done: tuple[str, ...], rest: tuple[str, ...]) -> None:
    siblings = [key for key in node if isinstance(key, str)]
    close = difflib.get_close_matches(rest[0], siblings, n=1, cutoff=_TYPO_CUTOFF)
    if close:
        raise ConfigError(
            f"cannot set '{_dotted(done + rest)}': there is no key '{_dotted(done + rest[:1])}'; "
            f"did you mean '{_dotted(done + (close[0],))}'? (pass check_typos=False to add the "
            f"new key anyway)")


def _fresh(rest: tuple[str, ...], value: Any) -> Any:
    """The value to store under a new key: new dicts for the remaining components."""
    if not rest:
        return without_delete_keys(value)
    return ConfigDict({rest[0]: _fresh(rest[1:], value)})


def _dotted(parts: tuple[str, ...]) -> str:
    return ".".join(parts)


def _short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
