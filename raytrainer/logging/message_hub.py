"""The message hub: scalars (with history) and run info that hooks and loops share."""
from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

import numpy as np
import torch

from ..utils.manager import ManagerMixin
from .history_buffer import HistoryBuffer

_PLAIN_NUMBERS = (float, int)


def _scalar(key: str, value: Any) -> int | float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"scalar '{key}' must hold one element, got shape "
                             f"{tuple(value.shape)}")
        return value.item()
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError(f"scalar '{key}' must hold one element, got shape {value.shape}")
        return value.item()
    if isinstance(value, np.number):
        return value.item()
    if isinstance(value, (int, float)):
        return value
    raise TypeError(f"scalar '{key}' must be a number or one-element tensor, got {type(value)}")


class MessageHub(ManagerMixin):
    """Holds ``log_scalars`` (name → HistoryBuffer) and ``runtime_info`` (name → value).

    Keys updated with ``resumed=True`` (the default) are part of ``state_dict`` and come back
    when training resumes.
    """

    def __init__(self, name: str, log_scalars: dict | None = None,
                 runtime_info: dict | None = None, resumed_keys: dict | None = None):
        super().__init__(name)
        self._log_scalars: OrderedDict[str, HistoryBuffer] = OrderedDict(log_scalars or {})
        self._runtime_info: OrderedDict[str, Any] = OrderedDict(runtime_info or {})
        self._resumed_keys: dict[str, bool] = dict(resumed_keys or {})

    @property
    def log_scalars(self) -> OrderedDict:
        return self._log_scalars

    @property
    def runtime_info(self) -> OrderedDict:
        return self._runtime_info

    def update_scalar(self, key: str, value: Any, count: int = 1, resumed: bool = True) -> None:
        """Append ``value`` (a number or one-element tensor) to the history of ``key``."""
        # Python numbers, what hooks log every iteration, need no conversion.
        if type(value) not in _PLAIN_NUMBERS:
            value = _scalar(key, value)
        if type(count) is not int:
            count = _scalar(key, count)
        buffer = self._log_scalars.get(key)
        if buffer is None:
            buffer = self._log_scalars[key] = HistoryBuffer()
        buffer.update(value, count)
        self._resumed_keys[key] = resumed

    def update_scalars(self, log_dict: dict, resumed: bool = True) -> None:
        """Update several scalars; a value may be ``dict(value=..., count=...)``."""
        if not isinstance(log_dict, dict):
            raise TypeError(f"update_scalars expects a dict, got {type(log_dict)}")
        for key, value in log_dict.items():
            if isinstance(value, dict):
                self.update_scalar(key, value["value"], value.get("count", 1), resumed)
            else:
                self.update_scalar(key, value, 1, resumed)

    def update_info(self, key: str, value: Any, resumed: bool = True) -> None:
        self._runtime_info[key] = value
        self._resumed_keys[key] = resumed

    def update_info_dict(self, info_dict: dict, resumed: bool = True) -> None:
        for key, value in info_dict.items():
            self.update_info(key, value, resumed)

    def pop_info(self, key: str, default: Any = None) -> Any:
        return self._runtime_info.pop(key, default)

    def get_scalar(self, key: str) -> HistoryBuffer:
        if key not in self._log_scalars:
            raise KeyError(f"scalar '{key}' has not been logged yet; logged scalars: "
                           f"{list(self._log_scalars)}")
        return self._log_scalars[key]

    def get_info(self, key: str, default: Any = None) -> Any:
        return self._runtime_info.get(key, default)

    def state_dict(self) -> dict:
        """Resumable scalars and info, as plain python data (no pickled classes)."""
        scalars = {k: v.state_dict() for k, v in self._log_scalars.items()
                   if self._resumed_keys.get(k, False)}
        info = {k: copy.deepcopy(v) for k, v in self._runtime_info.items()
                if self._resumed_keys.get(k, False)}
        return {"log_scalars": scalars, "runtime_info": info,
                "resumed_keys": dict(self._resumed_keys)}

    def load_state_dict(self, state: dict) -> None:
        for key, buffer in state.get("log_scalars", {}).items():
            self._log_scalars[key] = HistoryBuffer.from_state_dict(buffer)
        for key, value in state.get("runtime_info", {}).items():
            self._runtime_info[key] = value
        self._resumed_keys.update(state.get("resumed_keys", {}))
