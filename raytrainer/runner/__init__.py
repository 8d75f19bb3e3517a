"""The Runner, its loops, log processor and checkpoint format."""
from .checkpoint import CheckpointError, latest_checkpoint, list_checkpoints
from .log_processor import LogProcessor
from .loops import BaseLoop, EpochBasedTrainLoop, IterBasedTrainLoop, TestLoop, ValLoop
from .runner import Runner

__all__ = ["Runner", "BaseLoop", "EpochBasedTrainLoop", "IterBasedTrainLoop", "ValLoop",
           "TestLoop", "LogProcessor", "CheckpointError", "latest_checkpoint", "list_checkpoints"]
