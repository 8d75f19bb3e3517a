"""Registries: map the ``type`` of a config dict to the class or function that builds it.

This module owns name lookup and object construction from config dicts. It knows nothing about
what is being built; each package registers its own classes (``@MODELS.register_module()``).

``type`` may be a registered name (``'SGD'``), a class or callable, or an import path
(``'my_pkg.models.Net'``). Errors name the registry, the config key being built
(``model.backbone``) and the closest registered names.
"""
from __future__ import annotations

import contextvars
import difflib
import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = [
    "Registry", "build_from_cfg", "build_param_scheduler_from_cfg", "import_modules_from_strings",
    "UnknownTypeError",
    "MODELS", "MODEL_WRAPPERS", "DATASETS", "TRANSFORMS", "DATA_SAMPLERS", "FUNCTIONS",
    "OPTIMIZERS", "OPTIM_WRAPPERS", "OPTIM_WRAPPER_CONSTRUCTORS", "PARAM_SCHEDULERS",
    "HOOKS", "LOOPS", "METRICS", "EVALUATOR", "LOG_PROCESSORS", "VISBACKENDS", "VISUALIZERS",
    "RUNNERS", "STRATEGIES", "WEIGHT_INITIALIZERS",
]

# The dotted config keys of the builds in progress, outermost first (``['model', 'backbone']``).
_BUILD_STACK: contextvars.ContextVar[tuple[tuple[str, Any], ...]] = contextvars.ContextVar(
    "raytrainer_build_stack", default=())


class UnknownTypeError(KeyError):
    """A config's ``type`` names nothing the registry (or an import) can find."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


class Registry:
    """A name → class/function table with a ``build`` method.

    Args:
        name: Human-readable name used in error messages (``'model'``, ``'optimizer'``).
        build_func: Builds an object from ``(cfg, registry, default_args)``; defaults to
            :func:`build_from_cfg`.
        parent: A registry searched when a name is not found here (for downstream packages).
        locations: Modules imported on the first lookup, so that their ``register_module``
            decorators have run (``['raytrainer.optim']``).
    """

    def __init__(self, name: str, build_func: Callable | None = None,
                 parent: Registry | None = None, locations: Iterable[str] = ()):
        self.name = name
        self._module_dict: dict[str, Any] = {}
        self.build_func = build_func or build_from_cfg
        self.parent = parent
        self._locations = list(locations)
        self._imported = False

    def __repr__(self) -> str:
        return f"Registry(name={self.name!r}, items={sorted(self.module_dict)})"

    def __len__(self) -> int:
        return len(self.module_dict)

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    @property
    def module_dict(self) -> dict[str, Any]:
        self._import_locations()
        return self._module_dict

    def _import_locations(self) -> None:
        if self._imported:
            return
        self._imported = True
        for location in self._locations:
            importlib.import_module(location)

    def register_module(self, name: str | list[str] | None = None, force: bool = False,
                        module: Any = None):
        """Register a class or function, as a decorator or directly with ``module=``.

        Args:
            name: Name(s) to register under; defaults to ``module.__name__``.
            force: Replace an existing entry instead of raising ``KeyError``.
            module: Register this object now instead of returning a decorator.
        """
        if module is not None:
            self._register(module, name, force)
            return module

        def decorator(obj):
            self._register(obj, name, force)
            return obj

        return decorator

    def _register(self, obj: Any, name: str | list[str] | None, force: bool) -> None:
        if not (inspect.isclass(obj) or callable(obj)):
            raise TypeError(f"only classes and functions can be registered, got {type(obj)}")
        names = [obj.__name__] if name is None else [name] if isinstance(name, str) else name
        for key in names:
            if not force and key in self._module_dict and self._module_dict[key] is not obj:
                raise KeyError(f"{key!r} is already registered in the {self.name} registry "
                               f"(pass force=True to replace it)")
            self._module_dict[key] = obj

    def get(self, key: str) -> Any:
        """Return the object registered as ``key``, or import ``'pkg.mod.Name'``; None if absent."""
        if key in self.module_dict:
            return self._module_dict[key]
        if self.parent is not None:
            found = self.parent.get(key)
            if found is not None:
                return found
        if "." in key:
            return _import_object(key)
        return None

    def close_matches(self, key: str, n: int = 3) -> list[str]:
        names = list(self.module_dict)
        if self.parent is not None:
            names += list(self.parent.module_dict)
        return difflib.get_close_matches(key, names, n=n, cutoff=0.6)

    def build(self, cfg: Mapping | Any, **default_args) -> Any:
        """Build an object from a config dict whose ``type`` this registry resolves.

        ``default_args`` fill constructor arguments that ``cfg`` does not set.
        """
        return self.build_func(cfg, self, default_args or None)


def _import_object(path: str) -> Any:
    module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    return getattr(module, attr, None)


def current_build_key() -> str:
    """The dotted config key of the innermost build in progress ('' outside any build)."""
    return ".".join(key for key, _ in _BUILD_STACK.get())


def _key_for(cfg: Mapping, fallback: str) -> str:
    """Find which key of the enclosing build's config holds ``cfg``, to name nested builds."""
    stack = _BUILD_STACK.get()
    if not stack:
        return fallback
    parent_cfg = stack[-1][1]
    for matcher in (lambda v: v is cfg, lambda v: isinstance(v, Mapping) and v == cfg):
        for key, value in parent_cfg.items():
            if matcher(value):
                return str(key)
            if isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    if matcher(item):
                        return f"{key}.{i}"
    return fallback


def build_from_cfg(cfg: Mapping | Any, registry: Registry, default_args: Mapping | None = None,
                   *, key: str | None = None) -> Any:
    """Build the object a config dict describes.

    Args:
        cfg: A dict with ``type`` plus keyword arguments for the constructor. An object that is
            not a mapping is returned unchanged (components may be passed already built).
        registry: Where ``type`` is looked up.
        default_args: Keyword arguments used where ``cfg`` does not set them.
        key: The config key being built (``'model'``); nested builds find their own.

    Raises:
        UnknownTypeError: ``type`` is not registered and not importable.
        TypeError: ``cfg`` is a mapping without ``type``.
    """
    if not isinstance(cfg, Mapping):
        return cfg
    args = dict(cfg)
    if default_args:
        for name, value in default_args.items():
            args.setdefault(name, value)
    key = key or _key_for(cfg, registry.name)
    path = ".".join([k for k, _ in _BUILD_STACK.get()] + [key])
    if "type" not in args:
        raise TypeError(f"config '{path}' for the {registry.name} registry has no 'type' key; "
                        f"got keys {sorted(args)}")
    obj_type = args.pop("type")
    obj_cls = _resolve_type(obj_type, registry, path)
    token = _BUILD_STACK.set(_BUILD_STACK.get() + ((key, cfg),))
    try:
        return obj_cls(**args)
    except Exception as exc:
        if not getattr(exc, "_raytrainer_build_noted", False):
            name = getattr(obj_cls, "__name__", repr(obj_cls))
            exc.add_note(f"raised while building {registry.name} '{name}' from config key "
                         f"'{path}'")
            exc._raytrainer_build_noted = True  # outer builds keep the innermost key only
        raise
    finally:
        _BUILD_STACK.reset(token)


def _resolve_type(obj_type: Any, registry: Registry, path: str) -> Any:
    if not isinstance(obj_type, str):
        if callable(obj_type):
            return obj_type
        raise TypeError(f"'{path}.type' must be a str, class or function, got {obj_type!r}")
    found = registry.get(obj_type)
    if found is not None:
        return found
    message = f"'{obj_type}' is not registered in the {registry.name} registry (config key " \
              f"'{path}.type')"
    matches = registry.close_matches(obj_type)
    if matches:
        message += "; did you mean " + " or ".join(f"'{m}'" for m in matches) + "?"
    elif "." in obj_type:
        message += f"; importing '{obj_type}' failed too"
    raise UnknownTypeError(message)


def import_modules_from_strings(imports: str | list[str],
                                allow_failed_imports: bool = False) -> list[Any]:
    """Import user modules named in ``custom_imports=dict(imports=[...])``.

    Raises:
        ImportError: A module cannot be imported (names it), unless ``allow_failed_imports``.
    """
    names = [imports] if isinstance(imports, str) else list(imports)
    modules = []
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"custom_imports.imports must hold module names, got {name!r}")
        try:
            modules.append(importlib.import_module(name))
        except ImportError as exc:
            if not allow_failed_imports:
                raise ImportError(f"custom_imports: cannot import '{name}': {exc}") from exc
            modules.append(None)
    return modules


MODELS = Registry("model", locations=["raytrainer.model"])
MODEL_WRAPPERS = Registry("model wrapper", locations=["raytrainer.model"])
WEIGHT_INITIALIZERS = Registry("weight initializer", locations=["raytrainer.model"])
DATASETS = Registry("dataset", locations=["raytrainer.dataset"])
TRANSFORMS = Registry("transform", locations=["raytrainer.dataset"])
DATA_SAMPLERS = Registry("data sampler", locations=["raytrainer.dataset"])
FUNCTIONS = Registry("function", locations=["raytrainer.dataset"])
OPTIMIZERS = Registry("optimizer", locations=["raytrainer.optim"])
OPTIM_WRAPPERS = Registry("optim wrapper", locations=["raytrainer.optim"])
OPTIM_WRAPPER_CONSTRUCTORS = Registry("optimizer wrapper constructor",
                                      locations=["raytrainer.optim"])


def build_param_scheduler_from_cfg(cfg: Mapping[str, Any],
                                   registry: Registry | None = None,
                                   default_args: Mapping[str, Any] | None = None,
                                   key: str | None = None) -> Any:
    """Build a scheduler from ``cfg``; the ``build_func`` of ``PARAM_SCHEDULERS``.

    It lives beside the registry, as MMEngine's ``build_scheduler_from_cfg`` does, because it
    only understands two config keys (``convert_to_iter_based``, ``epoch_length``) and calls the
    scheduler class's ``build_iter_from_epoch``; it needs nothing of the optim package.

    Args:
        cfg: ``dict(type=..., **kwargs)``, optionally with ``convert_to_iter_based=True``.
        registry: Where ``type`` is looked up.
        default_args: Arguments used where ``cfg`` does not set them (the runner passes
            ``optimizer`` and ``epoch_length``).
        key: The config key being built, for error messages (``'param_scheduler.1'``).

    Returns:
        The scheduler.

    Raises:
        ValueError: ``convert_to_iter_based`` is set without a positive ``epoch_length`` or with
            ``by_epoch=False``.
        raytrainer.registry.UnknownTypeError: ``type`` names no registered scheduler.
    """
    registry = PARAM_SCHEDULERS if registry is None else registry
    args = dict(cfg)
    for name, value in (default_args or {}).items():
        args.setdefault(name, value)
    if not args.pop("convert_to_iter_based", False):
        args.pop("epoch_length", None)
        return build_from_cfg(args, registry, key=key)
    scheduler_type = args.get("type")
    scheduler_cls = registry.get(scheduler_type) if isinstance(scheduler_type, str) \
        else scheduler_type
    if scheduler_cls is None:  # let build_from_cfg raise its error with close matches
        return build_from_cfg(args, registry, key=key)
    # ``type`` may be any callable: build through the converting classmethod instead.
    args["type"] = scheduler_cls.build_iter_from_epoch
    return build_from_cfg(args, registry, key=key)


PARAM_SCHEDULERS = Registry("parameter scheduler", build_func=build_param_scheduler_from_cfg,
                            locations=["raytrainer.optim"])
HOOKS = Registry("hook", locations=["raytrainer.hooks", "raytrainer.launch.worker.report_hook"])
LOOPS = Registry("loop", locations=["raytrainer.runner"])
RUNNERS = Registry("runner", locations=["raytrainer.runner"])
LOG_PROCESSORS = Registry("log processor", locations=["raytrainer.runner"])
METRICS = Registry("metric", locations=["raytrainer.evaluator"])
EVALUATOR = Registry("evaluator", locations=["raytrainer.evaluator"])
VISBACKENDS = Registry("vis backend", locations=["raytrainer.visualization"])
VISUALIZERS = Registry("visualizer", locations=["raytrainer.visualization"])
STRATEGIES = Registry("strategy", locations=["raytrainer.strategy"])
