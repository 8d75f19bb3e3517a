"""``raytrainer k8s``: what it renders for a config and scale, and what it refuses."""
from __future__ import annotations

import contextlib
import io
import shlex

import pytest
import yaml

from raytrainer.cli import build_parser, main
from raytrainer.k8s.checks import check_manifest
from raytrainer.k8s.quantity import parse_quantity

from .conftest import ROOT

IMAGE = "registry.example.com/raytrainer:test"
WORK_DIR = "s3://bucket/runs/x"


def k8s(*args: str, monkeypatch) -> tuple[int, str, str]:
    """Run ``raytrainer k8s`` in-process from the repository root: (exit code, stdout, stderr)."""
    monkeypatch.chdir(ROOT)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["k8s", *args])
    return code, out.getvalue(), err.getvalue()


def render(*args: str, monkeypatch) -> dict:
    code, out, err = k8s(*args, "--image", IMAGE, "--work-dir", WORK_DIR,
                         monkeypatch=monkeypatch)
    assert code == 0, err
    return yaml.safe_load(out)


def _workers(doc: dict) -> list[dict]:
    return doc["spec"].get("rayClusterSpec", doc["spec"])["workerGroupSpecs"]


def _limits(group: dict) -> dict:
    return group["template"]["spec"]["containers"][0]["resources"]["limits"]


def test_gpu_job_has_a_gpu_pod_per_worker_and_an_entrypoint_the_cli_accepts(monkeypatch):
    doc = render("rayjob", "configs/digits/mlp.py", "--num-workers", "3", "--gpu",
                 "--cfg-options", "train_cfg.max_epochs=5", monkeypatch=monkeypatch)
    (group,) = _workers(doc)
    assert (group["replicas"], group["minReplicas"], group["maxReplicas"]) == (3, 3, 3)
    assert _limits(group) == {"cpu": "1", "memory": "4Gi", "nvidia.com/gpu": "1"}
    assert doc["metadata"]["name"] == "raytrainer-mlp"
    args = build_parser().parse_args(shlex.split(doc["spec"]["entrypoint"])[1:])
    assert (args.command, args.config, args.work_dir) == \
        ("train", "/home/ray/raytrainer/configs/digits/mlp.py", WORK_DIR)
    assert (args.num_workers, args.gpu, args.resume) == (3, True, "auto")
    assert args.cfg_options == {"train_cfg.max_epochs": 5}


def test_worker_pods_follow_the_configs_resources_and_placement(monkeypatch):
    doc = render("rayjob", "configs/digits/mlp.py", "--num-workers", "3",
                 "--memory-per-worker", "1Gi", "--cfg-options",
                 "ray.resources_per_worker.CPU=2", "ray.placement_strategy=STRICT_PACK",
                 monkeypatch=monkeypatch)
    (group,) = _workers(doc)
    assert group["replicas"] == 1  # STRICT_PACK: every worker on one node
    assert _limits(group) == {"cpu": "6", "memory": "3Gi"}
    assert check_manifest(doc, ROOT).resources_per_worker == {"CPU": 2}


def test_config_defaults_size_the_cluster_and_the_head_holds_no_workers(monkeypatch):
    doc = render("raycluster", "configs/digits/mlp.py", monkeypatch=monkeypatch)
    spec = doc["spec"]
    assert spec["headGroupSpec"]["rayStartParams"] == {"num-cpus": "0"}
    assert _workers(doc)[0]["replicas"] == 2  # configs/_base_/default_runtime.py: num_workers=2
    command = doc["metadata"]["annotations"]["raytrainer.io/entrypoint"]
    assert command.startswith("raytrainer train /home/ray/raytrainer/configs/digits/mlp.py ")


def test_irsa_replaces_the_secret_by_a_service_account(monkeypatch):
    doc = render("rayjob", "configs/digits/mlp.py", "--secret", "", "--service-account",
                 "raytrainer", monkeypatch=monkeypatch)
    cluster = doc["spec"]["rayClusterSpec"]
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        pod = group["template"]["spec"]
        assert pod["serviceAccountName"] == "raytrainer"
        assert "envFrom" not in pod["containers"][0]


def test_output_file_starts_with_the_command_that_renders_it(tmp_path, monkeypatch):
    target = tmp_path / "job.yaml"
    code, out, _ = k8s("rayjob", "configs/digits/mlp.py", "--image", IMAGE, "--work-dir",
                       WORK_DIR, "--num-workers", "2", "--name", "my-run", "-o", str(target),
                       monkeypatch=monkeypatch)
    assert code == 0 and out == ""
    first = target.read_text().splitlines()[0]
    assert first == (f"# Rendered by: raytrainer k8s rayjob configs/digits/mlp.py --image {IMAGE} "
                     f"--work-dir {WORK_DIR} --num-workers 2 --name my-run")


@pytest.mark.parametrize(("args", "message"), [
    (["/abs/mlp.py"], "CONFIG '/abs/mlp.py': expected a path relative to the repository root"),
    (["configs/digits/nope.py"], "does not exist in the image"),
    (["configs/digits/mlp.py", "--name", "Bad_Name"], "--name 'Bad_Name': expected at most 40"),
    (["configs/digits/mlp.py", "--cfg-options", "storage.s3.key=abc"], "puts a secret inline"),
    (["configs/digits/mlp.py", "--cfg-options", "ray.resources_per_worker.accel=1"],
     "ray.resources_per_worker: raytrainer k8s sizes pods for CPU, GPU and memory, not ['accel']"),
    (["configs/digits/mlp.py", "--cfg-options", "ray.num_wrkers=3"],
     "did you mean 'ray.num_workers'"),
    (["configs/digits/mlp.py", "--memory-per-worker=-4Gi"],
     "--memory-per-worker '-4Gi': expected a positive quantity such as 4Gi"),
    (["configs/digits/mlp.py", "--memory-per-worker", "0"],
     "--memory-per-worker '0': expected a positive quantity"),
    (["configs/digits/mlp.py", "--memory-per-worker", "4GB"],
     "--memory-per-worker '4GB' is not a Kubernetes quantity"),
    (["configs/digits/mlp.py", "--cfg-options", "ray.resources_per_worker.CPU=1000"],
     "a worker pod would need 1000 CPU (1 worker(s) of {'CPU': 1000.0}); nodes rarely have more "
     "than 192 CPU"),
    (["configs/digits/mlp.py", "--cfg-options", "ray.resources_per_worker.CPU=100",
      "ray.num_workers=2", "ray.placement_strategy=STRICT_PACK"],
     "a worker pod would need 200 CPU (2 worker(s)"),
])
def test_bad_input_fails_with_a_message_naming_it(monkeypatch, args, message):
    code, out, err = k8s("rayjob", *args, "--image", IMAGE, "--work-dir", WORK_DIR,
                         monkeypatch=monkeypatch)
    assert code == 1 and out == ""
    assert err.startswith("raytrainer k8s failed: ")
    assert message in err


@pytest.mark.parametrize(("args", "message"), [
    (["rayjob", "configs/digits/mlp.py", "--space", "configs/digits/lr_space.py"],
     "--space is a tunejob option"),
    (["tunejob", "configs/digits/mlp.py"], "tunejob: --space is required"),
    (["tunejob", "configs/digits/mlp.py", "--space", "configs/digits/lr_space.py",
      "--num-workers", "2"], "tunejob: use --workers-per-trial instead of --num-workers"),
])
def test_tune_options_belong_to_tunejob(monkeypatch, args, message):
    code, out, err = k8s(*args, "--image", IMAGE, "--work-dir", WORK_DIR, monkeypatch=monkeypatch)
    assert code == 1 and out == ""
    assert message in err


@pytest.mark.parametrize("image", ["", "not an image", "Registry/UPPER:tag", "repo/x:",
                                   "http://registry/x"])
def test_an_image_that_is_not_an_image_reference_is_refused(monkeypatch, image):
    code, out, err = k8s("rayjob", "configs/digits/mlp.py", "--image", image, "--work-dir",
                         WORK_DIR, monkeypatch=monkeypatch)
    assert code == 1 and out == ""
    assert err.splitlines()[0] == (
        f"raytrainer k8s failed: ValueError: --image {image!r} is not an image reference: "
        "expected [REGISTRY/]REPOSITORY[:TAG][@DIGEST] in lowercase, e.g. "
        "registry.example.com/raytrainer:0.1.0-cpu")


def test_tunejob_max_concurrent_0_is_refused(monkeypatch):
    code, out, err = k8s("tunejob", "configs/digits/mlp.py", "--space",
                         "configs/digits/lr_space.py", "--max-concurrent", "0", "--image", IMAGE,
                         "--work-dir", WORK_DIR, monkeypatch=monkeypatch)
    assert code == 1 and out == ""
    assert "--max-concurrent 0: expected a positive integer" in err


@pytest.mark.parametrize(("lines", "named"), [
    ("storage = dict(s3=dict(key='AKIAEXAMPLE', secret='wJalrEXAMPLE'))",
     "storage.s3.key: a storage credential; storage.s3.secret: a storage credential"),
    ("storage = dict(token='ghp_example')", "storage.token: a storage credential"),
    ("visualizer = dict(type='Visualizer', vis_backends=[dict(type='MLflowVisBackend', "
     "tracking_uri='http://user:pw@mlflow:5000')])",
     "visualizer.vis_backends[0].tracking_uri: credentials in a URL"),
])
@pytest.mark.parametrize("kind", ["rayjob", "tunejob"])
def test_a_config_holding_credentials_is_refused(tmp_path, monkeypatch, lines, named, kind):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "creds.py").write_text(
        f"_base_ = {str(ROOT / 'configs' / 'digits' / 'mlp.py')!r}\n{lines}\n")
    space = tmp_path / "configs" / "space.py"
    space.write_text((ROOT / "configs" / "digits" / "lr_space.py").read_text())
    tune = ["--space", "configs/space.py"] if kind == "tunejob" else []
    monkeypatch.chdir(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["k8s", kind, "configs/creds.py", *tune, "--image", IMAGE, "--work-dir",
                     WORK_DIR])
    assert code == 1 and out.getvalue() == ""
    message = err.getvalue()
    assert "the config holds credentials, which would ship in the image" in message
    assert named in message
    assert "AKIAEXAMPLE" not in message and "wJalr" not in message and ":pw@" not in message


def test_the_checks_refuse_a_container_image_that_is_not_a_reference(cpu_job):
    cpu_job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"][
        "containers"][0]["image"] = "not an image"
    with pytest.raises(ValueError, match=r"workerGroupSpecs\[0\]\.template\.spec\.containers"
                                         r"\[0\]\.image: 'not an image' is not an image "
                                         "reference"):
        check_manifest(cpu_job, ROOT)


def test_tunejob_gpu_sizes_gpu_pods_for_every_concurrent_trial(monkeypatch):
    code, out, err = k8s("tunejob", "configs/digits/mlp.py", "--space",
                         "configs/digits/lr_space.py", "--gpu", "--workers-per-trial", "2",
                         "--max-concurrent", "3", "--metric", "val/accuracy/top1", "--image",
                         IMAGE, "--work-dir", WORK_DIR, monkeypatch=monkeypatch)
    assert code == 0, err
    doc = yaml.safe_load(out)
    assert doc["spec"]["entrypoint"].endswith(
        "--resume auto --cfg-options ray.use_gpu=True")  # raytrainer tune has no --gpu
    (group,) = doc["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert group["replicas"] == 6
    assert group["template"]["spec"]["containers"][0]["resources"]["limits"][
        "nvidia.com/gpu"] == "1"


def test_local_work_dir_is_refused(monkeypatch):
    code, _, err = k8s("rayjob", "configs/digits/mlp.py", "--image", IMAGE, "--work-dir",
                       "work_dirs/x", monkeypatch=monkeypatch)
    assert code == 1
    assert "--work-dir must be storage every pod reaches" in err


@pytest.mark.parametrize(("text", "value"), [("500m", 0.5), ("4Gi", 4 * 2**30), (2, 2),
                                             ("1.5", 1.5), ("1e3", 1000), ("2k", 2000)])
def test_quantities(text, value):
    assert parse_quantity(text) == value


def test_bad_quantity_names_the_expected_form():
    with pytest.raises(ValueError, match="'4GB' is not a Kubernetes quantity"):
        parse_quantity("4GB")
