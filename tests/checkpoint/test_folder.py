"""Where a config's checkpoints go, read before any hook is built."""
from __future__ import annotations

from raytrainer.checkpoint.folder import checkpoint_dir_for, checkpoint_dir_of, checkpoint_hook_cfg
from raytrainer.config import Config


def test_checkpoint_folder_follows_the_hooks_out_dir():
    cfg = Config(dict(default_hooks=dict(checkpoint=dict(type="CheckpointHook",
                                                         out_dir="s3://bucket/ckpts"))))
    assert checkpoint_dir_of(cfg, "/runs/exp1") == "s3://bucket/ckpts/exp1/checkpoints"
    assert checkpoint_dir_for("/runs/exp1") == "/runs/exp1/checkpoints"


def test_absent_or_disabled_checkpoint_hook_reads_as_empty():
    assert checkpoint_hook_cfg(Config({})) == {}
    assert checkpoint_hook_cfg(Config(dict(default_hooks=dict(checkpoint=None)))) == {}
    assert checkpoint_hook_cfg(Config(dict(default_hooks=None))) == {}
    assert checkpoint_dir_of(Config({}), "/runs/exp1") == "/runs/exp1/checkpoints"
