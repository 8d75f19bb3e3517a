"""Strategies: device placement, model wrapping and state-dict handling per process."""
from .base import BaseStrategy
from .ddp import DDPStrategy, ddp_strategy_cfg
from .fsdp import FSDPStrategy
from .single_device import SingleDeviceStrategy

__all__ = ["BaseStrategy", "SingleDeviceStrategy", "DDPStrategy", "FSDPStrategy",
           "ddp_strategy_cfg"]
