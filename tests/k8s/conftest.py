"""Shared helpers for the KubeRay manifest tests: the repository root and its manifests."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "k8s").glob("*.yaml"))


def ray_documents() -> list[tuple[str, dict]]:
    """(file name, document) for every RayJob/RayCluster document under k8s/."""
    found = []
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") in ("RayJob", "RayCluster"):
                found.append((path.name, doc))
    return found


@pytest.fixture
def cpu_job() -> dict:
    """A fresh copy of the checked-in CPU RayJob, to break in a test."""
    return copy.deepcopy(yaml.safe_load((ROOT / "k8s" / "rayjob-digits-cpu.yaml").read_text()))


@pytest.fixture
def gpu_job() -> dict:
    return copy.deepcopy(yaml.safe_load((ROOT / "k8s" / "rayjob-digits-gpu.yaml").read_text()))
