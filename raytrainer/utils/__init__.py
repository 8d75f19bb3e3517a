"""Small helpers shared across packages: global named instances, randomness, misc."""
from .manager import ManagerMixin
from .randomness import draw_seed, set_random_seed

__all__ = ["ManagerMixin", "set_random_seed", "draw_seed"]
