"""Checks of a RayJob/RayCluster manifest beyond what KubeRay's schema can say.

A manifest passes when it validates strictly against its kind's schema, holds no secret value
inline, runs images that are image references, names the Ray version raytrainer pins, runs
(or, for a RayCluster, is sized for) a ``raytrainer`` command that raytrainer's own parser
accepts with a config the image holds (a config without credentials, which would ship in the
image), and gives that run's Ray Train workers enough pods. The command is parsed by the parsers
of ``raytrainer``'s run commands and its config loaded as the run request loads it
(:mod:`raytrainer.launch.driver.request`), never through the CLI module.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from ..config import Config, ConfigError
from ..config.ray_settings import RaySettings
from ..launch.driver import request as run_request
from ..storage.options import protocol_of
from ..storage.redaction import is_secret_key, redact, redact_text
from ..tune import cli as tune_cli
from .image import IMAGE_WORKDIR, RAY_VERSION, image_reference_problem, repo_path
from .schema import schema_errors
from .sizing import placement_problem

# The command a RayCluster is sized for (what to `ray job submit`); a RayJob runs its entrypoint.
ENTRYPOINT_ANNOTATION = "raytrainer.io/entrypoint"
_NOT_SHARED = ("file", "local", "memory")
_COMMANDS = (*run_request.RUN_COMMANDS, "tune")  # what a manifest may run
# Config sections that hold fsspec storage options (credentials there would ship in the image).
_STORAGE_SECTIONS = ("storage", "storage_options", "backend_args")


class ManifestError(ValueError):
    """A manifest that would not deploy or run as intended; the message lists every problem."""


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}[{index}]")


def _inline_secret(name: str, value: Any) -> bool:
    if is_secret_key(name):
        return True
    text = str(value)
    if redact_text(text) != text:
        return True
    with contextlib.suppress(ValueError, TypeError):
        parsed = json.loads(text)
        return isinstance(parsed, (dict, list)) and redact(parsed) != parsed
    return False


def inline_secrets(doc: Any) -> list[str]:
    """Environment variables (pod ``env``, the runtime env's ``env_vars``) that carry a secret
    value instead of taking it from a Kubernetes Secret, and credentials in URLs."""
    problems = []
    for path, node in _walk(doc):
        if path.endswith(".env") and isinstance(node, list):
            for index, item in enumerate(node):
                if isinstance(item, Mapping) and "value" in item \
                        and _inline_secret(str(item.get("name")), item["value"]):
                    problems.append(f"{path}[{index}] ({item.get('name')}): a secret value "
                                    "inline; take it from a Secret (valueFrom.secretKeyRef or "
                                    "envFrom.secretRef)")
        elif path.endswith("runtimeEnvYAML") and isinstance(node, str):
            env_vars = (yaml.safe_load(node) or {}).get("env_vars") or {}
            problems += [f"{path}: env_vars.{name} holds a secret value inline; take it from "
                         "a Secret" for name, value in env_vars.items()
                         if _inline_secret(name, value)]
        elif path.endswith(("entrypoint", ENTRYPOINT_ANNOTATION)) and isinstance(node, str) \
                and redact_text(node) != node:
            problems.append(f"{path}: credentials in a URL; take them from a Secret")
    return problems


def config_secrets(cfg: Mapping) -> list[str]:
    """The config keys that would ship a credential in the image: a set secret-looking key
    among storage options (``storage.s3.secret``, ``...storage_options.key``), and any URL
    with credentials (``http://user:password@host``)."""
    found = []
    for path, node in _walk(cfg):
        if isinstance(node, str) and redact_text(node) != node:
            found.append(f"{path}: credentials in a URL")
        if not isinstance(node, Mapping) or path.rsplit(".", 1)[-1] not in _STORAGE_SECTIONS:
            continue
        for sub_path, value in _walk(node, path):
            key = sub_path.rsplit(".", 1)[-1]
            if is_secret_key(key) and value not in (None, "") and \
                    not isinstance(value, Mapping):
                found.append(f"{sub_path}: a storage credential")
    return found


def _reject_config_secrets(cfg: Config, where: str) -> None:
    found = config_secrets(cfg.to_dict())
    if found:
        raise ManifestError(f"{where}: the config holds credentials, which would ship in the "
                            f"image: {'; '.join(found)}; take them from a Secret (AWS_* "
                            "environment variables, --secret)")


def run_command_parser() -> argparse.ArgumentParser:
    """``raytrainer``'s parser for the commands a manifest may run: the run commands and
    ``tune``, declared by the modules the CLI takes them from."""
    parser = argparse.ArgumentParser(prog="raytrainer")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run_request.add_run_parsers(commands)
    tune_cli.add_parser(commands)
    return parser


def _parse_command(command: str, where: str) -> argparse.Namespace:
    argv = shlex.split(command)
    if not argv or argv[0] != "raytrainer":
        raise ManifestError(f"{where}: expected a `raytrainer train|val|test ...` command, got "
                            f"{command!r}")
    if len(argv) > 1 and not argv[1].startswith("-") and argv[1] not in _COMMANDS:
        raise ManifestError(f"{where}: expected raytrainer train, val, test or tune, got "
                            f"{argv[1]!r}")
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            args = run_command_parser().parse_args(argv[1:])
    except SystemExit:
        reason = stderr.getvalue().strip().splitlines()[-1:] or ["invalid arguments"]
        raise ManifestError(f"{where}: raytrainer's parser rejects {command!r}: "
                            f"{reason[0]}") from None
    return args


def _image_file(path: str, what: str, where: str, config_root: Path) -> str:
    """The local copy of a file the image holds (``path`` as the command names it)."""
    relative = repo_path(path)
    if relative is None:
        raise ManifestError(f"{where}: {what} {path!r} is not in the image: expected a path "
                            f"under {IMAGE_WORKDIR}/ or a storage URL")
    local = config_root / relative
    if not local.is_file():
        raise ManifestError(f"{where}: {what} {path!r} does not exist in the image (no {local})")
    return str(local)


def _tune_settings(args: argparse.Namespace, where: str, config_root: Path) -> RaySettings:
    """The Ray settings of one trial of the sweep ``args`` runs, after checking its space."""
    from ..tune.space import check_space, load_space

    if args.resume != "auto":
        raise ManifestError(f"{where}: add --resume auto, so that a retried or re-submitted "
                            "job continues its sweep (and a first one starts it)")
    if not args.space:
        raise ManifestError(f"{where}: raytrainer tune needs --space SPACE.py")
    if "://" not in args.config:
        args.config = _image_file(args.config, "config", where, config_root)
    space = args.space if "://" in args.space else \
        _image_file(args.space, "space file", where, config_root)
    try:
        cfg = run_request.read_config(args.config, args.cfg_options)
        _reject_config_secrets(cfg, where)
        check_space(cfg, load_space(space))
        return run_request.ray_settings(cfg, num_workers=args.workers_per_trial)
    except ManifestError:
        raise
    except (ConfigError, OSError, ValueError) as exc:
        raise ManifestError(f"{where}: {exc}") from None


def concurrent_trials(command: str, where: str) -> int:
    """Runs at once under ``command``: a sweep's ``--max-concurrent`` (1 when not given: the
    job is sized for it), else 1."""
    args = _parse_command(command, where)
    if args.command != "tune" or args.max_concurrent is None:
        return 1
    if args.max_concurrent < 1:
        raise ManifestError(f"{where}: --max-concurrent {args.max_concurrent}: expected a "
                            "positive integer")
    return args.max_concurrent


def run_settings(command: str, where: str, config_root: Path, *,
                 needs_resume: bool) -> RaySettings:
    """Parse ``command`` with raytrainer's parser, load its config as the image holds it
    (``IMAGE_WORKDIR`` is ``config_root`` here) and return the run's Ray settings."""
    args = _parse_command(command, where)
    if getattr(args, "launcher", "ray") != "ray" or args.address:
        raise ManifestError(f"{where}: the run must use the cluster it is submitted to: drop "
                            "--launcher none and --address")
    if not args.work_dir or protocol_of(args.work_dir) in _NOT_SHARED:
        raise ManifestError(f"{where}: --work-dir must be storage every pod reaches "
                            f"(s3://bucket/prefix ...), got {args.work_dir!r}")
    if needs_resume and args.command == "train" and args.resume is None:
        raise ManifestError(f"{where}: add --resume, so that a retried or re-submitted job "
                            "continues from its last committed checkpoint")
    for key in args.cfg_options:
        if is_secret_key(key.rsplit(".", 1)[-1]):
            raise ManifestError(f"{where}: --cfg-options {key}=... puts a secret inline; take it "
                                "from a Secret (environment variables)")
    if args.command == "tune":
        return _tune_settings(args, where, config_root)
    if "://" not in args.config:
        args.config = _image_file(args.config, "config", where, config_root)
    try:
        cfg = run_request.load_config(args)
        _reject_config_secrets(cfg, where)
        return run_request.run_settings(cfg, args)
    except ManifestError:
        raise
    except (ConfigError, OSError, ValueError) as exc:
        raise ManifestError(f"{where}: {exc}") from None


def _cluster_parts(doc: Mapping) -> tuple[Mapping, str, str, bool, dict[str, float]]:
    """(cluster spec, its path, the command, whether it needs --resume, the driver's share).

    A RayJob's entrypoint runs again after a retry (``backoffLimit``) or a re-submission, so it
    must resume; the command a RayCluster is sized for is the user's to submit.
    """
    spec = doc["spec"]
    if doc["kind"] == "RayJob":
        if "rayClusterSpec" not in spec:
            raise ManifestError("spec.rayClusterSpec: missing; a job for an existing cluster "
                                "(clusterSelector) cannot be checked for room for its workers")
        share = {"CPU": float(spec.get("entrypointNumCpus", 0) or 0),
                 "GPU": float(spec.get("entrypointNumGpus", 0) or 0)}
        return spec["rayClusterSpec"], "spec.rayClusterSpec", spec.get("entrypoint", ""), \
            True, share
    annotations = doc["metadata"].get("annotations") or {}
    if ENTRYPOINT_ANNOTATION not in annotations:
        raise ManifestError(f"metadata.annotations: no {ENTRYPOINT_ANNOTATION!r}: the command "
                            "this cluster is sized for")
    return spec, "spec", annotations[ENTRYPOINT_ANNOTATION], False, {}


def image_problems(doc: Any) -> list[str]:
    """Containers whose ``image`` is not an image reference."""
    problems = []
    for path, node in _walk(doc):
        if ".containers[" in path and path.endswith(".image"):
            problem = image_reference_problem(node)
            if problem:
                problems.append(f"{path}: {problem}")
    return problems


def check_manifest(doc: Any, config_root: Path | str) -> RaySettings:
    """Check one RayJob or RayCluster document; ``config_root`` is the directory that the
    image's ``IMAGE_WORKDIR`` copies (the repository root).

    Returns:
        The Ray settings of the run the manifest is sized for.

    Raises:
        ManifestError: every problem found, one per line.
    """
    problems = schema_errors(doc)
    if problems:
        raise ManifestError("\n".join(problems))
    problems = inline_secrets(doc) + image_problems(doc)
    if problems:
        raise ManifestError("\n".join(problems))
    cluster, where, command, needs_resume, share = _cluster_parts(doc)
    if cluster.get("rayVersion") != RAY_VERSION:
        raise ManifestError(f"{where}.rayVersion: expected {RAY_VERSION!r} (the Ray version "
                            f"raytrainer pins), got {cluster.get('rayVersion')!r}")
    entry = "spec.entrypoint" if doc["kind"] == "RayJob" else \
        f"metadata.annotations[{ENTRYPOINT_ANNOTATION}]"
    settings = run_settings(command, entry, Path(config_root), needs_resume=needs_resume)
    try:
        problem = placement_problem(settings, cluster["headGroupSpec"],
                                    list(cluster.get("workerGroupSpecs") or []), share,
                                    trials=concurrent_trials(command, entry))
    except ValueError as exc:  # a quantity that is not one
        raise ManifestError(f"{where}: {exc}") from None
    if problem:
        raise ManifestError(f"{where}: {problem}")
    return settings
