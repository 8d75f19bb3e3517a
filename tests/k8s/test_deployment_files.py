"""The image recipe, the cluster-launcher config and the dependency pin name one Ray version."""
from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from packaging.requirements import Requirement

from raytrainer.k8s.image import IMAGE_WORKDIR, RAY_VERSION

from .conftest import ROOT

DOCKERFILE = (ROOT / "k8s" / "Dockerfile").read_text()


def test_pyproject_pins_the_ray_version_the_image_uses_and_that_is_installed():
    pyproject = (ROOT / "pyproject.toml").read_text()
    (ray_req,) = [Requirement(r) for r in re.findall(r'^\s*"(ray\[[^"]+)",', pyproject, re.M)]
    assert str(ray_req.specifier) == f"~={RAY_VERSION}"
    assert ray.__version__ == RAY_VERSION


def test_dockerfile_builds_on_the_pinned_ray_with_cpu_and_gpu_variants():
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE, re.M))
    assert args["RAY_VERSION"] == RAY_VERSION
    assert args["VARIANT"] == "cpu"
    assert "FROM rayproject/ray:${RAY_VERSION}-${PYTHON}-${VARIANT}" in DOCKERFILE
    assert 'if [ "$VARIANT" = "cpu" ]' in DOCKERFILE  # the gpu variant keeps PyPI's CUDA torch


def test_image_holds_the_configs_where_the_manifests_run_them():
    assert re.search(r"^WORKDIR (\S+)$", DOCKERFILE, re.M)[1] == IMAGE_WORKDIR
    copied = re.findall(r"^COPY \S+ (\S+) \./(\S+)$", DOCKERFILE, re.M)
    assert ("configs", "configs") in copied and ("raytrainer", "raytrainer") in copied


def _launcher_schema() -> dict:
    path = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"
    return json.loads(path.read_text())


def _cluster_yaml() -> dict:
    return yaml.safe_load((ROOT / "cluster" / "cluster.yaml").read_text())


def test_cluster_yaml_validates_against_the_installed_rays_launcher_schema():
    validator = jsonschema.Draft7Validator(_launcher_schema())
    assert [e.message for e in validator.iter_errors(_cluster_yaml())] == []
    broken = _cluster_yaml()
    broken["available_node_types"]["gpu_worker"]["max_worker"] = 4
    (error,) = validator.iter_errors(broken)
    assert "'max_worker' was unexpected" in error.message


def test_cluster_yaml_installs_the_pinned_ray():
    installs = [c for c in _cluster_yaml()["setup_commands"] if "ray[" in c]
    assert installs == [f'pip install "ray[default,train,tune]=={RAY_VERSION}"']


def test_example_secret_holds_placeholders_only():
    secret = yaml.safe_load((ROOT / "k8s" / "secret.example.yaml").read_text())
    assert (secret["apiVersion"], secret["kind"]) == ("v1", "Secret")
    data = secret["stringData"]
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(data)
    assert all(data[key].startswith("<") for key in ("AWS_ACCESS_KEY_ID",
                                                     "AWS_SECRET_ACCESS_KEY"))


@pytest.mark.parametrize("path", sorted((ROOT / "k8s").glob("*.yaml")), ids=lambda p: p.name)
def test_every_yaml_under_k8s_is_a_known_kind(path):
    kinds = {doc["kind"] for doc in yaml.safe_load_all(path.read_text()) if doc}
    assert kinds <= {"RayJob", "RayCluster", "Secret"}
