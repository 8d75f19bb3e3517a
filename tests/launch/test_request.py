"""The run commands' command lines: a config that ``--resume`` swallowed is explained."""
from __future__ import annotations

import pytest

from raytrainer import cli


def test_resume_before_the_config_says_the_config_comes_first(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["train", "--resume", "configs/digits/mlp.py"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "raytrainer train: error: --resume took configs/digits/mlp.py as the checkpoint to "
        "resume from, and no config follows it; the config comes first: raytrainer train "
        "configs/digits/mlp.py --resume (the latest checkpoint) or raytrainer train "
        "configs/digits/mlp.py --resume CHECKPOINT")


@pytest.mark.parametrize("argv", [["train", "--launcher", "none"],
                                  ["train", "--resume", "work_dirs/x/checkpoints/epoch_2"]])
def test_other_missing_configs_keep_argparses_message(argv, capsys):
    with pytest.raises(SystemExit):
        cli.main(argv)
    assert capsys.readouterr().err.splitlines()[-1] == \
        "raytrainer train: error: the following arguments are required: config"
