"""The Runner, its loops and log processor (checkpoints live in ``raytrainer.checkpoint``)."""
from ..checkpoint import CheckpointError, latest_checkpoint, list_checkpoints
from .log_processor import LogProcessor
from .loops import BaseLoop, EpochBasedTrainLoop, IterBasedTrainLoop, TestLoop, ValLoop
from .runner import Runner

__all__ = ["Runner", "BaseLoop", "EpochBasedTrainLoop", "IterBasedTrainLoop", "ValLoop",
           "TestLoop", "LogProcessor", "CheckpointError", "latest_checkpoint", "list_checkpoints"]
