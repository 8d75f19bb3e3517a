"""The search space and the sweep's checks that need no Ray: keys, options, the table."""
from __future__ import annotations

import json
import os

import pytest
from ray import tune

from raytrainer import cli
from raytrainer.config import Config, ConfigError
from raytrainer.tune.metric_check import check_metric, validation_metrics
from raytrainer.tune.space import check_space, load_space, trial_dirname
from raytrainer.tune.sweep import SweepOptions, format_table, restores

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MLP = os.path.join(ROOT, "configs", "digits", "mlp.py")


def test_shipped_space_file_loads_and_matches_the_digits_config():
    space = load_space(os.path.join(ROOT, "configs", "digits", "lr_space.py"))
    assert set(space) == {"optim_wrapper.optimizer.lr", "train_dataloader.batch_size"}
    check_space(Config.fromfile(MLP), space)


def test_a_misspelt_space_key_gets_the_did_you_mean_message():
    with pytest.raises(ConfigError, match=r"search space key 'optim_wrapper.optimzer.lr'.*"
                       r"did you mean 'optim_wrapper.optimizer'"):
        check_space(Config.fromfile(MLP), {"optim_wrapper.optimzer.lr": tune.uniform(0, 1)})


def test_a_space_key_the_config_lacks_is_rejected():
    with pytest.raises(ConfigError, match=r"'model.depth' is not a key of the config"):
        check_space(Config.fromfile(MLP), {"model.depth": tune.choice([1, 2])})


def test_a_space_file_without_space_names_what_it_expected(tmp_path):
    path = tmp_path / "space.py"
    path.write_text("lr = 0.1\n")
    with pytest.raises(ConfigError, match=r"defines no 'space'"):
        load_space(str(path))


def test_cli_rejects_a_bad_space_key_before_starting_anything(tmp_path, capsys):
    space = tmp_path / "space.py"
    space.write_text("from ray import tune\nspace = {'optim_wrapper.optimizer.lrr': "
                     "tune.choice([0.1])}\n")
    code = cli.main(["tune", MLP, "--space", str(space), "--metric", "val/accuracy/top1",
                     "--work-dir", str(tmp_path / "sweep")])
    assert code == 1
    err = capsys.readouterr().err
    assert "search space key 'optim_wrapper.optimizer.lrr'" in err
    assert "did you mean 'optim_wrapper.optimizer.lr'" in err
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("domain, value", [
    (tune.choice([32, 0, -3]), "0"), (tune.grid_search([16, -3]), "-3"),
    (tune.randint(0, 64), "0"), (tune.choice(["32"]), "'32'")])
def test_every_value_a_space_can_take_is_validated_like_the_config(domain, value):
    with pytest.raises(ConfigError) as caught:
        check_space(Config.fromfile(MLP), {"train_dataloader.batch_size": domain})
    assert str(caught.value) == (
        f"search space key 'train_dataloader.batch_size' can take {value}, which the config "
        f"refuses: train_dataloader.batch_size must be a positive integer, got {value}")


def test_cli_rejects_a_space_value_in_one_line_before_ray_starts(tmp_path, capsys):
    space = tmp_path / "space.py"
    space.write_text("from ray import tune\nspace = {'train_dataloader.batch_size': "
                     "tune.choice([0, -3])}\n")
    code = cli.main(["tune", MLP, "--space", str(space), "--metric", "val/accuracy/top1",
                     "--work-dir", str(tmp_path / "sweep")])
    assert code == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines()[0] == (
        "raytrainer tune failed: ConfigError: search space key 'train_dataloader.batch_size' "
        "can take 0, which the config refuses: train_dataloader.batch_size must be a positive "
        "integer, got 0")
    assert "Traceback" not in captured.out + captured.err
    assert "Ray instance" not in captured.out + captured.err
    assert not (tmp_path / "sweep").exists()


@pytest.mark.parametrize("section, message", [
    (dict(space={"a": 1}, scheduler="hyperband", metric="m"), "tune.scheduler must be one of"),
    (dict(space={"a": 1}, metric="m", mode="up"), "tune.mode must be 'max' or 'min'"),
    (dict(space={"a": 1}), "tune.metric is not set"),
    (dict(space={"a": 1}, metric="m", samples=3), r"tune: unknown key\(s\) \['samples'\]"),
    (dict(metric="m"), "the sweep has no search space"),
    (dict(space={"a": 1}, metric="m", resume="yes"), "tune.resume must be True, False or 'auto'"),
])
def test_sweep_options_name_the_bad_key(section, message):
    with pytest.raises(ConfigError, match=message):
        SweepOptions.from_config(section)


def test_trial_dirname_is_readable_and_path_safe():
    name = trial_dirname("ab12_00001", {"optim_wrapper.optimizer.lr": 0.012345,
                                        "model.hidden_dims": [64, 32]})
    assert name == "ab12_00001_lr=0.01235_hidden_dims=-64--32-"


def test_table_marks_the_best_trial():
    rows = [{"trial_id": "a", "lr": 0.1, "acc": 90.0}, {"trial_id": "b", "lr": 1e-4, "acc": 9.5}]
    lines = format_table(rows, rows[0]).splitlines()
    assert lines[0].split() == ["trial_id", "lr", "acc"]
    assert lines[1].startswith("*a") and lines[2].startswith(" b")


def test_the_configs_tune_section_is_checked_like_a_space_file(tmp_path, capsys):
    config = tmp_path / "sweep.py"
    config.write_text(f"_base_ = [{MLP!r}]\nfrom ray import tune as _tune\n"
                      "tune = dict(space={'train_dataloader.batchsize': _tune.choice([16])}, "
                      "metric='val/accuracy/top1')\n")
    code = cli.main(["tune", str(config), "--work-dir", str(tmp_path / "sweep")])
    assert code == 1
    err = capsys.readouterr().err
    assert "search space key 'train_dataloader.batchsize'" in err
    assert "did you mean 'train_dataloader.batch_size'" in err


def test_resume_auto_continues_a_sweep_if_there_is_one_else_starts_it(capsys):
    assert restores("auto", True, "s3://b/sweep") is True
    assert restores("auto", False, "s3://b/sweep") is False
    assert restores(True, True, "s3://b/sweep") is True
    assert restores(False, True, "s3://b/sweep") is False
    with pytest.raises(ConfigError, match=r"--resume: s3://b/sweep holds no sweep to resume"):
        restores(True, False, "s3://b/sweep")


@pytest.mark.parametrize("flags, resume", [([], False), (["--resume"], True),
                                           (["--resume", "auto"], "auto")])
def test_tune_cli_resume_flag(flags, resume):
    args = cli.build_parser().parse_args(["tune", "c.py", *flags, "--work-dir", "w"])
    assert args.resume == resume


def test_tune_cli_rejects_another_resume_value(capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["tune", "c.py", "--resume", "always"])
    assert "expected 'auto' or nothing, got 'always'" in capsys.readouterr().err


@pytest.mark.parametrize("metric, expected", [
    ("accuracy/top1", "tune.metric 'accuracy/top1' is never reported: the trials report "
                      "train/<scalar>, val/<metric> and test/<metric> (validation: "
                      "val/accuracy/top1); did you mean 'val/accuracy/top1'?"),
    ("val/accuracy/top2", "tune.metric 'val/accuracy/top2' is not a metric the config's "
                          "val_evaluator produces; it produces val/accuracy/top1; did you mean "
                          "'val/accuracy/top1'?"),
])
def test_a_metric_no_trial_can_report_fails_before_ray_starts(tmp_path, capsys, metric,
                                                               expected):
    space = tmp_path / "space.py"
    space.write_text("space = {'optim_wrapper.optimizer.lr': 0.1}\n")
    code = cli.main(["tune", MLP, "--space", str(space), "--metric", metric,
                     "--work-dir", str(tmp_path / "sweep"), "--address", "127.0.0.1:1"])
    assert code == 1  # the dead --address shows that nothing tried to reach Ray
    assert capsys.readouterr().err.splitlines()[0] == f"raytrainer tune failed: ConfigError: " \
        f"{expected}"
    assert not (tmp_path / "sweep").exists()


def test_metrics_a_sweep_cannot_judge_in_advance_are_left_to_the_trials():
    cfg = Config.fromfile(MLP)
    for metric in ("val/accuracy/top1", "train/loss", "epoch", "test/accuracy/top1"):
        check_metric(cfg, metric)
    cfg["val_evaluator"] = [dict(type="Accuracy", topk=(1, 5)), dict(type="Perplexity")]
    assert validation_metrics(cfg) == ["val/accuracy/top1", "val/accuracy/top5",
                                       "val/perplexity", "val/nll"]
    cfg["val_evaluator"] = dict(type="DumpResults", out_file_path="x.pt")  # names unknown
    assert validation_metrics(cfg) is None
    check_metric(cfg, "val/anything")


def _tune_result(path: str, epochs: list[int], accuracies: list[float]):
    import pandas
    from ray.tune import Result

    history = pandas.DataFrame({"epoch": epochs, METRIC: accuracies})
    return Result(metrics={"epoch": epochs[-1], METRIC: accuracies[-1], "trial_id": "t1",
                           "config": {"optim_wrapper.optimizer.lr": 0.1}},
                  checkpoint=None, error=None, path=path, metrics_dataframe=history)


METRIC = "val/accuracy/top1"


def test_a_trial_that_finished_while_tune_stopped_it_is_listed_as_it_ended(tmp_path):
    from raytrainer.tune.sweep import SweepOptions, _row

    cfg = Config.fromfile(MLP)
    cfg.merge_from_dict({"train_cfg.max_epochs": 4})
    opts = SweepOptions(space={"optim_wrapper.optimizer.lr": 0.1}, metric=METRIC, mode="max")
    sweep_dir = str(tmp_path)
    trial = tmp_path / "trial_a"
    # Tune took the epoch-1 report, then its stop arrived: the run had finished meanwhile
    result = _tune_result(str(tmp_path / "tune" / "trial_a"), [1], [32.6])
    assert _row(cfg, opts, sweep_dir, result)[METRIC] == 32.6  # nothing on disk yet
    (trial / "20261208_000000").mkdir(parents=True)
    (trial / "20261208_000000" / "result.json").write_text(json.dumps(
        {"mode": "train", "metrics": {"accuracy/top1": 70.5}, "epoch": 4, "iter": 180,
         "seed": 7}))
    row = _row(cfg, opts, sweep_dir, result)
    assert (row[METRIC], row["last_epoch"], row["status"]) == (70.5, 4, "DONE")
    # an older run's record never overrides what Tune saw of a newer, further one
    later = _tune_result(str(tmp_path / "tune" / "trial_a"), [1, 2, 3, 4, 5], [1, 2, 3, 4, 80.0])
    cfg.merge_from_dict({"train_cfg.max_epochs": 6})
    row = _row(cfg, opts, sweep_dir, later)
    assert (row[METRIC], row["last_epoch"], row["status"]) == (80.0, 5, "STOPPED")
