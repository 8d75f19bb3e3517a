"""A run's name, derived from what the driver and every rank agree on.

The Ray driver names the run before any worker starts, and each rank's Runner names it again
from the same inputs; both call this so the two names cannot drift apart.
"""
from __future__ import annotations

import os


def experiment_name_for(experiment_name: str | None, config_file: str | None,
                        timestamp: str) -> str:
    """The run's name: ``<experiment_name>_<timestamp>``, else ``<config name>_<timestamp>``."""
    if experiment_name is not None:
        return f"{experiment_name}_{timestamp}"
    if config_file:
        return f"{os.path.splitext(os.path.basename(config_file))[0]}_{timestamp}"
    return timestamp
