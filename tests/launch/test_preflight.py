"""Mistakes only a worker used to find fail on the driver before Ray starts: a constructor
argument the model or a dataset does not take, a missing one, a val/test run without its
loader. Each run is given a dead --address: reaching it would mean the check let it through."""
from __future__ import annotations

import os

import pytest

from raytrainer import cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MLP = os.path.join(ROOT, "configs", "digits", "mlp.py")
DEAD = "127.0.0.1:1"


def _config(tmp_path, text: str) -> str:
    path = tmp_path / "cfg.py"
    path.write_text(f"_base_ = [{MLP!r}]\n{text}")
    return str(path)


@pytest.mark.parametrize("text, expected", [
    ("model = dict(hiden_dims=[32])\n",
     "TypeError: MLPClassifier(in_features: 'int' = 64, hidden_dims: 'Sequence[int]' = (256, "
     "256), num_classes: 'int' = 10, dropout: 'float' = 0.0, data_preprocessor=None, "
     "init_cfg=None): got an unexpected keyword argument 'hiden_dims' (raised while building "
     "model 'MLPClassifier' from config key 'model')"),
    ("model = dict(_delete_=True, type='torch.nn.Linear', in_features=64)\n",
     "missing a required argument: 'out_features' (raised while building model 'Linear' from "
     "config key 'model')"),
    ("train_dataloader = dict(dataset=dict(splt='train'))\n",
     "got an unexpected keyword argument 'splt' (raised while building dataset "
     "'DigitsDataset' from config key 'train_dataloader.dataset')"),
])
def test_a_constructor_argument_mistake_fails_before_ray_starts(tmp_path, capsys, text,
                                                                expected):
    code = cli.main(["train", _config(tmp_path, text), "--work-dir", str(tmp_path / "w"),
                     "--address", DEAD])
    assert code == 1
    err = capsys.readouterr().err
    assert expected in err, err
    assert "cannot reach the Ray cluster" not in err


@pytest.mark.parametrize("mode", ["val", "test"])
def test_a_val_or_test_run_without_its_loader_fails_before_ray_starts(tmp_path, capsys, mode):
    config = _config(tmp_path, f"{mode}_dataloader = None\n{mode}_cfg = None\n"
                               f"{mode}_evaluator = None\n")
    checkpoint = tmp_path / "model.pth"
    checkpoint.write_bytes(b"")  # never read: the loop check comes first
    code = cli.main([mode, config, "--work-dir", str(tmp_path / "w"), "--checkpoint",
                     str(checkpoint), "--address", DEAD])
    assert code == 1
    assert capsys.readouterr().err.splitlines()[0] == (
        f"raytrainer {mode} failed: ConfigError: {mode} needs {mode}_dataloader, {mode}_cfg, "
        f"{mode}_evaluator; the config lacks {mode}_dataloader, {mode}_cfg, {mode}_evaluator")
