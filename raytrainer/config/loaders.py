"""Reading config files into a ``ConfigDict``, bases first.

This module owns turning a location (a path or an fsspec URL) into config values: reading the
text through :mod:`raytrainer.storage`, the text substitutions, executing ``.py`` configs or
parsing ``.json``/``.yaml``, loading each ``_base_`` recursively and merging the results, and
importing ``custom_imports``. Errors name the file (and line) at fault.

What a ``.py`` config contributes: every top-level name it assigns, except names starting with
``_``, modules, and functions. Names bound only by ``import``, ``def`` or ``class`` statements are
helpers, not config values; a class used as a value (``dict(type=SGD)``, ``optim = SGD``) is kept.
"""
from __future__ import annotations

import ast
import copy
import json
import os
import sys
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from raytrainer import storage
from raytrainer.config.config_dict import ConfigDict
from raytrainer.config.errors import ConfigError, ConfigFileNotFound
from raytrainer.config.inheritance import (
    BASE_KEY,
    base_entries,
    merge_bases,
    merge_child_into_base,
    resolve_base_location,
)
from raytrainer.config.substitution import (
    mark_base_references,
    resolve_base_references,
    substitute_env_vars,
    substitute_predefined_vars,
)
from raytrainer.registry import import_modules_from_strings

__all__ = ["SUPPORTED_SUFFIXES", "LoadOptions", "normalize_location", "file_suffix",
           "load_file", "load_text", "import_custom_modules"]

SUPPORTED_SUFFIXES = (".py", ".json", ".yaml", ".yml")
_CONFIG_MODULE_NAME = "__raytrainer_config__"


@dataclass(frozen=True)
class LoadOptions:
    """Which MMEngine text substitutions to apply while loading."""

    use_predefined_variables: bool = True
    use_environment_variables: bool = True


def normalize_location(location: str | os.PathLike) -> str:
    """A URL as it is; a local path made absolute (Ray workers run in another directory)."""
    location = os.fspath(location)
    if storage.is_url(location):
        return location
    return os.path.abspath(os.path.expanduser(location))


def file_suffix(location: str) -> str:
    return os.path.splitext(location.split("://", 1)[-1])[1].lower()


def load_file(location: str, options: LoadOptions = LoadOptions()) -> tuple[ConfigDict, str]:
    """Load a config file and its bases.

    Args:
        location: A normalized location (see :func:`normalize_location`).
        options: Which text substitutions to apply.

    Returns:
        The merged config values, and the file's own text.

    Raises:
        ConfigFileNotFound: The file or one of its bases does not exist.
        ConfigError: The file cannot be read as a config.
    """
    text = _read(location, referrer=None, ref=None)
    return _parse(text, location, (location,), options), text


def load_text(text: str, file_format: str, options: LoadOptions = LoadOptions()) -> ConfigDict:
    """Load config text; its relative ``_base_`` entries are relative to the working directory."""
    suffix = file_format if file_format.startswith(".") else f".{file_format}"
    _check_suffix(suffix, "config text")
    location = os.path.join(os.getcwd(), f"<config string>{suffix}")
    return _parse(text, location, (location,), options)


def import_roots(filename: str | None, base: str | None = None) -> list[str]:
    """The directories ``custom_imports`` import from: the working directory (``base``) and
    the directory of the config file ``filename`` when it is local (absolute paths)."""
    roots = [os.path.abspath(base or os.getcwd())]
    if filename and not storage.is_url(str(filename)) and not str(filename).startswith("<"):
        roots.append(os.path.dirname(os.path.abspath(str(filename))))
    return list(dict.fromkeys(roots))


def add_import_roots(roots: list[str]) -> None:
    """Put ``roots`` first on ``sys.path`` (each once, in order; missing ones are skipped)."""
    for root in reversed(roots):
        if os.path.isdir(root) and root not in sys.path:
            sys.path.insert(0, root)


def import_custom_modules(cfg_dict: Mapping, filename: str | None) -> None:
    """Import the modules named by ``custom_imports=dict(imports=[...])``, if the config has it,
    from the working directory and the config's directory (:func:`import_roots`) as well as
    ``sys.path``: an installed ``raytrainer`` command, unlike ``python -m``, does not put the
    working directory on ``sys.path``, and Ray's workers import from the same two.

    Raises:
        ConfigError: ``custom_imports`` is malformed, or a module cannot be imported (unless
            ``allow_failed_imports=True``).
    """
    spec = cfg_dict.get("custom_imports")
    if not spec:
        return
    where = filename or "config"
    if not isinstance(spec, Mapping) or "imports" not in spec:
        raise ConfigError(f"{where}: custom_imports must be dict(imports=[...], "
                          f"allow_failed_imports=False), got {spec!r}")
    add_import_roots(import_roots(filename))
    try:
        import_modules_from_strings(spec["imports"], spec.get("allow_failed_imports", False))
    except ImportError as exc:
        raise ConfigError(f"{where}: {exc}; sys.path is {sys.path}") from exc


def _check_suffix(suffix: str, location: str) -> None:
    if suffix not in SUPPORTED_SUFFIXES:
        raise ConfigError(f"{location}: unsupported config file type '{suffix or '(none)'}'; "
                          f"supported types are {', '.join(SUPPORTED_SUFFIXES)}")


def _read(location: str, referrer: str | None, ref: str | None) -> str:
    _check_suffix(file_suffix(location), location)
    if not storage.exists(location):
        if referrer is None:
            raise ConfigFileNotFound(f"config file not found: {location}")
        raise ConfigFileNotFound(f"base config file not found: {location} (the _base_ entry "
                                 f"'{ref}' in {referrer})")
    return storage.read_text(location)


def _parse(text: str, location: str, chain: tuple[str, ...], options: LoadOptions) -> ConfigDict:
    """Config values of one file: its bases merged, then its own values on top."""
    if options.use_predefined_variables:
        text = substitute_predefined_vars(text, location)
    if options.use_environment_variables:
        text = substitute_env_vars(text, location)
    text, markers = mark_base_references(text)
    suffix = file_suffix(location)
    if suffix == ".py":
        module = _parse_python(text, location)
        base_value = _pop_base_assignment(module, location)
    else:
        data = _parse_data(text, suffix, location)
        base_value = data.pop(BASE_KEY, [])
    base = merge_bases([_load_base(ref, location, chain, options)
                        for ref in base_entries(base_value, location)], location)
    own = _execute(module, text, location, base) if suffix == ".py" else ConfigDict(data)
    own = resolve_base_references(own, markers, base, location)
    return merge_child_into_base(own, base, location)


def _load_base(ref: str, referrer: str, chain: tuple[str, ...],
               options: LoadOptions) -> tuple[str, ConfigDict]:
    location = resolve_base_location(referrer, ref)
    if location in chain:
        cycle = " -> ".join(chain + (location,))
        raise ConfigError(f"circular _base_ inheritance: {cycle}")
    text = _read(location, referrer, ref)
    return location, _parse(text, location, chain + (location,), options)


def _parse_python(text: str, location: str) -> ast.Module:
    try:
        return ast.parse(text, filename=location)
    except SyntaxError as exc:
        lines = text.splitlines()
        shown = ""
        if exc.lineno and exc.lineno <= len(lines):
            shown = f"\n    {lines[exc.lineno - 1].strip()}"
        raise ConfigError(f"{location}, line {exc.lineno}: invalid Python syntax in config: "
                          f"{exc.msg}{shown}") from exc


def _pop_base_assignment(module: ast.Module, location: str) -> Any:
    """Remove ``_base_ = ...`` from the module (``_base_`` is bound to the base values instead)."""
    base_value: Any = []
    for node in list(module.body):
        if isinstance(node, ast.With) and "read_base" in ast.unparse(node.items[0].context_expr):
            raise ConfigError(f"{location}, line {node.lineno}: pure-Python configs "
                              f"(`with read_base():`) are not supported; use _base_ = [...]")
        targets = node.targets if isinstance(node, ast.Assign) else []
        if any(isinstance(t, ast.Name) and t.id == BASE_KEY for t in targets):
            try:
                base_value = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError) as exc:
                raise ConfigError(f"{location}, line {node.lineno}: _base_ must be a literal "
                                  f"file name or list of file names") from exc
            module.body.remove(node)
    return base_value


def _execute(module: ast.Module, text: str, location: str, base: ConfigDict) -> ConfigDict:
    """Run a ``.py`` config with ``_base_`` bound to its base values; return its variables."""
    namespace: dict[str, Any] = {"__name__": _CONFIG_MODULE_NAME, "__file__": location,
                                 BASE_KEY: copy.deepcopy(base)}
    try:
        exec(compile(module, location, "exec"), namespace)
    except Exception as exc:
        line = _failing_line(exc, location)
        where = f"{location}, line {line}" if line else location
        shown = f"\n    {text.splitlines()[line - 1].strip()}" if line else ""
        raise ConfigError(f"{where}: {type(exc).__name__} while executing the config: "
                          f"{exc}{shown}") from exc
    helpers = _helper_names(module)
    return ConfigDict((name, value) for name, value in namespace.items()
                      if not name.startswith("_") and name not in helpers
                      and not isinstance(value, (types.ModuleType, types.FunctionType)))


def _failing_line(exc: BaseException, location: str) -> int | None:
    """The innermost line of the config file in the traceback of ``exc``."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == location:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _helper_names(module: ast.Module) -> set[str]:
    """Top-level names bound by import/def/class statements and never assigned a value."""
    bound, assigned = set(), set()
    for node in module.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                assigned.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return bound - assigned


def _parse_data(text: str, suffix: str, location: str) -> dict:
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{location}, line {exc.lineno}: invalid JSON: {exc.msg}") from exc
    else:
        data = _parse_yaml(text, location)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{location}: a config file must hold a mapping at the top level, "
                          f"got a {type(data).__name__}")
    return data


def _parse_yaml(text: str, location: str) -> Any:
    try:
        import yaml
    except ImportError as exc:
        raise ConfigError(f"{location}: reading YAML configs needs PyYAML "
                          f"(pip install pyyaml)") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{location}, line {mark.line + 1}" if mark is not None else location
        raise ConfigError(f"{where}: invalid YAML: {exc}") from exc
