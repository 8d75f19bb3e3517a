"""``raytrainer plot``: panels from scalars.json (local, S3, sweeps) and the PNG the CLI writes."""
import json
import os
import subprocess
import sys

import matplotlib.image
import pytest

from raytrainer import storage
from raytrainer.visualization.plot import describe, draw, find_runs, panels

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _records(scale=1.0):
    """Two epochs of 10 iterations: train lines every 5 iterations, validation per epoch."""
    lines = []
    for epoch in (1, 2):
        for inner in (5, 10):
            step = (epoch - 1) * 10 + inner
            lines.append({"lr": 0.1 / step, "loss": scale / step, "loss_cls": scale / step / 2,
                          "time": 0.01, "data_time": 0.001, "epoch": epoch, "iter": step,
                          "step": step})
        lines.append({"accuracy/top1": 80.0 + epoch * scale, "time": 0.01, "step": epoch})
    return "".join(json.dumps(line) + "\n" for line in lines)


def _write_run(work_dir, timestamp="20260101_000000", scale=1.0):
    storage.write_text(storage.join(work_dir, timestamp, "vis_data", "scalars.json"),
                       _records(scale))


def test_a_work_dir_gives_loss_lr_and_metric_panels_over_iterations(tmp_path):
    _write_run(str(tmp_path), "20260101_000000", scale=5.0)
    _write_run(str(tmp_path), "20260102_000000", scale=1.0)  # the newest run is drawn
    (run,) = find_runs(str(tmp_path))
    content = panels([run])
    assert list(content) == ["loss", "lr", "accuracy/top1"]
    assert [label for label, _, _ in content["loss"]] == ["loss", "loss_cls"]
    label, xs, ys = content["loss"][0]
    assert xs == [5, 10, 15, 20] and ys == [1 / 5, 1 / 10, 1 / 15, 1 / 20]
    # validation after epoch e is drawn at the last logged iteration of that epoch
    assert content["accuracy/top1"] == [("accuracy/top1", [10, 20], [81.0, 82.0])]
    assert list(panels([run], keys=["lr"])) == ["lr"]
    with pytest.raises(KeyError, match=r"\['acc'\] were not logged.*'accuracy/top1'"):
        panels([run], keys=["acc"])
    assert describe([run]) == (f"run 20260102_000000 of {tmp_path.name} (the newest; its "
                               "work_dir also holds 20260101_000000: --run picks one)")


def test_run_picks_an_older_run_of_the_work_dir(tmp_path):
    _write_run(str(tmp_path), "20260101_000000", scale=5.0)
    _write_run(str(tmp_path), "20260102_000000", scale=1.0)
    (run,) = find_runs(str(tmp_path), run="20260101_000000")
    assert panels([run])["loss"][0][2][0] == 5.0 / 5
    assert describe([run]) == (f"run 20260101_000000 of {tmp_path.name} (its work_dir also "
                               "holds 20260102_000000: --run picks one)")
    with pytest.raises(FileNotFoundError, match="--run 2025: .* has no run 2025; its runs are "
                                                "20260101_000000, 20260102_000000"):
        find_runs(str(tmp_path), run="2025")


def test_a_sweep_directory_gives_one_line_per_run(s3_bucket):
    sweep = f"{s3_bucket}/sweep"
    _write_run(f"{sweep}/trial_a", scale=1.0)
    _write_run(f"{sweep}/trial_b", scale=2.0)
    runs = find_runs(sweep)
    assert [run.name for run in runs] == ["trial_a", "trial_b"]
    content = panels(runs, keys=["loss", "accuracy/top1"])
    assert [label for label, _, _ in content["loss"]] == ["trial_a", "trial_b"]
    assert describe(runs) == "2 run(s): trial_a (20260101_000000), trial_b (20260101_000000)"
    assert [ys[-1] for _, _, ys in content["accuracy/top1"]] == [82.0, 84.0]
    assert [label for label, _, _ in panels(runs)["loss"]] == \
        ["trial_a: loss", "trial_a: loss_cls", "trial_b: loss", "trial_b: loss_cls"]
    assert draw(runs).startswith(b"\x89PNG")


def test_a_directory_without_scalars_names_what_was_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="no <timestamp>/vis_data/scalars.json under"):
        find_runs(str(tmp_path))


@pytest.mark.slow
def test_cli_writes_a_png_with_one_panel_per_kind(tmp_path):
    _write_run(str(tmp_path / "run"))
    output = tmp_path / "curves.png"
    result = subprocess.run([sys.executable, "-m", "raytrainer.cli", "plot", str(tmp_path / "run"),
                             "-o", str(output)], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"wrote {output}: run 20260101_000000 of run\n" == result.stdout
    image = matplotlib.image.imread(str(output))
    assert image.shape[:2] == (360, 1500)  # three panels side by side at 100 dpi
    (tmp_path / "empty").mkdir()
    missing = subprocess.run([sys.executable, "-m", "raytrainer.cli", "plot",
                              str(tmp_path / "empty"), "-o", str(tmp_path / "none.png")],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert missing.returncode == 1
    assert "no <timestamp>/vis_data/scalars.json under" in missing.stderr
    assert not (tmp_path / "none.png").exists()


def test_iteration_based_validation_is_drawn_at_its_own_step(tmp_path):
    lines = [{"lr": 0.1, "loss": 1.0, "iter": 50, "step": 50},
             {"lr": 0.1, "loss": 0.5, "iter": 100, "step": 100},
             {"accuracy/top1": 90.0, "step": 100}]
    storage.write_text(str(tmp_path / "t" / "vis_data" / "scalars.json"),
                       "".join(json.dumps(line) + "\n" for line in lines))
    (run,) = find_runs(str(tmp_path))
    assert panels([run])["accuracy/top1"] == [("accuracy/top1", [100], [90.0])]
