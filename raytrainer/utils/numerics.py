"""What decides a process's floating-point results besides its inputs: the intra-op threads.

CPU kernels split their work across torch's intra-op threads (OpenMP, and MKL for matrix
products), and a product split over 2 threads sums in another order than over 1: a run resumed
with another thread count than the one that saved its checkpoint leaves the uninterrupted run's
weights in the last bits from its first step on. A checkpoint therefore records each rank's
thread count (with the torch version), and a resumed rank compares it with its own:

- with ``randomness.deterministic=True`` it takes the checkpoint's thread count
  (``torch.set_num_threads``), so the resumed run stays bitwise equal;
- otherwise it keeps its own and warns that the run continues close to, not bitwise equal to,
  the uninterrupted one.

A different torch version is only reported: kernels may differ between releases, which no
setting undoes.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


def numerics_state() -> dict[str, Any]:
    """This process's intra-op thread count and torch version, for a rank's checkpoint state."""
    return {"intra_op_threads": torch.get_num_threads(), "torch": str(torch.__version__)}


def restore_numerics(saved: Mapping[str, Any], deterministic: bool, where: str,
                     logger: Any) -> None:
    """Compare a checkpoint's :func:`numerics_state` with this process's; in deterministic
    mode take its thread count. ``where`` names the checkpoint in the messages."""
    threads, own = saved.get("intra_op_threads"), torch.get_num_threads()
    if isinstance(threads, int) and threads > 0 and threads != own:
        if deterministic:
            torch.set_num_threads(threads)
            logger.info(f"{where} was saved with {threads} intra-op thread(s); this process "
                        f"had {own} and now uses {threads}, as randomness.deterministic=True "
                        "asks (a bitwise-equal resume)")
        else:
            logger.warning(f"{where} was saved with {threads} intra-op thread(s) and this "
                           f"process uses {own}: the resumed run is close to, not bitwise "
                           "equal to, an uninterrupted one; set randomness.deterministic=True "
                           "(or --deterministic) to take the checkpoint's thread count")
    version = saved.get("torch")
    if isinstance(version, str) and version != str(torch.__version__):
        logger.warning(f"{where} was saved with torch {version} and this process runs "
                       f"{torch.__version__}: results after resuming may differ in the last bits")
