"""The Visualizer: one named, process-wide front for the run's visualization backends.

This module owns building the backends from config, fanning each call out to all of them and
keeping non-zero ranks from writing. What each backend writes, and how, lives in
:mod:`raytrainer.visualization.vis_backend`.
"""
from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from raytrainer import dist, storage
from raytrainer.registry import VISBACKENDS, VISUALIZERS
from raytrainer.utils.manager import ManagerMixin

from .vis_backend import BaseVisBackend

__all__ = ["Visualizer"]


@VISUALIZERS.register_module()
class Visualizer(ManagerMixin):
    """Send config and scalars to every configured backend, from rank 0 only.

    A Visualizer is a named global instance: ``Visualizer.get_instance(name, ...)`` creates or
    returns it and ``Visualizer.get_current_instance()`` finds it from anywhere (a user hook,
    say). A Visualizer built any other way (a registry build, a direct call) also becomes the
    current instance, replacing an earlier one of the same name.

    Args:
        name: The instance name (the runner uses the experiment name).
        vis_backends: Backends as config dicts (``dict(type='LocalVisBackend')``; an optional
            ``name`` key names it for :meth:`get_backend`) or built backends; one or a list.
        save_dir: Base directory (path or URL); backend configs without their own ``save_dir``
            write under ``<save_dir>/vis_data`` (MMEngine's layout).

    Raises:
        TypeError: ``vis_backends`` holds something other than dicts and backends.
        ValueError: Two backends have the same name.

    Example:
        >>> vis = Visualizer.get_instance('exp', save_dir='memory://run',
        ...                               vis_backends=[dict(type='LocalVisBackend')])
        >>> vis.add_scalars({'loss': 0.5}, step=1)  # memory://run/vis_data/scalars.json
    """

    def __init__(self, name: str = "visualizer",
                 vis_backends: Mapping | BaseVisBackend | Sequence | None = None,
                 save_dir: str | None = None):
        super().__init__(name)
        backend_save_dir = None if save_dir is None else storage.join(str(save_dir), "vis_data")
        self._vis_backends: dict[str, BaseVisBackend] = {}
        for backend_name, backend in self._build_backends(vis_backends, backend_save_dir):
            if backend_name in self._vis_backends:
                raise ValueError(f"visualizer '{name}': two vis_backends are named "
                                 f"'{backend_name}'; give one a different 'name'")
            self._vis_backends[backend_name] = backend
        self._make_current()

    @staticmethod
    def _build_backends(vis_backends, save_dir: str | None):
        if vis_backends is None:
            return
        if isinstance(vis_backends, (Mapping, BaseVisBackend)):
            vis_backends = [vis_backends]
        if isinstance(vis_backends, (str, bytes)) or not isinstance(vis_backends, Sequence):
            raise TypeError("vis_backends must be a dict, a backend, or a list of them, got "
                            f"{type(vis_backends).__name__}")
        for i, item in enumerate(vis_backends):
            backend_name = None
            if isinstance(item, Mapping):
                cfg = dict(item)
                backend_name = cfg.pop("name", None)
                cfg.setdefault("save_dir", save_dir)
                if cfg["save_dir"] is None and _requires_save_dir(cfg):
                    warnings.warn(f"vis_backends[{i}] ({cfg.get('type')}) needs a save_dir and "
                                  "none was given; skipping it", stacklevel=3)
                    continue
                item = VISBACKENDS.build(cfg)
            elif not isinstance(item, BaseVisBackend):
                raise TypeError(f"vis_backends[{i}] must be a dict or a BaseVisBackend, got "
                                f"{type(item).__name__}")
            yield backend_name or type(item).__name__, item

    def _make_current(self) -> None:
        # Registry builds call the constructor, not get_instance; registering here makes
        # get_current_instance() find this visualizer however it was made. Subclass instances
        # are registered on Visualizer too, so hooks asking the base class find them.
        with self._instance_lock:
            for cls in {type(self), Visualizer}:
                cls._instances[self.instance_name] = self
                cls._current = self.instance_name

    @classmethod
    def get_instance(cls, name: str, **kwargs) -> Visualizer:
        """Return the visualizer called ``name``, creating it with ``kwargs`` if it is new."""
        instance = super().get_instance(name, **kwargs)
        instance._make_current()
        return instance

    @property
    def vis_backends(self) -> dict[str, BaseVisBackend]:
        return dict(self._vis_backends)

    @dist.master_only
    def get_backend(self, name: str) -> BaseVisBackend | None:
        """The backend called ``name`` (its class name unless configured); None if absent.

        As in MMEngine, ranks other than 0 get None: only rank 0 owns the backends' output.
        """
        return self._vis_backends.get(name)

    @dist.master_only
    def add_config(self, config: Any, **kwargs) -> None:
        """Record the run's config (an object with ``pretty_text``) in every backend."""
        for backend in self._vis_backends.values():
            backend.add_config(config, **kwargs)

    @dist.master_only
    def add_scalar(self, name: str, value: Any, step: int = 0, **kwargs) -> None:
        """Record one scalar (a number or a one-element tensor/array) at ``step``."""
        for backend in self._vis_backends.values():
            backend.add_scalar(name, value, step, **kwargs)

    @dist.master_only
    def add_scalars(self, scalar_dict: Mapping[str, Any], step: int = 0,
                    file_path: str | None = None, **kwargs) -> None:
        """Record several scalars at ``step``.

        Args:
            scalar_dict: Name -> number; tensors and numpy values are converted.
            step: The step the values belong to.
            file_path: A second ``.json`` file (relative to the backend's ``save_dir``) that
                file-based backends also append to.

        Raises:
            TypeError: A value is not a scalar (the message names its key).
        """
        for backend in self._vis_backends.values():
            backend.add_scalars(scalar_dict, step, file_path, **kwargs)

    def close(self) -> None:
        """Close every backend (flushes files; safe to call more than once)."""
        for backend in self._vis_backends.values():
            backend.close()


def _requires_save_dir(cfg: Mapping) -> bool:
    """Whether the backend class a config names has a ``save_dir`` without default."""
    backend_type = cfg.get("type")
    cls = VISBACKENDS.get(backend_type) if isinstance(backend_type, str) else backend_type
    if not inspect.isclass(cls):
        return False  # let the registry build report the unknown type
    param = inspect.signature(cls.__init__).parameters.get("save_dir")
    return param is not None and param.default is param.empty
