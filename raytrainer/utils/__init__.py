"""Small helpers shared across packages: global named instances, randomness, misc."""
from .manager import ManagerMixin
from .randomness import set_random_seed, draw_seed

__all__ = ["ManagerMixin", "set_random_seed", "draw_seed"]
