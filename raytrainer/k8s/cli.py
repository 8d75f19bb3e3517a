"""``raytrainer k8s rayjob|raycluster CONFIG ...``: print a validated KubeRay manifest.

This module owns the subcommand's arguments and its run: build the ``raytrainer train``
command, load the config as the image holds it (from the current directory, the repository
root), render the manifest sized for it, check it (``checks.check_manifest``) and print it.
"""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from .checks import check_manifest, run_settings
from .render import TUNE_FLAGS, RenderRequest, render, to_yaml

HEADER = "Rendered by: {command}"
REGENERATE = "Do not edit: re-render with the command above (python k8s/regenerate.py for all)."
_DEFAULTS = {"secret": "raytrainer-s3", "memory_per_worker": "4Gi"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``k8s`` on the ``raytrainer`` command's subparsers."""
    k8s = subparsers.add_parser(
        "k8s", help="print a KubeRay RayJob or RayCluster manifest for a config",
        description="Render a KubeRay manifest that trains CONFIG on Kubernetes: a RayJob (runs "
                    "`raytrainer train CONFIG --resume ...` and shuts down), a RayJob that "
                    "sweeps it (tunejob: `raytrainer tune CONFIG --space SPACE --resume auto "
                    "...`, workers for --max-concurrent trials) or a RayCluster sized for the "
                    "training command (submit it with `ray job submit`). The manifest is "
                    "validated against KubeRay's schema before it is printed.")
    k8s.add_argument("kind", choices=("rayjob", "tunejob", "raycluster"))
    k8s.add_argument("config", help="config relative to the repository root (the image holds "
                                    "configs/ under /home/ray/raytrainer) or a storage URL")
    k8s.add_argument("--image", required=True, metavar="IMAGE",
                     help="the image built from k8s/Dockerfile, e.g. REPO/raytrainer:TAG")
    k8s.add_argument("--work-dir", required=True, metavar="URL",
                     help="storage every pod reaches, e.g. s3://bucket/runs/x")
    k8s.add_argument("--num-workers", type=int, metavar="N",
                     help="Ray Train workers; default: the config's ray.num_workers")
    k8s.add_argument("--gpu", action="store_true", help="one GPU per worker (nvidia.com/gpu)")
    k8s.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                     help="config overrides passed on to raytrainer train")
    k8s.add_argument("--name", help="metadata.name (default: raytrainer-<config name>)")
    k8s.add_argument("--secret", default=_DEFAULTS["secret"], metavar="NAME",
                     help="Secret whose keys become the pods' environment (AWS_ACCESS_KEY_ID, "
                          "AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL ...); '' for none (IRSA)")
    k8s.add_argument("--service-account", metavar="NAME",
                     help="the pods' service account, e.g. one bound to an IAM role (IRSA)")
    k8s.add_argument("--memory-per-worker", default=_DEFAULTS["memory_per_worker"],
                     metavar="QUANTITY", help="worker pod memory per Ray Train worker")
    sweep = k8s.add_argument_group("tunejob (raytrainer tune flags)")
    sweep.add_argument("--space", metavar="SPACE.py",
                       help="search space file, relative to the repository root like CONFIG")
    sweep.add_argument("--num-samples", type=int, metavar="N")
    sweep.add_argument("--scheduler", choices=("asha", "pbt", "fifo"))
    sweep.add_argument("--metric", metavar="KEY")
    sweep.add_argument("--mode", choices=("max", "min"))
    sweep.add_argument("--workers-per-trial", type=int, metavar="N")
    sweep.add_argument("--max-concurrent", type=int, metavar="N",
                       help="trials at once; the worker group is sized for them (default 1)")
    k8s.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    k8s.add_argument("--debug", action="store_true",
                     help="print the full traceback when the command fails")


def _command(args: argparse.Namespace) -> str:
    """The canonical command line for ``args`` (without ``--output``)."""
    argv = ["raytrainer", "k8s", args.kind, args.config, "--image", args.image,
            "--work-dir", args.work_dir]
    if args.num_workers is not None:
        argv += ["--num-workers", str(args.num_workers)]
    if args.gpu:
        argv.append("--gpu")
    if args.space is not None:
        argv += ["--space", args.space]
    for option in TUNE_FLAGS:
        if getattr(args, option) is not None:
            argv += ["--" + option.replace("_", "-"), str(getattr(args, option))]
    for option in ("name", "secret", "service_account", "memory_per_worker"):
        value = getattr(args, option)
        if value is not None and value != _DEFAULTS.get(option):
            argv += ["--" + option.replace("_", "-"), value]
    if args.cfg_options:
        argv += ["--cfg-options", *args.cfg_options]
    return shlex.join(argv)


def render_text(args: argparse.Namespace, config_root: Path) -> str:
    """The checked manifest for ``args`` as YAML, headed by the command that renders it."""
    tune_given = [option for option in ("space", *TUNE_FLAGS)
                  if getattr(args, option) is not None]
    if args.kind != "tunejob" and tune_given:
        raise ValueError(f"--{tune_given[0].replace('_', '-')} is a tunejob option")
    if args.kind == "tunejob" and args.num_workers is not None:
        raise ValueError("tunejob: use --workers-per-trial instead of --num-workers")
    request = RenderRequest(
        kind=args.kind, config=args.config, image=args.image, work_dir=args.work_dir,
        num_workers=args.num_workers, gpu=args.gpu, cfg_options=list(args.cfg_options),
        name=args.name, secret=args.secret, service_account=args.service_account,
        memory_per_worker=args.memory_per_worker, space=args.space,
        tune={option: getattr(args, option) for option in TUNE_FLAGS})
    request.check()
    settings = run_settings(request.entrypoint(), "CONFIG", config_root, needs_resume=True)
    doc = render(request, settings)
    check_manifest(doc, config_root)
    return to_yaml(doc, [HEADER.format(command=_command(args)), REGENERATE])


def run(args: argparse.Namespace) -> int:
    text = render_text(args, Path.cwd())
    if args.output:
        Path(args.output).write_text(text)
    else:
        print(text, end="")
    return 0
