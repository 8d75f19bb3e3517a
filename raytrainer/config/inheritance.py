"""``_base_`` inheritance: where base files are, and how their values combine with a child's.

This module owns the merge rules: dicts merge key by key, every other value (lists included) is
replaced, ``_delete_=True`` in a child dict replaces the base dict instead of merging, and two
bases of one file may not define the same top-level key. It does not read files.
"""
from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

from raytrainer import storage
from raytrainer.config.config_dict import ConfigDict, is_dict_node
from raytrainer.config.errors import ConfigError

__all__ = ["BASE_KEY", "DELETE_KEY", "resolve_base_location", "base_entries", "merge_bases",
           "merge_child_into_base", "without_delete_keys"]

BASE_KEY = "_base_"
DELETE_KEY = "_delete_"


def resolve_base_location(referrer: str, ref: str) -> str:
    """Where a ``_base_`` entry points: relative entries are relative to the referring file.

    Args:
        referrer: Location of the config that names the base (a path or an fsspec URL).
        ref: The ``_base_`` entry (relative or absolute path, or URL).
    """
    ref = os.path.expanduser(ref)
    if storage.is_url(ref) or os.path.isabs(ref):
        return ref
    if storage.is_url(referrer):
        protocol, path = referrer.split("://", 1)
        return f"{protocol}://" + posixpath.normpath(posixpath.join(posixpath.dirname(path), ref))
    return os.path.normpath(os.path.join(os.path.dirname(referrer), ref))


def base_entries(value: Any, filename: str) -> list[str]:
    """Validate a ``_base_`` value (a string or a list of strings) and return it as a list."""
    entries = [value] if isinstance(value, str) else value
    if not isinstance(entries, Sequence) or not all(isinstance(e, str) for e in entries):
        raise ConfigError(f"{filename}: _base_ must be a file name or a list of file names, "
                          f"got {value!r}")
    return list(entries)


def merge_bases(bases: Sequence[tuple[str, Mapping]], referrer: str) -> ConfigDict:
    """Combine the loaded bases of one file; a top-level key may come from one base only.

    Args:
        bases: ``(location, config)`` of each base, in ``_base_`` order.
        referrer: The file naming these bases (for the error message).

    Raises:
        ConfigError: Two bases define the same key; the message names the key and both files.
    """
    merged = ConfigDict()
    origin: dict[Any, str] = {}
    for location, cfg in bases:
        for key in cfg:
            if key in origin:
                raise ConfigError(
                    f"duplicate key '{key}' in the _base_ files of {referrer}: it is defined in "
                    f"both {origin[key]} and {location}; keep it in one base, or set it in "
                    f"{referrer} itself")
            origin[key] = location
        dict.update(merged, cfg)
    return merged


def merge_child_into_base(child: Mapping, base: Mapping, filename: str,
                          prefix: str = "") -> ConfigDict:
    """Return ``base`` overridden by ``child`` (neither is modified).

    Args:
        child: The values a file sets itself.
        base: The merged values of its bases.
        filename: The child file (for error messages).
        prefix: The dotted key of ``child`` inside the whole config (for error messages).

    Raises:
        ConfigError: A child dict would merge into a base value that is not a dict.
    """
    merged = ConfigDict()
    dict.update(merged, base)
    for key, value in child.items():
        if key == DELETE_KEY:
            continue
        dotted = f"{prefix}{key}"
        if is_dict_node(value) and key in merged and not value.get(DELETE_KEY, False):
            if not is_dict_node(merged[key]):
                raise ConfigError(
                    f"{filename}: '{dotted}' is a dict but its base value is a "
                    f"{type(merged[key]).__name__} ({merged[key]!r}), so they cannot merge; add "
                    f"{DELETE_KEY}=True to the dict to replace the base value")
            merged[key] = merge_child_into_base(value, merged[key], filename, f"{dotted}.")
        else:
            merged[key] = without_delete_keys(value)
    return merged


def without_delete_keys(value: Any) -> Any:
    """A copy of the config nodes in ``value`` with every ``_delete_`` marker removed."""
    if is_dict_node(value):
        return ConfigDict((key, without_delete_keys(item)) for key, item in value.items()
                          if key != DELETE_KEY)
    if type(value) in (list, tuple):
        return type(value)(without_delete_keys(item) for item in value)
    return value
