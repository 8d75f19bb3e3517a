"""Ray Tune sweeps on the 2-CPU test cluster: ASHA, resuming a killed sweep, PBT, resources."""
from __future__ import annotations

import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from ray import tune

from raytrainer import checkpoint as ckpt
from raytrainer import cli, launch
from raytrainer.config import Config
from raytrainer.launch.driver.cluster import InfeasibleResourcesError
from raytrainer.tune import sweep as sweep_module
from raytrainer.tune import tune as run_sweep

from ..conftest import ROOT, stop_process_tree

MLP = os.path.join(ROOT, "configs", "digits", "mlp.py")
METRIC = "val/accuracy/top1"
GOOD_LR = 0.1
RESUME_EPOCHS = 3
ASHA_EPOCHS = 20  # epochs take a fraction of a second: long enough for ASHA to stop trials


def _digits(work_dir, epochs: int = 3) -> Config:
    cfg = Config.fromfile(MLP)
    cfg.merge_from_dict({"train_cfg.max_epochs": epochs, "train_cfg.val_interval": 1,
                         "default_hooks.logger.interval": 50, "ray.report_interval_s": 60,
                         "randomness.seed": 0, "work_dir": str(work_dir)})
    return cfg


def _placement_groups_left(address: str) -> list[dict]:
    import ray

    return [group for group in ray.util.placement_group_table().values()
            if group["state"] != "REMOVED"]


@pytest.fixture(scope="module")
def asha_sweep(ray_cluster, tmp_path_factory):
    sweep_dir = tmp_path_factory.mktemp("asha") / "sweep"
    cfg = _digits(sweep_dir, epochs=ASHA_EPOCHS)
    # Saved in the background (a checkpoint may commit after the next epoch's validation),
    # every one kept: Ray's record of a trial's run lists each checkpoint it registered.
    cfg.merge_from_dict({"default_hooks.checkpoint.async_save": True,
                         "default_hooks.checkpoint.max_keep_ckpts": -1})
    started = time.monotonic()
    result = run_sweep(
        cfg,
        {"optim_wrapper.optimizer.lr": tune.grid_search([1e-5, GOOD_LR, 3e-5, 1e-4])},
        scheduler="asha", metric=METRIC, mode="max", workers_per_trial=1, max_concurrent=2,
        scheduler_options=dict(grace_period=1, reduction_factor=2))
    return result, time.monotonic() - started


def test_asha_sweep_finds_the_good_lr_and_writes_its_results(asha_sweep):
    result, _ = asha_sweep
    assert len(result.rows) == 4
    assert result.best["optim_wrapper.optimizer.lr"] == GOOD_LR
    assert result.best[METRIC] > 80
    assert {row["status"] for row in result.rows} <= {"DONE", "STOPPED"}
    assert sum(row["status"] == "STOPPED" for row in result.rows) >= 1  # ASHA stopped some
    rows = json.loads(open(os.path.join(result.sweep_dir, "results.json")).read())
    assert [row["trial_id"] for row in rows] == [row["trial_id"] for row in result.rows]
    csv_lines = open(os.path.join(result.sweep_dir, "results.csv")).read().splitlines()
    assert csv_lines[0].startswith("trial_id,work_dir,optim_wrapper.optimizer.lr,")
    assert len(csv_lines) == 5
    for row in result.rows:  # each trial is a raytrainer run in its own work_dir
        assert os.path.basename(row["work_dir"]).startswith(row["trial_id"] + "_lr=")
        assert row["checkpoint"] and ckpt.is_committed(row["checkpoint"])
    assert result.best["status"] == "DONE"
    assert result.best["checkpoint"].endswith(f"/epoch_{ASHA_EPOCHS}")
    assert result.best_checkpoint.startswith(result.best["work_dir"])


def _validations(log: str) -> dict[int, float]:
    """Epoch -> the accuracy its validation logged."""
    return {int(epoch): float(value) for epoch, value in
            re.findall(r"Epoch\(val\) \[(\d+)\]\[\d+/\d+\]\s+accuracy/top1: (\S+)", log)}


def test_each_checkpoint_carries_the_validation_of_its_own_epoch(asha_sweep):
    """What a trial's run registered each checkpoint with (Ray Train's record, what a
    scheduler or a best-checkpoint choice would see): its own epoch and that epoch's
    validation, also when the background save committed after the next validation."""
    result, _ = asha_sweep
    paired = 0
    for row in result.rows:
        snapshot = os.path.join(row["work_dir"], "checkpoint_manager_snapshot.json")
        if not os.path.exists(snapshot):
            continue  # stopped at its first report, before Ray registered a checkpoint
        record = json.loads(open(snapshot).read())
        (log,) = glob.glob(os.path.join(row["work_dir"], "*", "*.log"))
        logged = _validations(open(log).read())
        for registered in record["checkpoint_results"]:
            location = os.path.join(row["work_dir"], registered["checkpoint_dir_name"])
            epoch, metrics = ckpt.read_meta(location)["epoch"], registered["metrics"]
            assert metrics["epoch"] == epoch, (location, metrics)
            assert metrics[METRIC] == pytest.approx(logged[epoch], abs=1e-4), (location, metrics)
            paired += 1
    assert paired >= ASHA_EPOCHS // 2


def test_early_stopped_trials_free_their_resources(asha_sweep, ray_cluster):
    result, wall_s = asha_sweep
    # Four 1-worker trials, two at a time, on 2 CPUs: a trial left holding its placement
    # group would make the next wait for Ray Train's cleaner (minutes) or forever.
    assert wall_s < 150
    assert _placement_groups_left(ray_cluster.address) == []


def test_best_config_reproduces_the_best_trial(asha_sweep, ray_cluster, tmp_path):
    result, _ = asha_sweep
    best = os.path.join(result.sweep_dir, "best_config.py")
    dumped = Config.fromfile(best)
    assert dumped.optim_wrapper.optimizer.lr == GOOD_LR
    assert "tune" not in dumped
    # what the trial ran with: --workers-per-trial 1 (the config says 2) and its seed
    assert dumped.ray.num_workers == 1 and dumped.randomness.seed == 0
    assert result.best_config.ray.num_workers == 1
    dumped.work_dir = str(tmp_path / "best")
    again = launch.train(dumped)
    assert again.metrics["accuracy/top1"] == result.best[METRIC]  # the same run, again
    assert glob.glob(str(tmp_path / "best" / "checkpoints" / f"epoch_{ASHA_EPOCHS}"))


def test_infeasible_trials_fail_fast_saying_what_fits(ray_cluster, tmp_path):
    started = time.monotonic()
    with pytest.raises(InfeasibleResourcesError, match=r"2 concurrent trial\(s\) x .* room for "
                       r"1 trial\(s\) at once; lower --workers-per-trial or --max-concurrent"):
        run_sweep(_digits(tmp_path / "sweep"), {"optim_wrapper.optimizer.lr": 0.1},
                  metric=METRIC, workers_per_trial=2, max_concurrent=2)
    assert time.monotonic() - started < 30
    assert not (tmp_path / "sweep" / "tune").exists()


def _wait_for(condition, timeout: float, what: str, process=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the sweep exited ({process.returncode}) before {what}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _results(work_dir) -> list[dict]:
    return [json.loads(open(path).read()) for path in
            sorted(glob.glob(os.path.join(work_dir, "*", "result.json")))]


def test_resume_after_the_sweep_driver_was_killed(ray_cluster, tmp_path, capsys):
    """The driver dies while the second trial is at its last validation: its final checkpoint
    is committed, Tune never got that validation. The resumed trial has nothing left to train;
    it validates its last checkpoint again and reports that, as the finished run would have."""
    sweep_dir, marker = tmp_path / "sweep", tmp_path / "paused.json"
    config = tmp_path / "digits.py"
    cfg = _digits(sweep_dir, epochs=RESUME_EPOCHS)
    cfg["custom_hooks"] = [dict(type="tests.tune.tune_hooks.PauseAtLastValidation",
                                marker=str(marker),
                                finished=str(sweep_dir / "*_lr=*" / "*" / "result.json"))]
    cfg.dump(str(config))
    space = tmp_path / "space.py"
    space.write_text("from ray import tune\nspace = {'optim_wrapper.optimizer.lr': "
                     "tune.grid_search([0.1, 0.05])}\n")
    command = [sys.executable, "-m", "raytrainer.cli", "tune", str(config), "--space",
               str(space), "--metric", METRIC, "--workers-per-trial", "1",
               "--max-concurrent", "1", "--work-dir", str(sweep_dir), "--resume", "auto"]
    # The sweep driver joins the test cluster (as under `ray job submit`); when it dies, Ray
    # ends its job: the trial actors, their Ray Train controllers and workers.
    env = dict(ray_cluster.env, RAY_ADDRESS=ray_cluster.address)
    driver = subprocess.Popen(command, env=env, cwd=str(tmp_path), start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(marker.exists, 240, "the second trial reached its last validation", driver)
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        stop_process_tree(driver.pid, timeout=5)
    paused = json.loads(marker.read_text())
    trial_dirs = sorted(glob.glob(str(sweep_dir / "*_lr=*")))
    finished = [d for d in trial_dirs if _results(d)]
    interrupted = [d for d in trial_dirs if not _results(d)]
    assert len(finished) == 1 and interrupted == [paused["work_dir"]]
    runs_before = {d: sorted(os.listdir(d)) for d in trial_dirs}

    # `--resume auto` started the sweep above (there was none) and now continues it
    code = cli.main([*command[3:], "--address", ray_cluster.address])
    assert code == 0
    printed = capsys.readouterr().out
    assert "trial_id" in printed  # the sweep's table; Tune's own box and hints stay quiet
    for noise in ("Configuration for experiment", "View detailed results", "tensorboard"):
        assert noise not in printed, printed
    assert sorted(os.listdir(finished[0])) == runs_before[finished[0]]  # not run again
    (resumed,) = _results(interrupted[0])
    assert resumed["resumed_from"].endswith(f"/checkpoints/epoch_{RESUME_EPOCHS}")
    assert resumed["epoch"] == RESUME_EPOCHS
    # the final checkpoint's own validation, not {} nor the one before it (in its message hub)
    assert resumed["metrics"] == paused["metrics"]
    rows = json.loads(open(sweep_dir / "results.json").read())
    assert sorted(row["status"] for row in rows) == ["DONE", "DONE"]
    for row in rows:  # each trial's last validation, also for the resumed one
        last_run = _results(row["work_dir"])[-1]
        assert last_run["metrics"], last_run
        assert row[METRIC] == pytest.approx(last_run["metrics"]["accuracy/top1"])
        assert row["last_epoch"] == RESUME_EPOCHS


def test_pbt_exploit_loads_the_other_trials_checkpoint_and_sets_the_live_lr(ray_cluster,
                                                                           tmp_path,
                                                                           monkeypatch):
    # Tune keeps PBT_KEEP checkpoints per trial; a trial restarted by several exploits reports
    # more than that, and the copy an early exploit loaded was gone when the test compared it
    monkeypatch.setattr(sweep_module, "PBT_KEEP", 100)
    cfg = _digits(tmp_path / "sweep", epochs=3)
    cfg["custom_hooks"] = [dict(type="tests.tune.tune_hooks.Lockstep",
                                folder=str(tmp_path / "started"), count=2)]
    result = run_sweep(
        cfg,
        {"optim_wrapper.optimizer.lr": tune.grid_search([1e-5, GOOD_LR])},
        scheduler="pbt", metric=METRIC, mode="max", workers_per_trial=1, max_concurrent=2,
        scheduler_options=dict(perturbation_interval=1, quantile_fraction=0.5,
                               resample_probability=0.0, seed=0,
                               # never the donor's 0.1: every explore changes the live rate
                               hyperparam_mutations={"optim_wrapper.optimizer.lr":
                                                     [0.02, 0.05]}))
    exploited = []
    for row in result.rows:
        for run in _results(row["work_dir"]):
            source = run.get("resumed_from") or ""
            if "/tune/" in source:
                exploited.append((row, run, source))
    assert exploited, "PBT never exploited a checkpoint"
    row, run, source = exploited[0]
    donor_dir = os.path.basename(os.path.dirname(source))
    assert not os.path.basename(row["work_dir"]) == donor_dir  # another trial's checkpoint
    donor = os.path.join(result.sweep_dir, donor_dir)
    weights = [ckpt.load_checkpoint(path, weights_only=True)["state_dict"] for path in
               ckpt.list_checkpoints(os.path.join(donor, "checkpoints"), warn=False)]
    copied = ckpt.load_checkpoint(source, weights_only=True)["state_dict"]
    assert any(all(torch.equal(copied[k], state[k]) for k in copied) for state in weights)
    rescaled = []
    for row, run, _ in exploited:
        log = open(glob.glob(os.path.join(row["work_dir"], run["timestamp"], "*.log"))[0]).read()
        found = re.search(r"learning rate set to base (\S+) \(x(\S+) of", log)
        assert found, "an exploit continued without setting the live learning rate"
        live, factor = float(found.group(1)), float(found.group(2))
        assert live in (0.02, 0.05)
        after = re.search(r"Epoch\(train\).*?lr: (\S+)", log[found.end():])
        if after:  # the schedule continues from the new base rate
            assert float(after.group(1)) <= live * 1.0001
        rescaled.append(factor)
    assert any(factor != 1 for factor in rescaled)  # the exploit + explore changed the rate


def test_a_metric_no_trial_reports_fails_the_sweep_naming_the_reported_ones(ray_cluster,
                                                                            tmp_path, capsys):
    config, space = tmp_path / "digits.py", tmp_path / "space.py"
    _digits(tmp_path / "sweep", epochs=2).dump(str(config))
    space.write_text("space = {'optim_wrapper.optimizer.lr': 0.1}\n")
    # a train/ scalar may exist (the sweep cannot know the model's loss terms in advance):
    # the trials find at their first validation that it never comes
    code = cli.main(["tune", str(config), "--space", str(space), "--metric", "train/acc",
                     "--workers-per-trial", "1", "--work-dir", str(tmp_path / "sweep"),
                     "--address", ray_cluster.address])
    assert code == 1
    message = capsys.readouterr().err
    assert "tune.metric 'train/acc'" in message
    assert "val/accuracy/top1" in message  # the metric the trial does report
