"""Seeding of every random number generator a training run touches."""
from __future__ import annotations

import os
import random

import numpy as np
import torch


def draw_seed() -> int:
    """Draw a fresh seed (for ``randomness.seed=None``); the caller records it."""
    return int(np.random.randint(2**31))


def set_random_seed(seed: int, deterministic: bool = False, diff_rank_seed: bool = False,
                    rank: int = 0) -> int:
    """Seed python, numpy and torch (CPU and CUDA); return the seed actually used.

    Args:
        seed: The run's seed.
        deterministic: Ask torch for deterministic kernels (and cuDNN without benchmarking).
        diff_rank_seed: Add the rank to the seed so that ranks draw different numbers.
        rank: This process's rank.
    """
    if diff_rank_seed:
        seed += rank
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    return seed
