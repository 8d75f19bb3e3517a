"""Optimization: optimizer wrappers and their builder (``optimizer``), parameter schedulers
(``scheduler``). ``from raytrainer.optim import OptimWrapper`` mirrors ``mmengine.optim``."""
from .optimizer import *  # noqa: F403
from .scheduler import *  # noqa: F403
