"""What the image built from ``k8s/Dockerfile`` contains, as the manifests rely on it.

The Ray version is the one raytrainer is tested with: the image's base tag, the manifests'
``rayVersion``, ``cluster/cluster.yaml`` and pyproject's ``ray`` requirement all name it (tests
keep them equal).
"""
from __future__ import annotations

import posixpath
import re

RAY_VERSION = "2.60.0"
# The oldest KubeRay operator whose CRDs the manifests are validated against (authOptions, v1).
KUBERAY_OPERATOR_VERSION = "1.7.0"
# raytrainer's source and its configs/ are copied here, and this is the image's WORKDIR.
IMAGE_WORKDIR = "/home/ray/raytrainer"

# A container image reference, by the grammar of distribution/reference:
# [registry[:port]/]path[/path...][:tag][@algorithm:hex]
_DOMAIN = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9]" \
          r"[a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?"
_PATH = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_REFERENCE = re.compile(
    rf"^(?:{_DOMAIN}/)?{_PATH}(?:/{_PATH})*(?::[\w][\w.-]{{0,127}})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$")


def image_reference_problem(image: object) -> str | None:
    """Why ``image`` is not a container image reference (``REPO/raytrainer:TAG``), or None."""
    if not isinstance(image, str) or not _IMAGE_REFERENCE.match(image) or len(image) > 255:
        return (f"{image!r} is not an image reference: expected [REGISTRY/]REPOSITORY[:TAG]"
                "[@DIGEST] in lowercase, e.g. registry.example.com/raytrainer:0.1.0-cpu")
    return None


def image_path(config: str) -> str:
    """Where the image holds ``config``, given relative to the repository root (a storage URL
    stays as it is)."""
    if "://" in config:
        return config
    normalized = posixpath.normpath(config)
    if posixpath.isabs(normalized) or normalized.startswith(".."):
        raise ValueError(f"CONFIG {config!r}: expected a path relative to the repository root "
                         f"(the image holds it under {IMAGE_WORKDIR}, e.g. "
                         "configs/digits/mlp.py) or a storage URL (s3://...)")
    return posixpath.join(IMAGE_WORKDIR, normalized)


def repo_path(path: str) -> str | None:
    """The repository-relative path of a file the image holds under ``IMAGE_WORKDIR``, or None
    for a path outside it."""
    prefix = IMAGE_WORKDIR + "/"
    return path[len(prefix):] if path.startswith(prefix) else None
