"""What the image built from ``k8s/Dockerfile`` contains, as the manifests rely on it.

The Ray version is the one raytrainer is tested with: the image's base tag, the manifests'
``rayVersion``, ``cluster/cluster.yaml`` and pyproject's ``ray`` requirement all name it (tests
keep them equal).
"""
from __future__ import annotations

import posixpath

RAY_VERSION = "2.60.0"
# The oldest KubeRay operator whose CRDs the manifests are validated against (authOptions, v1).
KUBERAY_OPERATOR_VERSION = "1.7.0"
# raytrainer's source and its configs/ are copied here, and this is the image's WORKDIR.
IMAGE_WORKDIR = "/home/ray/raytrainer"


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
