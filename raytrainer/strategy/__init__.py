"""Strategies: device placement, model wrapping and state-dict handling per process."""
from .base import BaseStrategy
from .ddp import DDPStrategy
from .single_device import SingleDeviceStrategy

__all__ = ["BaseStrategy", "SingleDeviceStrategy", "DDPStrategy"]
