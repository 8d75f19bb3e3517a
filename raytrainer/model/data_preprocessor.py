"""Data preprocessors: move a batch to the model's device and (optionally) normalise images."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..registry import MODELS


@MODELS.register_module()
class BaseDataPreprocessor(nn.Module):
    """Moves every tensor in a batch (dicts, lists, tuples, namedtuples) to the model's device.

    Args:
        non_blocking: Use non-blocking host-to-device copies.
    """

    def __init__(self, non_blocking: bool = False):
        super().__init__()
        self._non_blocking = non_blocking
        self._device = torch.device("cpu")

    @property
    def device(self) -> torch.device:
        return self._device

    def cast_data(self, data: Any) -> Any:
        if isinstance(data, torch.Tensor):
            return data.to(self._device, non_blocking=self._non_blocking)
        if isinstance(data, Mapping):
            return {key: self.cast_data(value) for key, value in data.items()}
        if isinstance(data, (str, bytes)) or data is None:
            return data
        if isinstance(data, tuple) and hasattr(data, "_fields"):
            return type(data)(*(self.cast_data(item) for item in data))
        if isinstance(data, Sequence):
            return type(data)(self.cast_data(item) for item in data)
        if hasattr(data, "to") and callable(data.to):
            return data.to(self._device)
        return data

    def forward(self, data: Any, training: bool = False) -> Any:
        return self.cast_data(data)

    def _apply(self, fn, *args, **kwargs):
        # Track the device the module moves to, whichever of .to/.cuda/.cpu was called.
        probe = fn(torch.empty(0, device=self._device))
        if isinstance(probe, torch.Tensor):
            self._device = probe.device
        return super()._apply(fn, *args, **kwargs)


@MODELS.register_module()
class ImgDataPreprocessor(BaseDataPreprocessor):
    """Moves images to the device, converts to float, normalises, swaps channels and pads.

    The batch is a dict with ``inputs`` (an NCHW tensor or a list of CHW tensors) and
    optionally ``data_samples``.

    Args:
        mean: Per-channel mean (1 or 3 values) or None for no normalisation.
        std: Per-channel std, given together with ``mean``.
        pad_size_divisor: Pad height and width up to a multiple of this.
        pad_value: Value used for padding.
        bgr_to_rgb: Reverse the channel order.
        rgb_to_bgr: Same as ``bgr_to_rgb`` (the conversion is symmetric).
        non_blocking: Use non-blocking copies.
    """

    def __init__(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 pad_size_divisor: int = 1, pad_value: float = 0, bgr_to_rgb: bool = False,
                 rgb_to_bgr: bool = False, non_blocking: bool = False):
        super().__init__(non_blocking)
        if bgr_to_rgb and rgb_to_bgr:
            raise ValueError("ImgDataPreprocessor: set only one of bgr_to_rgb and rgb_to_bgr")
        if (mean is None) != (std is None):
            raise ValueError("ImgDataPreprocessor: mean and std must both be set or both None")
        self._normalize = mean is not None
        if mean is not None:
            if len(mean) not in (1, 3) or len(std) not in (1, 3):
                raise ValueError("ImgDataPreprocessor: mean and std need 1 or 3 values, got "
                                 f"{len(mean)} and {len(std)}")
            self.register_buffer("mean", torch.tensor(mean).view(-1, 1, 1), False)
            self.register_buffer("std", torch.tensor(std).view(-1, 1, 1), False)
        self._swap_channels = bgr_to_rgb or rgb_to_bgr
        self.pad_size_divisor = pad_size_divisor
        self.pad_value = pad_value

    def _process(self, images: torch.Tensor) -> torch.Tensor:
        if self._swap_channels:
            images = images.flip(-3)
        images = images.float()
        if self._normalize:
            images = (images - self.mean) / self.std
        return images

    def _pad(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        div = self.pad_size_divisor
        pad_h = math.ceil(height / div) * div - height
        pad_w = math.ceil(width / div) * div - width
        if pad_h or pad_w:
            images = F.pad(images, (0, pad_w, 0, pad_h), value=self.pad_value)
        return images

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        if not isinstance(data, Mapping) or "inputs" not in data:
            raise TypeError("ImgDataPreprocessor expects a dict batch with an 'inputs' key, got "
                            f"{type(data).__name__}")
        inputs = data["inputs"]
        if isinstance(inputs, torch.Tensor):
            if inputs.dim() != 4:
                raise ValueError("ImgDataPreprocessor: 'inputs' must be NCHW, got shape "
                                 f"{tuple(inputs.shape)}")
            batch = self._pad(self._process(inputs))
        else:
            images = [self._process(image) for image in inputs]
            max_h = max(image.shape[-2] for image in images)
            max_w = max(image.shape[-1] for image in images)
            images = [F.pad(image, (0, max_w - image.shape[-1], 0, max_h - image.shape[-2]),
                            value=self.pad_value) for image in images]
            batch = self._pad(torch.stack(images))
        data = dict(data)
        data["inputs"] = batch
        data.setdefault("data_samples", None)
        return data
