"""Visualization backends: where logged scalars and the run's config end up.

This module owns the backends (a JSON-lines file next to the logs, TensorBoard event files) and
the conversion of logged values to plain numbers. It does not decide when anything is logged
(LoggerHook does) nor which rank writes (the Visualizer calls backends on rank 0 only).
"""
from __future__ import annotations

import json
import numbers
import posixpath
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from raytrainer import storage
from raytrainer.registry import VISBACKENDS

__all__ = ["BaseVisBackend", "LocalVisBackend", "TensorboardVisBackend", "to_number"]


def to_number(name: str, value: Any) -> int | float | bool:
    """Return ``value`` as a python number; tensors and arrays must hold exactly one element.

    Raises:
        TypeError: ``value`` is not a number or holds more than one element; names ``name``.
    """
    if isinstance(value, (torch.Tensor, np.ndarray)):
        size = value.size if isinstance(value, np.ndarray) else value.numel()
        if size != 1:
            raise TypeError(f"scalar '{name}' must be a number or a one-element tensor/array, "
                            f"got shape {tuple(value.shape)}")
        return value.item()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, numbers.Real):
        return value
    raise TypeError(f"scalar '{name}' must be a number or a one-element tensor/array, "
                    f"got {type(value).__name__}")


def _config_text(config: Any) -> str:
    text = getattr(config, "pretty_text", None)
    if not isinstance(text, str):
        raise TypeError(f"add_config expects a Config (an object with a 'pretty_text' str), "
                        f"got {type(config).__name__}")
    return text


class BaseVisBackend:
    """Base of the backends: each method is a no-op unless a backend supports it.

    Args:
        save_dir: Where the backend writes (a path or URL); None for backends that need none.
    """

    def __init__(self, save_dir: str | None):
        self._save_dir = None if save_dir is None else str(save_dir)

    @property
    def save_dir(self) -> str | None:
        return self._save_dir

    @property
    def experiment(self) -> Any:
        """The underlying writer (e.g. a ``SummaryWriter``) for what the API does not cover."""
        return self

    def add_config(self, config: Any, **kwargs) -> None:
        """Record the run's config."""

    def add_scalar(self, name: str, value: Any, step: int = 0, **kwargs) -> None:
        """Record one scalar at ``step``."""

    def add_scalars(self, scalar_dict: Mapping[str, Any], step: int = 0,
                    file_path: str | None = None, **kwargs) -> None:
        """Record several scalars at ``step``."""

    def close(self) -> None:
        """Flush and release what the backend holds open."""


def _check_scalars(scalar_dict: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(scalar_dict, Mapping):
        raise TypeError(f"add_scalars expects a dict of name -> number, got "
                        f"{type(scalar_dict).__name__}")
    if "step" in scalar_dict:
        raise ValueError("add_scalars: 'step' is reserved for the step; pass it as step=..., "
                         "not as a key of scalar_dict")
    return {str(name): to_number(str(name), value) for name, value in scalar_dict.items()}


@VISBACKENDS.register_module()
class LocalVisBackend(BaseVisBackend):
    """Write scalars as JSON lines and the config as a ``.py`` file under ``save_dir``.

    Each ``add_scalars`` call appends one line, ``{"loss": 0.5, "lr": 0.01, "step": 10}``, to
    ``save_dir/scalars.json`` (and to ``save_dir/<file_path>`` when ``file_path`` is given);
    ``add_config`` writes ``save_dir/config.py``. Files are opened on first use, so a backend
    that never logs creates nothing.

    ``save_dir`` may be any storage URL. The scalar files stay open as append streams that are
    flushed after every line: on a local disk (or ``memory://``) readers see each line at once;
    object stores (``s3://``, ``gs://``) cannot append, so there the file becomes visible when
    the backend is closed at the end of the run, and a crash before that loses it.

    Args:
        save_dir: Directory (path or URL) for the files.
        scalar_save_file: Name of the scalars file; must end with ``.json``.
        config_save_file: Name of the config file; must end with ``.py``.
    """

    def __init__(self, save_dir: str, scalar_save_file: str = "scalars.json",
                 config_save_file: str = "config.py"):
        if save_dir is None:
            raise ValueError("LocalVisBackend needs a save_dir (a path or URL)")
        if not str(scalar_save_file).endswith(".json"):
            raise ValueError(f"LocalVisBackend: scalar_save_file must end with '.json', "
                             f"got {scalar_save_file!r}")
        if not str(config_save_file).endswith(".py"):
            raise ValueError(f"LocalVisBackend: config_save_file must end with '.py', "
                             f"got {config_save_file!r}")
        super().__init__(save_dir)
        self._scalar_file = storage.join(self._save_dir, scalar_save_file)
        self._config_file = storage.join(self._save_dir, config_save_file)
        self._streams: dict[str, Any] = {}

    @property
    def scalar_file(self) -> str:
        return self._scalar_file

    @property
    def config_file(self) -> str:
        return self._config_file

    def add_config(self, config: Any, **kwargs) -> None:
        """Write ``config.pretty_text`` to ``save_dir/config.py``."""
        storage.write_text(self._config_file, _config_text(config))

    def add_scalar(self, name: str, value: Any, step: int = 0, **kwargs) -> None:
        """Append ``{name: value, "step": step}`` to the scalars file."""
        self.add_scalars({name: value}, step)

    def add_scalars(self, scalar_dict: Mapping[str, Any], step: int = 0,
                    file_path: str | None = None, **kwargs) -> None:
        """Append the scalars plus ``"step"`` as one JSON line.

        Args:
            scalar_dict: Name -> number (python, numpy or a one-element tensor).
            step: The step the values belong to.
            file_path: Also append the line to this ``.json`` file, relative to ``save_dir``
                (LoggerHook passes ``<timestamp>.json``, as MMEngine does).

        Raises:
            TypeError: A value is not a scalar (names its key).
        """
        record = _check_scalars(scalar_dict)
        record["step"] = step
        line = json.dumps(record) + "\n"
        targets = [self._scalar_file]
        if file_path is not None:
            targets.append(self._extra_file(file_path))
        for location in targets:
            self._append(location, line)

    def _extra_file(self, file_path: str) -> str:
        if not str(file_path).endswith(".json"):
            raise ValueError(f"add_scalars: file_path must end with '.json', got {file_path!r}")
        location = storage.join(self._save_dir, str(file_path))
        if location == self._scalar_file:
            raise ValueError(f"add_scalars: file_path {file_path!r} is the scalars file itself; "
                             "choose another name")
        return location

    def _append(self, location: str, line: str) -> None:
        stream = self._streams.get(location)
        if stream is None:
            stream = self._streams[location] = storage.open_text_for_append(location, "a")
        stream.write(line)
        stream.flush()

    def close(self) -> None:
        for stream in self._streams.values():
            stream.close()
        self._streams.clear()


def _import_summary_writer():
    """TensorBoard's writer from torch, else from tensorboardX; None if neither imports."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            return None
    return SummaryWriter


@VISBACKENDS.register_module()
class TensorboardVisBackend(BaseVisBackend):
    """Write scalars and the config to TensorBoard event files under ``save_dir``.

    Uses ``torch.utils.tensorboard`` (needs the ``tensorboard`` package), falling back to
    ``tensorboardX``. The event files are written by TensorBoard's own writer, so ``save_dir``
    must be a local path or a URL that writer supports (``s3://``/``gs://`` with TensorBoard's
    file-system plugins); ``memory://`` is not supported.

    Args:
        save_dir: Directory for the event files.

    Raises:
        ImportError: Neither ``tensorboard`` nor ``tensorboardX`` is installed.
    """

    def __init__(self, save_dir: str):
        if save_dir is None:
            raise ValueError("TensorboardVisBackend needs a save_dir")
        super().__init__(save_dir)
        if _import_summary_writer() is None:
            raise ImportError("TensorboardVisBackend needs TensorBoard: run "
                              "'pip install tensorboard' (or 'pip install tensorboardX')")
        self._writer = None

    @property
    def experiment(self) -> Any:
        """The ``SummaryWriter`` (created on first use so unused backends leave no files)."""
        if self._writer is None:
            log_dir = self._save_dir
            if log_dir.startswith("file://"):
                log_dir = log_dir[len("file://"):]
            elif not storage.is_url(log_dir):
                log_dir = posixpath.abspath(log_dir)
            self._writer = _import_summary_writer()(log_dir)
        return self._writer

    def add_config(self, config: Any, **kwargs) -> None:
        """Record the config text under the ``config`` tag."""
        self.experiment.add_text("config", _config_text(config))

    def add_scalar(self, name: str, value: Any, step: int = 0, **kwargs) -> None:
        self.experiment.add_scalar(name, to_number(name, value), step)

    def add_scalars(self, scalar_dict: Mapping[str, Any], step: int = 0,
                    file_path: str | None = None, **kwargs) -> None:
        """Record each scalar as its own TensorBoard tag; ``file_path`` is not used here."""
        for name, value in _check_scalars(scalar_dict).items():
            self.experiment.add_scalar(name, value, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
