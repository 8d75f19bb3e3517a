"""What the driver decides once per run and every rank (and every restart) must share."""
from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass

from .. import checkpoint as ckpt
from .. import storage
from ..checkpoint.folder import checkpoint_dir_of
from ..config import Config
from ..logging import print_log
from ..runner import validation
from ..utils.randomness import draw_seed
from ..utils.run_identity import experiment_name_for


@dataclass(frozen=True)
class RunSpec:
    """The identity of a run.

    Attributes:
        work_dir: The run's storage location (also Ray Train's run directory).
        timestamp: Names the log directory; checkpoints of this run carry it.
        seed: The run's seed (drawn here when the config's is None).
        experiment_name: The run's name.
        checkpoint_dir: Where its checkpoints are.
        resume: What the first attempt resumes from: False, or a checkpoint location.
        lineage: The checkpoint lineage the run continues (its own timestamp when fresh).
    """

    work_dir: str
    timestamp: str
    seed: int
    experiment_name: str
    checkpoint_dir: str
    resume: bool | str
    lineage: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _absolute(location: str) -> str:
    return str(location) if storage.is_url(str(location)) else os.path.abspath(str(location))


def decide_run(cfg: Config) -> RunSpec:
    """Fix the run's identity from the config (and the latest checkpoint when resuming).

    ``resume=True``/``'auto'`` continues the most recently committed checkpoint in the run's
    checkpoint directory (as MMEngine continues its most recently saved one, even when an
    earlier run in the same directory got further) and adopts its timestamp and seed, so the
    continued run logs into the same directory and its restarts find the same checkpoints.
    """
    if not cfg.get("work_dir"):
        raise ValueError("the config has no 'work_dir'; set it or pass --work-dir")
    work_dir = _absolute(cfg["work_dir"])
    checkpoint_dir = checkpoint_dir_of(cfg, work_dir)
    randomness = cfg.get("randomness") or {}
    validation.check_randomness(randomness)
    timestamp, seed = time.strftime("%Y%m%d_%H%M%S"), randomness.get("seed")
    lineage = None
    resume = cfg.get("resume", False)
    if resume in (True, "auto"):
        rejected: list[tuple[str, str]] = []
        found = ckpt.list_checkpoints(checkpoint_dir, rejected=rejected)
        latest = found[-1] if found else None
        if latest is None and rejected:
            raise ckpt.unusable_checkpoints_error(checkpoint_dir, rejected, f"resume={resume!r}")
        if latest is None:
            print_log(f"resume={resume!r}: no committed checkpoint in "
                      f"{storage.describe(checkpoint_dir)}; starting a new run",
                      logger="current", level=logging.INFO)
            resume = False
        else:
            meta = ckpt.read_meta(latest)
            timestamp = meta.get("timestamp", timestamp)
            lineage = meta.get("lineage")
            seed = meta.get("seed", seed) if seed is None else seed
            resume = latest
    elif resume and not isinstance(resume, str):
        raise ValueError(f"resume must be True, 'auto', False or a checkpoint location, got "
                         f"{resume!r}")
    elif resume and storage.is_dir(resume):
        # An explicit checkpoint continues its lineage (the Runner adopts it too), so the
        # resubmitted driver of that run can take the run's work_dir lease over.
        meta = ckpt.read_meta(resume)
        lineage = meta.get("lineage") or meta.get("timestamp")
    if seed is None:
        seed = draw_seed()
    name = experiment_name_for(cfg.get("experiment_name"), cfg.filename, timestamp)
    return RunSpec(work_dir=work_dir, timestamp=timestamp, seed=int(seed),
                   experiment_name=name, checkpoint_dir=checkpoint_dir, resume=resume,
                   lineage=lineage or timestamp)
