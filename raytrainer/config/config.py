"""``Config``: a loaded config, with MMEngine's API (``fromfile``, ``merge_from_dict``, ``dump``).

This module owns the user-facing object only; reading files (:mod:`.loaders`), dotted
overrides (:mod:`.overrides`) and writing text (:mod:`.dumping`) live next to it. Keys are
reachable as attributes and items (``cfg.model.type``, ``cfg['model']``); dict methods not
defined here are forwarded to the underlying :class:`ConfigDict`, as in MMEngine.
"""
from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Mapping
from typing import Any

from raytrainer import storage
from raytrainer.config.config_dict import ConfigDict, to_plain
from raytrainer.config.dumping import dump_text
from raytrainer.config.errors import ConfigError
from raytrainer.config.loaders import (
    LoadOptions,
    file_suffix,
    load_file,
    load_text,
    normalize_location,
)
from raytrainer.config.loaders import import_custom_modules as _import_custom_modules
from raytrainer.config.overrides import apply_overrides

__all__ = ["Config"]

# Keys that would be hidden behind attributes of the same name.
RESERVED_KEYS = ("filename", "text", "pretty_text", "env_variables")


class Config:
    """A config: a tree of values loaded from a ``.py``/``.json``/``.yaml`` file or a dict.

    Args:
        cfg_dict: The values; nested dicts become :class:`ConfigDict` (the dict is copied).
        cfg_text: The source text, if any (``Config.fromfile`` passes the file's own text).
        filename: Where the values came from.

    Example:
        >>> cfg = Config(dict(model=dict(type='Net', depth=18)))
        >>> cfg.merge_from_dict({'model.depth': 50})
        >>> cfg.model.depth
        50
    """

    def __init__(self, cfg_dict: Mapping | None = None, cfg_text: str | None = None,
                 filename: str | os.PathLike | None = None):
        if cfg_dict is None:
            cfg_dict = {}
        if not isinstance(cfg_dict, Mapping):
            raise ConfigError(f"a Config is built from a dict, got a {type(cfg_dict).__name__}")
        for key in cfg_dict:
            if key in RESERVED_KEYS:
                raise ConfigError(f"'{key}' cannot be a top-level config key "
                                  f"({filename or 'config'}): it is reserved for a Config "
                                  f"attribute; reserved keys are {list(RESERVED_KEYS)}")
        # Rebuilt from plain dicts so that no dict is shared with the caller or twice in the tree.
        object.__setattr__(self, "_cfg_dict", ConfigDict(to_plain(dict(cfg_dict))))
        object.__setattr__(self, "_filename", os.fspath(filename) if filename else None)
        object.__setattr__(self, "_text", cfg_text or "")

    @staticmethod
    def fromfile(filename: str | os.PathLike, use_predefined_variables: bool = True,
                 import_custom_modules: bool = True,
                 use_environment_variables: bool = True) -> Config:
        """Load a config file (``.py``, ``.json``, ``.yaml``/``.yml``) and its ``_base_`` files.

        Args:
            filename: A path (relative to the working directory or absolute) or fsspec URL.
            use_predefined_variables: Substitute ``{{ fileDirname }}`` and friends.
            import_custom_modules: Import the modules in ``custom_imports`` of the config.
            use_environment_variables: Substitute ``{{$NAME:default}}``.

        Raises:
            ConfigFileNotFound: The file or a base file is missing.
            ConfigError: The file is not a valid config (the message names file and line).
        """
        location = normalize_location(filename)
        options = LoadOptions(use_predefined_variables, use_environment_variables)
        cfg_dict, text = load_file(location, options)
        if import_custom_modules:  # the argument (MMEngine's name) hides the loader function
            _import_custom_modules(cfg_dict, location)
        return Config(cfg_dict, cfg_text=text, filename=location)

    @staticmethod
    def fromstring(cfg_str: str, file_format: str = ".py") -> Config:
        """Load config text in the given format (``'.py'``, ``'.json'``, ``'.yaml'``)."""
        cfg_dict = load_text(cfg_str, file_format)
        _import_custom_modules(cfg_dict, None)
        return Config(cfg_dict, cfg_text=cfg_str)

    @property
    def filename(self) -> str | None:
        """The location the config was loaded from (absolute path or URL), if any."""
        return self._filename

    @property
    def text(self) -> str:
        """The source text the config was loaded from ('' when built from a dict)."""
        return self._text

    @property
    def pretty_text(self) -> str:
        """The config as Python source (``model = dict(type='Net', ...)``) that loads back."""
        return dump_text(self._cfg_dict, ".py")

    def dump(self, file: str | os.PathLike | None = None) -> str | None:
        """Write the config to ``file`` (format by suffix), or return its text.

        Without ``file`` the text is Python, unless the config was loaded from a JSON or YAML
        file, in which case it is in that format. ``file`` may be an fsspec URL.

        Raises:
            ConfigError: The suffix is not supported, or a value cannot be written.
        """
        if file is None:
            suffix = file_suffix(self._filename) if self._filename else ".py"
            return dump_text(self._cfg_dict, suffix if suffix != ".yml" else ".yaml")
        location = os.fspath(file)
        storage.write_text(location, dump_text(self._cfg_dict, file_suffix(location)))
        return None

    def merge_from_dict(self, options: Mapping[str, Any], allow_list_keys: bool = True,
                        check_typos: bool = True) -> None:
        """Apply dotted-key overrides: ``{'model.depth': 50, 'param_scheduler.0.end': 10}``.

        Args:
            options: Dotted keys and values (as parsed from ``--cfg-options``).
            allow_list_keys: Whether integer components index lists and tuples.
            check_typos: Whether a new key that closely matches an existing sibling
                (``optimzer`` next to ``optimizer``) is an error.

        Raises:
            ConfigError: See :func:`raytrainer.config.overrides.apply_overrides`; the config is
                unchanged when it is raised.
        """
        merged = apply_overrides(self._cfg_dict, options, allow_list_keys, check_typos)
        object.__setattr__(self, "_cfg_dict", merged)

    def to_dict(self) -> dict:
        """The values as plain, newly built nested dicts."""
        return self._cfg_dict.to_dict()

    def get(self, key: Any, default: Any = None) -> Any:
        return self._cfg_dict.get(key, default)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        return self._cfg_dict.setdefault(key, default)

    def keys(self):
        return self._cfg_dict.keys()

    def values(self):
        return self._cfg_dict.values()

    def items(self):
        return self._cfg_dict.items()

    def copy(self) -> Config:
        """A shallow copy: a new top level sharing the nested values."""
        return copy.copy(self)

    def __copy__(self) -> Config:
        other = Config.__new__(Config)
        other.__dict__.update(self.__dict__)
        object.__setattr__(other, "_cfg_dict", self._cfg_dict.copy())
        return other

    def __deepcopy__(self, memo: dict) -> Config:
        other = Config.__new__(Config)
        memo[id(self)] = other
        for name, value in self.__dict__.items():
            object.__setattr__(other, name, copy.deepcopy(value, memo))
        return other

    def __getstate__(self) -> dict:
        return dict(self.__dict__)

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def __getattr__(self, name: str) -> Any:
        try:
            cfg_dict = self.__dict__["_cfg_dict"]
        except KeyError:  # during unpickling, before __setstate__
            raise AttributeError(name) from None
        return getattr(cfg_dict, name)

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        delattr(self._cfg_dict, name)

    def __getitem__(self, key: Any) -> Any:
        return self._cfg_dict[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        if key in RESERVED_KEYS:
            raise ConfigError(f"'{key}' is reserved for a Config attribute and cannot be set as "
                              f"a config key")
        self._cfg_dict[key] = value

    def __delitem__(self, key: Any) -> None:
        del self._cfg_dict[key]

    def __contains__(self, key: Any) -> bool:
        return key in self._cfg_dict

    def __iter__(self) -> Iterator:
        return iter(self._cfg_dict)

    def __len__(self) -> int:
        return len(self._cfg_dict)

    def __repr__(self) -> str:
        return f"Config (path: {self._filename}): {self.to_dict()!r}"
