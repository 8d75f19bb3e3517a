"""Checkpoints: the committed envelope, full-state and sharded (DCP) backends, what a checkpoint
holds, and the manager the Runner calls.

Modules: ``envelope`` (directory, per-rank ``done`` markers, ``commit.json``, listing,
retention helpers: the on-storage layout), ``full_state`` (``torch.save`` files), ``sharded``
(DCP shards), ``reading`` (open any checkpoint, key checks), ``state`` (what is saved and how it
is restored, also on another world size), ``async_save`` (background writes), ``manager``
(``CheckpointManager``), ``convert`` (a sharded checkpoint to one weights file), ``foreign``
(MMEngine ``.pth`` files without running code).
"""
from .envelope import (
    COMMIT_FILE,
    META_FILE,
    CheckpointError,
    commit,
    delete_checkpoint,
    done_file,
    is_committed,
    is_regular,
    latest_checkpoint,
    lineage_suffixed,
    list_checkpoints,
    owning_lineage,
    read_commit,
    read_meta,
    unusable_checkpoints_error,
)
from .full_state import MODEL_FILE, OPTIMIZER_FILE, RANK_STATE_KEY, STATE_FILE, rank_file
from .manager import CheckpointManager
from .reading import CheckpointKeyMismatch, load_checkpoint, open_checkpoint

__all__ = ["CheckpointManager", "CheckpointError", "CheckpointKeyMismatch", "load_checkpoint",
           "open_checkpoint", "list_checkpoints", "latest_checkpoint", "read_commit",
           "read_meta", "is_committed", "is_regular", "delete_checkpoint", "commit",
           "done_file", "rank_file", "lineage_suffixed", "owning_lineage",
           "unusable_checkpoints_error", "COMMIT_FILE", "META_FILE", "MODEL_FILE",
           "OPTIMIZER_FILE", "STATE_FILE", "RANK_STATE_KEY"]
