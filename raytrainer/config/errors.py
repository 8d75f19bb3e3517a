"""Exceptions and warnings for user-facing config mistakes.

This module owns these types only. Every message names the file, the config key or
the command-line token at fault and says what was expected.
"""
from __future__ import annotations

__all__ = ["ConfigError", "ConfigFileNotFound", "ConfigWarning"]


class ConfigError(ValueError):
    """A mistake in a config file, a ``--cfg-options`` override or a config value."""


class ConfigFileNotFound(ConfigError, FileNotFoundError):
    """A config file, or a ``_base_`` file it names, does not exist."""


class ConfigWarning(UserWarning):
    """A config value that is accepted but probably not what was meant."""
