"""Reading Python literals out of config text without running it.

Two places read config text that must never be executed: ``--cfg-options`` values written as
dicts (``{'a': 1}``, ``dict(a=1)``) and the config text a checkpoint stored (to name the model
keys that changed). Both read it here, with one rule for what counts as a literal.
"""
from __future__ import annotations

import ast
from typing import Any

_RAISE = object()


class NotALiteral(ValueError):
    """A node of the expression is not a literal (a name, a call, an operator ...)."""

    def __init__(self, node: ast.AST):
        super().__init__(ast.unparse(node))
        self.node = node


def literal_value(node: ast.AST, unreadable: Any = _RAISE) -> Any:
    """The value of the literal expression ``node``.

    Literals are what :func:`ast.literal_eval` reads (numbers, strings, True/False/None, lists,
    tuples, sets, dicts) plus ``dict(key=value, ...)``, nested in any way.

    Args:
        node: An expression node (``ast.parse(text, mode='eval').body``).
        unreadable: What stands for each part that is not a literal, so that the rest is still
            read (a ``**mapping`` entry of a dict is left out); by default such a part raises.

    Raises:
        NotALiteral: A part is not a literal and ``unreadable`` was not given.
    """
    def part(item: ast.AST) -> Any:
        return literal_value(item, unreadable)

    def not_literal(item: ast.AST) -> Any:
        if unreadable is _RAISE:
            raise NotALiteral(item)
        return unreadable

    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
            node.func.id == "dict" and not node.args:
        if any(k.arg is None for k in node.keywords) and unreadable is _RAISE:
            raise NotALiteral(node)
        return {k.arg: part(k.value) for k in node.keywords if k.arg is not None}
    if isinstance(node, ast.Dict):
        if None in node.keys and unreadable is _RAISE:
            raise NotALiteral(node)
        pairs = [(k, v) for k, v in zip(node.keys, node.values) if k is not None]
        try:
            return {part(k): part(v) for k, v in pairs}
        except TypeError:  # an unhashable key (a list)
            if unreadable is _RAISE:
                raise
            return unreadable
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [part(item) for item in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return not_literal(node)


__all__ = ["NotALiteral", "literal_value"]
