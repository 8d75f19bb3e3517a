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


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A work_dir with the committed epoch_1 of the digits MLP with hidden_dims (32,)."""
    from raytrainer.config import Config
    from raytrainer.runner import Runner

    work_dir = tmp_path_factory.mktemp("preflight") / "work"
    cfg = Config.fromfile(MLP)
    cfg.merge_from_dict({"work_dir": str(work_dir), "train_cfg.max_epochs": 1,
                         "model.hidden_dims": [32], "default_hooks.logger.interval": 50})
    runner = Runner.from_cfg(cfg)
    runner.train()
    runner.logger.close()
    return work_dir


def test_a_resume_whose_checkpoint_does_not_fit_the_model_fails_before_ray_starts(trained,
                                                                                  capsys):
    code = cli.main(["train", MLP, "--work-dir", str(trained), "--resume", "--address", DEAD,
                     "--cfg-options", "model.hidden_dims=[64]"])
    assert code == 1
    err = capsys.readouterr().err
    location = trained / "checkpoints" / "epoch_1"
    assert err.startswith(f"raytrainer train failed: CheckpointKeyMismatch: resume: the weights "
                          f"in {location} do not fit MLPClassifier: size mismatch for "
                          "net.0.bias: the checkpoint has [32], the model [64]; "
                          "net.0.weight: the checkpoint has [32, 64], the model [64, 64]"), err
    assert "; the checkpoint's config differs in the model keys: model.hidden_dims: " \
        "checkpoint [32], config [64]\n" in err, err
    assert "cannot reach the Ray cluster" not in err


def test_a_checkpoint_of_another_model_fails_test_before_ray_starts(trained, tmp_path, capsys):
    config = _config(tmp_path, "model = dict(_delete_=True, type='CharTransformer')\n")
    code = cli.main(["test", config, "--work-dir", str(tmp_path / "w"), "--checkpoint",
                     str(trained / "checkpoints" / "epoch_1"), "--address", DEAD])
    assert code == 1
    err = capsys.readouterr().err
    assert "--checkpoint: the weights in" in err and "do not fit CharTransformer: none of its" \
        in err, err


def test_a_fitting_checkpoint_passes_the_driver_check(trained):
    # (not through the CLI: in a full run this process may already be connected to the test
    # cluster, and a run that passes every check would then train there)
    from raytrainer.config import Config
    from raytrainer.launch.driver.preflight import preflight

    cfg = Config.fromfile(MLP)
    cfg.merge_from_dict({"work_dir": str(trained), "model.hidden_dims": [32], "resume": True})
    preflight(cfg, str(trained), "train")
    cfg.merge_from_dict({"model.hidden_dims": [64]})
    with pytest.raises(ValueError, match="^resume: the weights in .* size mismatch"):
        preflight(cfg, str(trained), "train")


@pytest.mark.slow
def test_a_sharded_checkpoint_is_checked_from_its_metadata_and_a_refused_one_left_to_workers(
        tmp_path):
    from raytrainer.checkpoint.reading import CheckpointKeyMismatch
    from raytrainer.config import Config
    from raytrainer.launch.driver.preflight import check_fits
    from tests.checkpoint.sharded_files import craft_metadata, train_sharded

    location = os.path.join(train_sharded(str(tmp_path / "work")), "epoch_2")
    check_fits(Config.fromfile(MLP), location, "resume", strict=True)  # it fits
    other = Config.fromfile(MLP)
    other.merge_from_dict({"model.hidden_dims": [16]})
    with pytest.raises(CheckpointKeyMismatch, match=r"^resume: the weights in .*epoch_2 do not "
                                                    r"fit MLPClassifier: missing keys \[\], "
                                                    r"unexpected keys \['net.4.bias'"):
        check_fits(other, location, "resume", strict=True)
    marker = tmp_path / "payload-ran"
    craft_metadata(location, str(marker))
    check_fits(other, location, "resume", strict=True)  # refused: the workers fall back
    assert not marker.exists()
