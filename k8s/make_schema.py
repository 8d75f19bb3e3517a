"""Convert KubeRay's CRDs into the strict JSON schema raytrainer validates manifests against.

    python k8s/make_schema.py [KUBERAY_DIR]      (default: ../shared/kuberay)

KUBERAY_DIR holds ``ray.io_rayjobs.yaml``, ``ray.io_rayclusters.yaml``, KubeRay's ``LICENSE``
and a ``README.md`` naming the commit they come from. The script writes
``raytrainer/k8s/schemas/kuberay_v1.json`` (one schema per kind, RayJob and RayCluster, taken
from each CRD's ``v1`` ``openAPIV3Schema``) and copies the LICENSE beside it.

The conversion makes ``jsonschema`` judge a manifest like ``kubectl apply --validate=strict``:

- an object with declared ``properties`` and no ``additionalProperties`` rejects unknown fields
  (the API server prunes or, strictly, rejects them);
- ``nullable: true`` also accepts ``null``;
- a required field that has a ``default`` is not required (the API server fills it in first);
- ``x-kubernetes-int-or-string`` accepts an integer or a string (quantities like ``"500m"``);
- the root ``metadata`` (which the API server validates itself) gets a strict ObjectMeta schema
  of the fields a manifest sets;
- descriptions, defaults, formats and ``x-kubernetes-*`` extensions are dropped: they never make
  a document invalid here (CEL ``x-kubernetes-validations`` rules are not evaluated).
"""
from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "raytrainer" / "k8s" / "schemas"
CRDS = {"RayJob": "ray.io_rayjobs.yaml", "RayCluster": "ray.io_rayclusters.yaml"}
KEEP = {"type", "properties", "items", "required", "enum", "pattern", "minimum", "maximum",
        "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "minItems",
        "maxItems", "anyOf", "allOf", "oneOf", "not", "additionalProperties"}
_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
OBJECT_META = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string"},
        "generateName": {"type": "string"},
        "namespace": {"type": "string"},
        "labels": _LABELS,
        "annotations": _LABELS,
        "finalizers": {"type": "array", "items": {"type": "string"}},
    },
}


def strict(node: Any) -> Any:
    """The strict JSON-schema form of one OpenAPI v3 (structural) schema node."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key not in KEEP:
            continue
        if key == "properties":
            out[key] = {name: strict(sub) for name, sub in value.items()}
        elif key in ("items", "not") or (key == "additionalProperties"
                                         and isinstance(value, dict)):
            out[key] = strict(value)
        elif key in ("anyOf", "allOf", "oneOf"):
            out[key] = [strict(sub) for sub in value]
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string") and "anyOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if "required" in out:
        defaulted = {name for name, sub in node.get("properties", {}).items()
                     if isinstance(sub, dict) and "default" in sub}
        required = [name for name in out["required"] if name not in defaulted]
        if required:
            out["required"] = required
        else:
            del out["required"]
    if (node.get("type") == "object" and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def kind_schema(crd: dict, kind: str) -> dict:
    """The strict schema of ``kind`` from its CRD's ``v1`` version."""
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = strict(version["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = OBJECT_META
    schema["properties"]["apiVersion"] = {"const": "ray.io/v1"}
    schema["properties"]["kind"] = {"const": kind}
    schema["required"] = ["apiVersion", "kind", "metadata", "spec"]
    return schema


def origin_commit(kuberay_dir: Path) -> str:
    found = re.search(r"\b[0-9a-f]{40}\b", (kuberay_dir / "README.md").read_text())
    if not found:
        raise SystemExit(f"{kuberay_dir / 'README.md'} names no 40-hex commit")
    return found[0]


def build(kuberay_dir: Path) -> dict:
    """The whole generated document: attribution plus one schema per kind."""
    kinds = {}
    for kind, filename in CRDS.items():
        with open(kuberay_dir / filename) as f:
            crd = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        kinds[kind] = kind_schema(crd, kind)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": (
            "Generated by k8s/make_schema.py from KubeRay's CRDs (ray-project/kuberay, commit "
            f"{origin_commit(kuberay_dir)}, ray-operator/config/crd/bases/{{"
            f"{','.join(CRDS.values())}}}) of the KubeRay project, licensed under the "
            "Apache License 2.0 (KUBERAY_LICENSE beside this file). Modified: strict "
            "additionalProperties, nullable, defaulted fields not required; descriptions and "
            "x-kubernetes extensions removed."),
        "kinds": kinds,
    }


def main(argv: list[str]) -> int:
    kuberay_dir = Path(argv[0]) if argv else ROOT.parent / "shared" / "kuberay"
    document = build(kuberay_dir)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    target = OUT_DIR / "kuberay_v1.json"
    target.write_text(json.dumps(document, separators=(",", ":"), sort_keys=True) + "\n")
    shutil.copyfile(kuberay_dir / "LICENSE", OUT_DIR / "KUBERAY_LICENSE")
    print(f"wrote {target.relative_to(ROOT)} ({target.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
