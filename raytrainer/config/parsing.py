"""Parsing ``--cfg-options key=value ...`` from the command line into Python values.

This module owns the value syntax only (applying the values is :mod:`.overrides`). A value is:

* a quoted string (``'a,b'`` or ``"1"``), taken literally;
* a list ``[...]`` or tuple ``(...)``, nested freely (``[(1,2),[3,4]]``);
* a dict, written as a Python literal (``{'a': 1}``) or call (``dict(a=1, b=[2, 3])``), of
  literal values only; anything else in braces or ``dict(...)`` is an error, never a string;
* comma-separated items without brackets, a list (``a,b`` → ``['a', 'b']``, as in MMEngine);
* an int, a float (``1e-3``), a bool (``true``/``False``, any case), ``None``/``none``;
* otherwise, the text itself (``abc``).
"""
from __future__ import annotations

import argparse
import ast
from collections.abc import Iterable, Sequence
from typing import Any

from raytrainer.config.errors import ConfigError
from raytrainer.config.literals import NotALiteral, literal_value

__all__ = ["parse_cfg_options", "parse_value", "DictAction"]

_QUOTES = "'\""
_CLOSERS = {"[": "]", "(": ")", "{": "}"}


def parse_cfg_options(options: Iterable[str]) -> dict[str, Any]:
    """Parse ``['model.depth=50', 'lr=1e-3']`` into ``{'model.depth': 50, 'lr': 0.001}``.

    Later tokens override earlier ones with the same key.

    Raises:
        ConfigError: A token has no ``=``, an empty key, or unbalanced brackets or quotes; the
            message quotes the token.
    """
    parsed: dict[str, Any] = {}
    for token in options:
        key, sep, text = token.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"cannot parse config option '{token}': expected the form "
                              f"key=value, like model.backbone.depth=50")
        try:
            parsed[key] = parse_value(text)
        except ConfigError as exc:
            raise ConfigError(f"cannot parse config option '{token}': {exc}") from None
    return parsed


def parse_value(text: str) -> Any:
    """Parse the value part of one ``key=value`` token (see the module docstring)."""
    text = text.strip()
    if text and text[0] in _QUOTES and _matching_end(text, 0) == len(text) - 1:
        return _unquote(text)
    if text.startswith("{") or text.startswith("dict("):
        return _python_dict(text)
    if text and text[0] in _CLOSERS and _matching_end(text, 0) == len(text) - 1:
        items = [parse_value(item) for item in _split_top_level(text[1:-1])]
        return items if text[0] == "[" else tuple(items)
    items = _split_top_level(text)
    if len(items) > 1 or text.endswith(","):
        return [parse_value(item) for item in items]
    return _scalar(text)


def _literal(node: ast.AST, text: str) -> Any:
    try:
        return literal_value(node)
    except NotALiteral as exc:
        raise ConfigError(f"{text!r} is not a dict of literal values (numbers, strings, "
                          f"True/False/None, lists, tuples, dicts): cannot read "
                          f"{ast.unparse(exc.node)!r}") from None


def _python_dict(text: str) -> dict:
    """A dict written as ``{'a': 1}`` or ``dict(a=1)``."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ConfigError(f"{text!r} looks like a dict but is not valid Python ({exc.msg}); "
                          f"write it as {{'a': 1}} or dict(a=1)") from None
    value = _literal(tree.body, text)
    if not isinstance(value, dict):
        raise ConfigError(f"{text!r} looks like a dict but is a {type(value).__name__}; write it "
                          f"as {{'a': 1}} or dict(a=1)")
    return value


def _scalar(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if text in ("None", "none"):
        return None
    return text


def _unquote(text: str) -> str:
    try:
        return ast.literal_eval(text)  # honours escapes such as \n
    except (ValueError, SyntaxError):
        return text[1:-1]


def _split_top_level(text: str) -> list[str]:
    """Split at commas outside brackets and quotes; a trailing comma adds no item."""
    items, start, i = [], 0, 0
    while i < len(text):
        char = text[i]
        if char in _QUOTES or char in _CLOSERS:
            end = _matching_end(text, i)
            if end < 0:
                raise ConfigError(f"unbalanced {char!r} in {text!r}")
            i = end
        elif char in "])}":
            raise ConfigError(f"unbalanced {char!r} in {text!r}")
        elif char == ",":
            items.append(text[start:i].strip())
            start = i + 1
        i += 1
    last = text[start:].strip()
    if last or items and not text.rstrip().endswith(","):
        items.append(last)
    return items


def _matching_end(text: str, start: int) -> int:
    """Index of the quote or bracket closing the one at ``start``; -1 if it is never closed."""
    opener = text[start]
    i = start + 1
    while i < len(text):
        char = text[i]
        if opener in _QUOTES:
            if char == "\\":
                i += 1
            elif char == opener:
                return i
        elif char in _QUOTES or char in _CLOSERS:
            i = _matching_end(text, i)
            if i < 0:
                return -1
        elif char == _CLOSERS[opener]:
            return i
        elif char in "])}":
            return -1
        i += 1
    return -1


class DictAction(argparse.Action):
    """An argparse action that collects ``key=value`` tokens into one dict.

    Repeated flags accumulate; a malformed token becomes an argparse usage error naming it.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> _ = parser.add_argument('--cfg-options', nargs='+', action=DictAction)
        >>> parser.parse_args(['--cfg-options', 'model.depth=50', 'gpu_ids=0,1']).cfg_options
        {'model.depth': 50, 'gpu_ids': [0, 1]}
    """

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[str] | None, option_string: str | None = None) -> None:
        options = dict(getattr(namespace, self.dest, None) or {})
        tokens = [values] if isinstance(values, str) else list(values or [])
        try:
            options.update(parse_cfg_options(tokens))
        except ConfigError as exc:
            raise argparse.ArgumentError(self, str(exc)) from exc
        setattr(namespace, self.dest, options)
