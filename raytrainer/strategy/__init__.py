"""Strategies: device placement, model wrapping and state-dict handling per process."""
from .base import BaseStrategy
from .ddp import DDPStrategy, ddp_strategy_cfg
from .single_device import SingleDeviceStrategy

__all__ = ["BaseStrategy", "SingleDeviceStrategy", "DDPStrategy", "ddp_strategy_cfg"]
