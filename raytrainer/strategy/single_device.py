"""One process, one device: no wrapping, state dicts as the model gives them."""
from __future__ import annotations

from ..registry import STRATEGIES
from .base import BaseStrategy


@STRATEGIES.register_module()
class SingleDeviceStrategy(BaseStrategy):
    """Train on one device (the first GPU if there is one, else CPU) in this process."""
