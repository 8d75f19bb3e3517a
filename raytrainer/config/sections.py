"""Config sections read into a settings dataclass (``ray = dict(...)``, ``tune = dict(...)``)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

from .errors import ConfigError

T = TypeVar("T")


def from_section(cls: type[T], section: Mapping | None, key: str, **overrides: Any) -> T:
    """Build dataclass ``cls`` from the config's ``key`` section, then apply the non-None
    ``overrides`` (command-line flags) and call its ``validate()``.

    Raises:
        ConfigError: A key of the section is not a field of ``cls`` (named, with the fields).
    """
    values = dict(section or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{key}: unknown key(s) {unknown}; expected some of {sorted(known)}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    built = cls(**values)
    built.validate()
    return built
