"""The checked-in manifests under k8s/: valid, runnable as written, and what their commands
render; and what the checks reject."""
from __future__ import annotations

import copy
import importlib.util

import pytest
import yaml

from raytrainer.k8s.checks import ENTRYPOINT_ANNOTATION, ManifestError, check_manifest
from raytrainer.k8s.image import RAY_VERSION

from .conftest import MANIFESTS, ROOT, ray_documents


def _regenerate():
    spec = importlib.util.spec_from_file_location("regenerate", ROOT / "k8s" / "regenerate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_k8s_holds_cpu_and_gpu_jobs_and_a_cluster():
    kinds = sorted((doc["kind"], bool(doc["spec"].get("entrypoint", "").count("--gpu")),
                    doc["spec"].get("entrypoint", "").split(" ")[1:2])
                   for _, doc in ray_documents())
    assert kinds == [("RayCluster", False, []), ("RayJob", False, ["train"]),
                     ("RayJob", False, ["tune"]), ("RayJob", True, ["train"])]


@pytest.mark.parametrize(("name", "doc"), ray_documents(), ids=[n for n, _ in ray_documents()])
def test_every_manifest_passes_all_checks(name, doc):
    settings = check_manifest(doc, ROOT)
    assert settings.num_workers >= 2
    cluster = doc["spec"].get("rayClusterSpec", doc["spec"])
    assert cluster["rayVersion"] == RAY_VERSION
    if doc["kind"] == "RayJob":
        assert doc["spec"]["shutdownAfterJobFinishes"] is True
        assert doc["spec"]["ttlSecondsAfterFinished"] > 0
        assert doc["spec"]["backoffLimit"] >= 1
        assert " --resume" in doc["spec"]["entrypoint"]
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        (container,) = group["template"]["spec"]["containers"]
        assert container["envFrom"] == [{"secretRef": {"name": "raytrainer-s3"}}]
        assert "env" not in container


def test_gpu_job_gives_each_worker_pod_a_gpu():
    (doc,) = [d for name, d in ray_documents() if name == "rayjob-digits-gpu.yaml"]
    (group,) = doc["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"
    assert group["replicas"] == 4 == check_manifest(doc, ROOT).num_workers


@pytest.mark.parametrize("path", [p for p in MANIFESTS if p.name.startswith("ray")],
                         ids=lambda p: p.name)
def test_checked_in_manifest_is_what_its_command_renders(path):
    assert path.read_text() == _regenerate().render_again(path)


def test_misspelled_field_is_rejected(cpu_job):
    cpu_job["spec"]["entryPont"] = cpu_job["spec"].pop("entrypoint")
    with pytest.raises(ManifestError, match=r"spec: Additional properties are not allowed "
                                            r"\('entryPont' was unexpected\)"):
        check_manifest(cpu_job, ROOT)


def test_wrong_type_is_rejected(cpu_job):
    cpu_job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] = "two"
    with pytest.raises(ManifestError, match=r"workerGroupSpecs\[0\]\.replicas: 'two' is not of "
                                            "type 'integer'"):
        check_manifest(cpu_job, ROOT)


@pytest.mark.parametrize("env", [
    {"name": "AWS_SECRET_ACCESS_KEY", "value": "abc"},
    {"name": "AWS_SESSION_TOKEN", "value": "abc"},
    {"name": "RAYTRAINER_STORAGE_OPTIONS", "value": '{"s3": {"secret": "abc"}}'},
    {"name": "MLFLOW_TRACKING_URI", "value": "https://user:pass@mlflow.example"},
])
def test_secret_value_inline_is_rejected(cpu_job, env):
    head = cpu_job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    head["containers"][0]["env"] = [{"name": "AWS_ENDPOINT_URL", "value": "http://minio:9000"},
                                    env]
    with pytest.raises(ManifestError, match=r"containers\[0\]\.env\[1\] .*a secret value "
                                            r"inline; take it from a Secret"):
        check_manifest(cpu_job, ROOT)


def test_secret_from_a_secret_key_ref_and_plain_endpoint_pass(cpu_job):
    head = cpu_job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    head["containers"][0]["env"] = [
        {"name": "AWS_ENDPOINT_URL", "value": "http://minio:9000"},
        {"name": "AWS_SECRET_ACCESS_KEY",
         "valueFrom": {"secretKeyRef": {"name": "s3", "key": "secret"}}}]
    assert check_manifest(cpu_job, ROOT).num_workers == 2


def test_secret_in_the_runtime_env_or_the_overrides_is_rejected(cpu_job):
    spec = cpu_job["spec"]
    spec["runtimeEnvYAML"] = "env_vars:\n  AWS_ACCESS_KEY_ID: AKIA123\n"
    with pytest.raises(ManifestError, match=r"runtimeEnvYAML: env_vars.AWS_ACCESS_KEY_ID"):
        check_manifest(cpu_job, ROOT)
    del spec["runtimeEnvYAML"]
    spec["entrypoint"] += " --cfg-options storage.s3.secret=abc"
    with pytest.raises(ManifestError, match=r"storage.s3.secret=\.\.\. puts a secret inline"):
        check_manifest(cpu_job, ROOT)


@pytest.mark.parametrize(("change", "message"), [
    ("--num-workers two", "raytrainer's parser rejects .*invalid int value: 'two'"),
    ("--no-such-flag", "unrecognized arguments: --no-such-flag"),
    ("--launcher none", "drop --launcher none and --address"),
])
def test_entrypoint_must_parse_with_raytrainers_parser(cpu_job, change, message):
    cpu_job["spec"]["entrypoint"] += " " + change
    with pytest.raises(ManifestError, match=f"spec.entrypoint: .*{message}"):
        check_manifest(cpu_job, ROOT)


def test_entrypoint_must_name_a_config_in_the_image(cpu_job):
    spec = cpu_job["spec"]
    spec["entrypoint"] = spec["entrypoint"].replace("digits/mlp.py", "digits/mlpp.py")
    with pytest.raises(ManifestError, match=r"config '/home/ray/raytrainer/configs/digits/"
                                            r"mlpp.py' does not exist in the image"):
        check_manifest(cpu_job, ROOT)
    spec["entrypoint"] = spec["entrypoint"].replace("/home/ray/raytrainer/configs/digits/mlpp.py",
                                                    "/tmp/mine.py")
    with pytest.raises(ManifestError, match="is not in the image: expected a path under "
                                            "/home/ray/raytrainer/"):
        check_manifest(cpu_job, ROOT)


def test_job_must_resume_and_write_to_shared_storage(cpu_job):
    spec = cpu_job["spec"]
    entrypoint = spec["entrypoint"]
    spec["entrypoint"] = entrypoint.replace(" --resume", "")
    with pytest.raises(ManifestError, match="add --resume"):
        check_manifest(cpu_job, ROOT)
    spec["entrypoint"] = entrypoint.replace("s3://my-bucket/runs/digits-cpu", "/tmp/run")
    with pytest.raises(ManifestError, match="--work-dir must be storage every pod reaches"):
        check_manifest(cpu_job, ROOT)


def test_workers_that_do_not_fit_are_rejected(cpu_job, gpu_job):
    cpu_job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] = 1
    with pytest.raises(ManifestError, match=r"2 Ray Train worker\(s\) of \{'CPU': 1.0\} each "
                                            r"do not fit \(PACK\): the pods hold 1 "
                                            r"\(head: 0; cpu-workers: 1 pod\(s\) x 1\)"):
        check_manifest(cpu_job, ROOT)
    group = gpu_job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    for amounts in group["template"]["spec"]["containers"][0]["resources"].values():
        del amounts["nvidia.com/gpu"]
    with pytest.raises(ManifestError, match=r"4 Ray Train worker\(s\) of \{'GPU': 1.0\} each "
                                            r"do not fit"):
        check_manifest(gpu_job, ROOT)


def test_a_head_that_advertises_cpus_holds_workers_and_the_driver_share(cpu_job):
    cluster = cpu_job["spec"]["rayClusterSpec"]
    cluster["workerGroupSpecs"][0]["replicas"] = 1
    cluster["headGroupSpec"]["rayStartParams"] = {"num-cpus": "2"}
    cpu_job["spec"]["entrypointNumCpus"] = 1
    assert check_manifest(cpu_job, ROOT).num_workers == 2  # 1 on the head, 1 on the worker
    cpu_job["spec"]["entrypointNumCpus"] = 2
    with pytest.raises(ManifestError, match=r"the pods hold 1 \(head: 0;"):
        check_manifest(cpu_job, ROOT)


def test_strict_spread_needs_a_pod_per_worker(cpu_job):
    cluster = cpu_job["spec"]["rayClusterSpec"]
    group = cluster["workerGroupSpecs"][0]
    group["replicas"] = 1
    for amounts in group["template"]["spec"]["containers"][0]["resources"].values():
        amounts["cpu"] = "2"
    assert check_manifest(cpu_job, ROOT).placement_strategy == "PACK"  # 2 CPUs hold both
    cpu_job["spec"]["entrypoint"] += " --cfg-options ray.placement_strategy=STRICT_SPREAD"
    with pytest.raises(ManifestError, match=r"do not fit \(STRICT_SPREAD\): the pods hold 1"):
        check_manifest(cpu_job, ROOT)


def test_ray_version_must_be_the_pinned_one(cpu_job):
    cpu_job["spec"]["rayClusterSpec"]["rayVersion"] = "2.50.0"
    with pytest.raises(ManifestError, match=r"rayVersion: expected '2.60.0'"):
        check_manifest(cpu_job, ROOT)


def test_cluster_needs_the_command_it_is_sized_for():
    (doc,) = [d for _, d in ray_documents() if d["kind"] == "RayCluster"]
    del doc["metadata"]["annotations"][ENTRYPOINT_ANNOTATION]
    with pytest.raises(ManifestError, match="no 'raytrainer.io/entrypoint'"):
        check_manifest(doc, ROOT)


def test_a_bad_quantity_in_ray_start_params_is_named(cpu_job):
    group = cpu_job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
    group["rayStartParams"] = {"num-cpus": "four"}
    with pytest.raises(ManifestError, match="spec.rayClusterSpec: 'four' is not a Kubernetes "
                                            "quantity"):
        check_manifest(cpu_job, ROOT)


def test_a_job_without_its_own_cluster_is_not_waved_through(cpu_job):
    del cpu_job["spec"]["rayClusterSpec"]
    cpu_job["spec"]["clusterSelector"] = {"ray.io/cluster": "shared"}
    with pytest.raises(ManifestError, match="spec.rayClusterSpec: missing"):
        check_manifest(cpu_job, ROOT)


@pytest.fixture
def tune_job() -> dict:
    return copy.deepcopy(yaml.safe_load((ROOT / "k8s" / "rayjob-digits-tune.yaml").read_text()))


def test_tune_job_has_workers_for_its_concurrent_trials(tune_job):
    entrypoint = tune_job["spec"]["entrypoint"]
    assert entrypoint.startswith("raytrainer tune /home/ray/raytrainer/configs/digits/mlp.py "
                                 "--space /home/ray/raytrainer/configs/digits/lr_space.py ")
    assert entrypoint.endswith("--workers-per-trial 2 --max-concurrent 2 --resume auto")
    (group,) = tune_job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert group["replicas"] == 4  # 2 trials x 2 workers, one pod each
    assert check_manifest(tune_job, ROOT).num_workers == 2  # per trial
    group["replicas"] = group["minReplicas"] = group["maxReplicas"] = 3
    with pytest.raises(ManifestError, match=r"4 Ray Train worker\(s\) \(2 trials x 2\) .* do "
                                            r"not fit .*the pods hold 3"):
        check_manifest(tune_job, ROOT)


@pytest.mark.parametrize("change, message", [
    (lambda e: e.replace(" --resume auto", " --resume"), "add --resume auto"),
    (lambda e: e.replace(" --resume auto", ""), "add --resume auto"),
    (lambda e: e.replace("lr_space.py", "no_space.py"),
     "space file '/home/ray/raytrainer/configs/digits/no_space.py' does not exist in the image"),
    (lambda e: e.replace(" --resume auto", " --resume auto --cfg-options "
                                           "optim_wrapper.optimizer=None"),
     "space key 'optim_wrapper.optimizer.lr'"),
])
def test_tune_job_must_resume_auto_and_name_a_space_that_fits_its_config(tune_job, change,
                                                                           message):
    tune_job["spec"]["entrypoint"] = change(tune_job["spec"]["entrypoint"])
    with pytest.raises(ManifestError, match=message):
        check_manifest(tune_job, ROOT)
