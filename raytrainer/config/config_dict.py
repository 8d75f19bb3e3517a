"""``ConfigDict``: a dict whose keys are also attributes (``cfg.model.type``).

This module owns the container type of every config tree and the two conversions around it:
plain dicts in, plain dicts out (:meth:`ConfigDict.to_dict`). It knows nothing about files,
inheritance or overrides.

Nested plain dicts are converted once, when they are stored, so a lookup returns the same
object every time (``cfg.model is cfg['model']``); the registry relies on that identity to name
nested config keys in its errors.
"""
from __future__ import annotations

import copy
import difflib
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["ConfigDict", "to_plain", "is_dict_node"]


class ConfigDict(dict):
    """A ``dict`` with attribute access whose nested dicts are ``ConfigDict`` too.

    Plain ``dict`` values, also those inside lists and tuples, are converted when stored. A value
    that already is a ``ConfigDict`` is stored as it is, and other mapping types are left alone
    (they are user objects, not config nodes).

    Example:
        >>> cfg = ConfigDict(model=dict(type='Net', layers=[dict(width=8)]))
        >>> cfg.model.layers[0].width
        8
        >>> cfg.model is cfg['model']
        True
    """

    __slots__ = ()

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__()
        self.update(*args, **kwargs)

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, _as_node(value))

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(_missing_key_message(name, self)) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(_missing_key_message(name, self)) from None

    def update(self, *args: Any, **kwargs: Any) -> None:  # dict.update bypasses __setitem__
        if len(args) > 1:
            raise TypeError(f"update expected at most 1 positional argument, got {len(args)}")
        pairs: Iterable = ()
        if args:
            other = args[0]
            pairs = other.items() if isinstance(other, Mapping) else other
        for key, value in pairs:
            self[key] = value
        for key, value in kwargs.items():
            self[key] = value

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def __ior__(self, other: Any) -> ConfigDict:
        self.update(other)
        return self

    def __or__(self, other: Any) -> ConfigDict:
        merged = self.copy()
        merged.update(other)
        return merged

    def copy(self) -> ConfigDict:
        """A shallow copy: a new top level sharing the nested values."""
        other = ConfigDict()
        dict.update(other, self)
        return other

    __copy__ = copy

    def __deepcopy__(self, memo: dict) -> ConfigDict:
        other = ConfigDict()
        memo[id(self)] = other
        for key, value in self.items():
            dict.__setitem__(other, copy.deepcopy(key, memo), copy.deepcopy(value, memo))
        return other

    def __reduce__(self) -> tuple:  # pickle (Ray ships configs to workers) without __getattr__
        return ConfigDict, (dict(self),)

    def to_dict(self) -> dict:
        """A deep conversion to plain ``dict`` (lists and tuples are rebuilt, leaves shared)."""
        return to_plain(self)


def _as_node(value: Any) -> Any:
    """Convert a value about to be stored in a ``ConfigDict``."""
    if type(value) in (dict, OrderedDict):
        return ConfigDict(value)
    if type(value) in (list, tuple):
        return type(value)(_as_node(item) for item in value)
    return value


def to_plain(value: Any) -> Any:
    """Rebuild every ``ConfigDict`` or ``dict`` inside ``value`` as a new plain ``dict``."""
    if is_dict_node(value):
        return {key: to_plain(item) for key, item in value.items()}
    if type(value) in (list, tuple):
        return type(value)(to_plain(item) for item in value)
    return value


def is_dict_node(value: Any) -> bool:
    """Whether ``value`` is a dict of the config tree (user mapping types are leaves)."""
    return type(value) in (dict, OrderedDict, ConfigDict)


def _missing_key_message(name: str, cfg: Mapping) -> str:
    keys = [str(key) for key in cfg]
    message = f"config has no key '{name}'; available keys: {sorted(keys)}"
    close = difflib.get_close_matches(name, keys, n=1)
    if close:
        message += f"; did you mean '{close[0]}'?"
    return message
