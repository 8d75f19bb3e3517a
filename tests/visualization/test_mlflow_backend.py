"""MLflowVisBackend: a real training run logged to MLflow's local store, read back with
MLflow's own client."""
import contextlib
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest
from mlflow import MlflowClient

from raytrainer.config import Config
from raytrainer.runner import Runner
from raytrainer.visualization import MLflowVisBackend
from tests.runner.helpers import runner_kwargs


def _read_scalars(log_dir):
    with open(os.path.join(log_dir, "vis_data", "scalars.json")) as f:
        return [json.loads(line) for line in f]


def test_training_run_is_read_back_with_mlflows_client(tmp_path):
    backends = [dict(type="LocalVisBackend"),
                dict(type="MLflowVisBackend", exp_name="digits", run_name="mlp-a",
                     tags={"team": "vision"}, params={"note": "baseline"})]
    cfg = Config(runner_kwargs(tmp_path, epochs=2,
                               visualizer=dict(type="Visualizer", vis_backends=backends)))
    runner = Runner.from_cfg(cfg)
    runner.train()
    log_dir = str(runner.log_dir)

    client = MlflowClient("file://" + os.path.join(log_dir, "vis_data", "mlruns"))
    experiment = client.get_experiment_by_name("digits")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "mlp-a" and run.info.status == "FINISHED"
    assert run.data.tags["team"] == "vision"
    assert run.data.params["note"] == "baseline"
    assert run.data.params["optim_wrapper.optimizer.lr"] == "0.05"
    assert run.data.params["train_cfg.max_epochs"] == "2"

    records = _read_scalars(log_dir)
    train = [r for r in records if "loss" in r]
    val = [r for r in records if "accuracy/top1" in r]
    losses = client.get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in losses] == [(r["step"], r["loss"]) for r in train]
    accuracy = client.get_metric_history(run.info.run_id, "accuracy/top1")
    assert [(m.step, m.value) for m in accuracy] == \
        [(r["step"], r["accuracy/top1"]) for r in val]
    assert len(val) == 2 and val[-1]["accuracy/top1"] > 80

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.py", f"{runner.timestamp}.log", "vis_data"} <= artifacts
    vis_data = {a.path for a in client.list_artifacts(run.info.run_id, "vis_data")}
    assert "vis_data/scalars.json" in vis_data
    assert not [p for p in vis_data if "mlruns" in p]  # the store is not its own artifact


def test_unused_backend_creates_no_run(tmp_path):
    backend = MLflowVisBackend(str(tmp_path / "vis_data"))
    backend.close()
    assert not os.path.exists(tmp_path / "vis_data")


def test_remote_save_dir_without_tracking_uri_is_refused_by_name():
    with pytest.raises(ValueError, match=r"save_dir s3://bucket/run/vis_data is not a local "
                                         r"directory.*tracking_uri"):
        MLflowVisBackend("s3://bucket/run/vis_data")


def test_tracked_config_keys_limit_the_params(tmp_path):
    backend = MLflowVisBackend(str(tmp_path / "vis_data"), tracked_config_keys=["model"])
    backend.add_config(Config(dict(model=dict(type="MLP", depth=3), work_dir="/w")))
    backend.add_scalars({"loss": 0.5}, step=7)
    run = backend.experiment.get_run(backend.run_id)
    assert run.data.params == {"model.type": "MLP", "model.depth": "3"}
    assert run.data.metrics == {"loss": 0.5}
    with pytest.raises(KeyError, match=r"tracked_config_keys \['optim'\]"):
        MLflowVisBackend(str(tmp_path / "v2"), tracked_config_keys=["optim"]).add_config(
            Config(dict(model=1)))
    backend.close()


def _dead_tracking_config(tmp_path) -> str:
    """The digits config logging to an MLflow server (user:password in the URI) on a loopback
    port nobody listens on."""
    from tests.gloo_process import free_port

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    config = tmp_path / "mlflow_dead.py"
    config.write_text(
        f"_base_ = {os.path.join(root, 'configs', 'digits', 'mlp.py')!r}\n"
        "visualizer = dict(type='Visualizer', vis_backends=[dict(type='MLflowVisBackend', "
        f"tracking_uri='http://user:{SECRET}@127.0.0.1:{free_port()}')])\n"
        "train_cfg = dict(max_epochs=1)\n")
    return str(config)


SECRET = "pw-never-printed"
_DEAD_SERVER_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}


def _files_holding(directory, text: str) -> list[str]:
    found = []
    for folder, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(folder, name)
            with contextlib.suppress(OSError), open(path, "rb") as f:
                if text.encode() in f.read():
                    found.append(path)
    return found


@pytest.mark.slow
@pytest.mark.parametrize("debug", [[], ["--debug"]], ids=["plain", "debug"])
def test_a_tracking_uri_password_is_never_printed_in_process(tmp_path, debug):
    done = subprocess.run(
        [sys.executable, "-m", "raytrainer.cli", "train", _dead_tracking_config(tmp_path),
         "--launcher", "none", "--work-dir", str(tmp_path / "work_dir"), *debug],
        capture_output=True, text=True, timeout=300, env={**os.environ, **_DEAD_SERVER_ENV})
    assert done.returncode == 1, done.stderr
    assert "raytrainer train failed: MlflowException: API request to http://***@127.0.0.1:" \
        in done.stderr
    assert SECRET not in done.stdout + done.stderr
    assert _files_holding(tmp_path / "work_dir", SECRET) == []


@pytest.fixture
def ray_tmp():
    """A short folder for a private Ray instance's session (its socket paths must stay under
    the 107 characters of AF_UNIX)."""
    folder = tempfile.mkdtemp(prefix="rt-", dir="/tmp")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _own_ray_instance_env() -> dict:
    """This environment without ``RAY_ADDRESS`` (the session's test cluster sets it), so the
    run starts its own Ray instance and writes its logs under ``RAY_TMPDIR``."""
    return {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_GCS_SERVER_PORT")}


@pytest.mark.ray
def test_a_tracking_uri_password_reaches_neither_the_console_nor_rays_logs(tmp_path, ray_tmp):
    done = subprocess.run(
        [sys.executable, "-m", "raytrainer.cli", "train", _dead_tracking_config(tmp_path),
         "--num-workers", "1", "--work-dir", str(tmp_path / "work_dir")],
        capture_output=True, text=True, timeout=300,
        env={**_own_ray_instance_env(), **_DEAD_SERVER_ENV, "RAY_TMPDIR": str(ray_tmp)})
    assert done.returncode == 1, done.stderr
    assert "MlflowException: API request to http://***@127.0.0.1:" in done.stderr
    assert SECRET not in done.stdout + done.stderr
    # Ray wrote this run's worker logs here (the worker's error reaches them unless the
    # instance is stopped before they are flushed, so only their presence is certain)
    assert glob.glob(os.path.join(ray_tmp, "ray", "session_*", "logs", "worker-*.err"))
    assert _files_holding(ray_tmp, SECRET) == []
    assert _files_holding(tmp_path / "work_dir", SECRET) == []
