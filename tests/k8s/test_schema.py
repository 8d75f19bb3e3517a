"""KubeRay's CRDs as a strict JSON schema: the conversion rules and the generated file."""
from __future__ import annotations

import importlib.util
import json
import time

import pytest

from raytrainer.k8s.schema import schema_errors

from .conftest import ROOT

KUBERAY = ROOT.parent / "shared" / "kuberay"


def _make_schema():
    spec = importlib.util.spec_from_file_location("make_schema", ROOT / "k8s" / "make_schema.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_conversion_makes_objects_strict_and_keeps_kubernetes_leniencies():
    node = {"type": "object", "required": ["name", "protocol"], "description": "dropped",
            "properties": {
                "name": {"type": "string"},
                "protocol": {"type": "string", "default": "TCP"},
                "when": {"type": "string", "nullable": True, "format": "date-time"},
                "cpu": {"anyOf": [{"type": "integer"}, {"type": "string"}],
                        "x-kubernetes-int-or-string": True},
                "bare": {"x-kubernetes-int-or-string": True},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}
    strict = _make_schema().strict(node)
    assert strict["additionalProperties"] is False
    assert strict["required"] == ["name"]  # protocol has a default: the API server fills it
    assert "description" not in strict
    props = strict["properties"]
    assert props["when"]["type"] == ["string", "null"]
    assert props["bare"]["anyOf"] == [{"type": "integer"}, {"type": "string"}]
    assert props["labels"]["additionalProperties"] == {"type": "string"}
    assert "additionalProperties" not in props["free"]


@pytest.mark.skipif(not KUBERAY.is_dir(), reason=f"KubeRay's CRDs are not at {KUBERAY}")
def test_committed_schema_is_what_the_script_generates_from_the_crds():
    generated = _make_schema().build(KUBERAY)
    committed = json.loads((ROOT / "raytrainer" / "k8s" / "schemas" / "kuberay_v1.json")
                           .read_text())
    assert committed == generated
    assert (ROOT / "raytrainer" / "k8s" / "schemas" / "KUBERAY_LICENSE").read_text() == \
        (KUBERAY / "LICENSE").read_text()
    assert "Apache License 2.0" in committed["$comment"]


def _job(spec: dict) -> dict:
    return {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "x"},
            "spec": spec}


def _cluster_spec(worker: dict | None = None, container: dict | None = None) -> dict:
    container = container or {"name": "ray-head", "image": "img"}
    spec = {"headGroupSpec": {"template": {"spec": {"containers": [container]}}}}
    if worker is not None:
        spec["workerGroupSpecs"] = [worker]
    return spec


def test_unknown_field_is_rejected_with_its_path():
    errors = schema_errors(_job({"entryPont": "raytrainer train c.py"}))
    assert errors == ["spec: Additional properties are not allowed ('entryPont' was unexpected)"]


def test_wrong_type_is_rejected_with_its_path():
    worker = {"groupName": "w", "replicas": "two",
              "template": {"spec": {"containers": [{"name": "w", "image": "img"}]}}}
    errors = schema_errors(_job({"rayClusterSpec": _cluster_spec(worker)}))
    assert errors == ["spec.rayClusterSpec.workerGroupSpecs[0].replicas: 'two' is not of type "
                      "'integer'"]


def test_quantities_may_be_integers_or_strings_and_defaulted_fields_may_be_left_out():
    container = {"name": "ray-head", "image": "img",
                 "resources": {"limits": {"cpu": "500m", "memory": 2147483648},
                               "requests": {"cpu": 1}},
                 "ports": [{"containerPort": 6379}]}  # protocol has a default
    worker = {"groupName": "w",  # minReplicas/maxReplicas have defaults
              "template": {"spec": {"containers": [{"name": "w", "image": "img"}]}}}
    assert schema_errors(_job({"rayClusterSpec": _cluster_spec(worker, container)})) == []
    container["resources"]["limits"]["cpu"] = "half"
    (error,) = schema_errors(_job({"rayClusterSpec": _cluster_spec(worker, container)}))
    assert "containers[0].resources.limits.cpu" in error


def test_metadata_and_kind_are_strict_too():
    doc = _job({})
    doc["metadata"]["nmae"] = "typo"
    assert schema_errors(doc) == ["metadata: Additional properties are not allowed ('nmae' was "
                                  "unexpected)"]
    assert schema_errors({**_job({}), "kind": "RayService"})[0].startswith("kind: expected one")
    assert "apiVersion" in schema_errors({**_job({}), "apiVersion": "ray.io/v1alpha1"})[0]


def test_fresh_load_and_validation_take_well_under_a_second(cpu_job):
    from raytrainer.k8s import schema

    schema._schemas.cache_clear()
    schema._validator.cache_clear()
    start = time.process_time()
    assert schema_errors(cpu_job) == []
    assert time.process_time() - start < 0.5
