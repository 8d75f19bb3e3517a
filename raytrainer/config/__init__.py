"""MMEngine-compatible configs: Python (or JSON/YAML) files with ``_base_`` inheritance.

Public API: :class:`Config` (load, override, dump), :class:`ConfigDict` (attribute access),
:class:`DictAction` and :func:`parse_cfg_options` (``--cfg-options key=value``), and the
:class:`ConfigError` raised for every config mistake, and :func:`warn_ignored` for the MMEngine
and MMCV arguments accepted without effect.
"""
from raytrainer.config.config import Config
from raytrainer.config.config_dict import ConfigDict
from raytrainer.config.errors import ConfigError, ConfigFileNotFound, ConfigWarning
from raytrainer.config.ignored import warn_ignored, warn_ignored_top_level
from raytrainer.config.parsing import DictAction, parse_cfg_options

__all__ = ["Config", "ConfigDict", "ConfigError", "ConfigFileNotFound", "ConfigWarning",
           "DictAction", "parse_cfg_options", "warn_ignored", "warn_ignored_top_level"]
