"""The ``raytrainer`` command: ``train``, ``val`` and ``test`` a config (``tune`` sweeps it,
``plot`` draws curves, ``convert`` writes a checkpoint as one weights file).

This module owns argument parsing, turning flags into config overrides, and turning failures
into a one-paragraph reason with a non-zero exit code. The work itself is the Runner's.
"""
from __future__ import annotations

import argparse
import sys
import time
import traceback
import warnings
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from .checkpoint import convert
from .config import Config, ConfigError, DictAction
from .k8s import cli as k8s_cli
from .launch import shutdown
from .tune import cli as tune_cli
from .visualization import plot

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="config file (.py/.json/.yaml), a path or storage URL")
    parser.add_argument("--work-dir", help="where logs and checkpoints go (path or URL); "
                        "overrides the config's work_dir")
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, default={},
                        metavar="KEY=VALUE",
                        help="override config keys, e.g. optim_wrapper.optimizer.lr=0.1 "
                             "train_cfg.max_epochs=5 'model.hidden_dims=[128,128]'")
    parser.add_argument("--launcher", choices=("ray", "none"), default="ray",
                        help="ray (default): one Runner per Ray Train worker, on a local Ray "
                             "instance or the cluster given by --address/RAY_ADDRESS; none: "
                             "one Runner in this process, without Ray")
    parser.add_argument("--num-workers", type=int, metavar="N",
                        help="number of Ray Train workers (ranks); overrides ray.num_workers")
    parser.add_argument("--gpu", action="store_true",
                        help="one GPU per worker (NCCL); sets ray.use_gpu=True")
    parser.add_argument("--address", metavar="ADDR",
                        help="Ray cluster to join: 'auto' (the cluster `ray start` made on this "
                             "machine), HOST:PORT or ray://HOST:PORT; default: RAY_ADDRESS, "
                             "else a private local instance started for this run")
    parser.add_argument("--debug", action="store_true",
                        help="print the full traceback when the command fails")
    parser.add_argument("--verbose", action="store_true",
                        help="also print Ray's own output (every worker's log lines, Ray "
                             "Train's internal messages); default: rank 0's lines only")


_EXAMPLES = {
    "train": """examples:
  raytrainer train configs/digits/mlp.py                       # 2 workers, private local Ray
  raytrainer train configs/digits/mlp.py --launcher none       # this process, no Ray
  raytrainer train configs/digits/mlp.py --num-workers 4 --gpu --address auto
  raytrainer train configs/digits/mlp.py --cfg-options train_cfg.max_epochs=5 \\
      optim_wrapper.optimizer.lr=0.1 'model.hidden_dims=[128,128]'
  raytrainer train configs/digits/mlp.py --resume              # latest committed checkpoint
  raytrainer train configs/digits/mlp.py --work-dir s3://bucket/runs/digits""",
    "val": """examples:
  raytrainer val configs/digits/mlp.py --checkpoint work_dirs/digits_mlp/checkpoints/epoch_20""",
    "test": """examples:
  raytrainer test configs/digits/mlp.py --checkpoint work_dirs/digits_mlp/checkpoints/epoch_20
  raytrainer test configs/digits/mlp.py --checkpoint model.pth --launcher none""",
}


def _version() -> str:
    try:
        return version("raytrainer")
    except PackageNotFoundError:
        return "unknown (not installed)"


_FORMAT_WARNING = warnings.formatwarning


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """Config warnings as one line (no source location: the config file is the user's)."""
    from .runner.validation import ConfigWarning

    if issubclass(category, ConfigWarning):
        return f"raytrainer: warning: {message}\n"
    return _FORMAT_WARNING(message, category, filename, lineno, line)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raytrainer", description="Train, validate and test MMEngine-style configs.",
        epilog="run 'raytrainer COMMAND --help' for a command's flags and examples",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a config",
                                description="Train a config on Ray Train (or in this process "
                                            "with --launcher none).",
                                epilog=_EXAMPLES["train"],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(train)
    train.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CHECKPOINT",
                       help="resume: without a value from the latest committed checkpoint in "
                            "the work_dir; with a value from that checkpoint")
    train.add_argument("--load-from", metavar="CHECKPOINT",
                       help="initialise the model weights from a checkpoint (no training state)")
    train.add_argument("--seed", type=int, help="set randomness.seed")
    train.add_argument("--deterministic", action="store_true",
                       help="set randomness.deterministic=True")
    train.add_argument("--auto-scale-lr", action="store_true",
                       help="enable auto_scale_lr (needs auto_scale_lr.base_batch_size)")

    for name, verb in (("val", "validate"), ("test", "test")):
        sub = commands.add_parser(name, help=f"{verb} a checkpoint",
                                  description=f"Load a checkpoint's weights and {verb} it.",
                                  epilog=_EXAMPLES[name],
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        _add_common(sub)
        sub.add_argument("--checkpoint", required=True, metavar="CHECKPOINT",
                         help="checkpoint directory or .pth file (path or URL)")
    k8s_cli.add_parser(commands)
    plot.add_parser(commands)
    convert.add_parser(commands)
    tune_cli.add_parser(commands)
    return parser


def load_config(args: argparse.Namespace) -> Config:
    """Read the config and apply the command-line overrides."""
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir:
        cfg["work_dir"] = args.work_dir
    if "work_dir" not in cfg or not cfg["work_dir"]:
        raise ConfigError(f"{args.config} sets no work_dir; pass --work-dir")
    if args.command == "train":
        if args.resume is not None:
            cfg["resume"] = True if args.resume == "auto" else args.resume
        if args.load_from:
            cfg["load_from"] = args.load_from
        if args.seed is not None or args.deterministic:
            randomness = dict(cfg.get("randomness") or {})
            if args.seed is not None:
                randomness["seed"] = args.seed
            if args.deterministic:
                randomness["deterministic"] = True
            cfg["randomness"] = randomness
        if args.auto_scale_lr:
            scale = dict(cfg.get("auto_scale_lr") or {})
            if "base_batch_size" not in scale:
                raise ConfigError("--auto-scale-lr needs auto_scale_lr.base_batch_size in the "
                                  "config")
            scale["enable"] = True
            cfg["auto_scale_lr"] = scale
    else:
        cfg["load_from"] = args.checkpoint
        cfg["resume"] = False
    return cfg


def _run_in_process(args: argparse.Namespace, cfg: Config) -> dict:
    """Run in this process; returns what the summary shows (``stopped``: how a signal ended
    the run early, see :mod:`raytrainer.launch.shutdown`)."""
    from .launch import stop_hook
    from .runner import Runner

    runner = Runner.from_cfg(cfg)
    stopped = None
    if args.command == "train":
        runner.register_hook(stop_hook.StopHook())
        try:
            stop = stop_hook.train(runner)
        except shutdown.ForcedStop as forced:
            stopped = {"signal": shutdown.signal_name(forced.signum), "signum": forced.signum,
                       "iter": None, "checkpoint": stop_hook.newest_committed(runner),
                       "forced": True}
            runner.message_hub.update_info("last_ckpt", stopped["checkpoint"])
        else:
            stopped = stop.to_dict() if stop else None
        metrics = getattr(runner.val_loop, "last_metrics", None)
    else:
        metrics = runner.val() if args.command == "val" else runner.test()
    hub = runner.message_hub
    return {"metrics": metrics, "work_dir": str(runner.work_dir),
            "last_checkpoint": hub.get_info("last_ckpt"),
            "best_checkpoint": hub.get_info("best_ckpt"), "stopped": stopped}


def _run_on_ray(args: argparse.Namespace, cfg: Config) -> dict:
    """Run on Ray Train; returns what the summary shows."""
    from . import launch

    settings = launch.RaySettings.from_config(
        cfg.get("ray"), num_workers=args.num_workers, use_gpu=True if args.gpu else None,
        address=args.address)
    checkpoint = None if args.command == "train" else args.checkpoint
    result = launch.launch(cfg, args.command, settings, checkpoint, verbose=args.verbose)
    details = result.details
    return {"metrics": result.metrics, "work_dir": result.spec.work_dir,
            "last_checkpoint": details.get("last_checkpoint"),
            "best_checkpoint": details.get("best_checkpoint"), "stopped": result.stopped}


def _cfg_option_words(options: dict) -> list[str]:
    return [f"{k}={v}" if isinstance(v, str) else f"{k}={v!r}" for k, v in options.items()]


def _launch_words(args: argparse.Namespace) -> list[str]:
    """The flags that chose where the run ran, for the summary's commands."""
    if args.launcher == "none":
        return ["--launcher", "none"]
    words = ["--num-workers", str(args.num_workers)] if args.num_workers else []
    words += ["--gpu"] if args.gpu else []
    return words + (["--address", args.address] if args.address else [])


def run(args: argparse.Namespace) -> int:
    if args.command == "k8s":
        return k8s_cli.run(args)
    if getattr(args, "handler", None):  # commands with their own module (plot)
        return args.handler(args)
    from .launch.summary import run_summary

    started = time.monotonic()
    # SIGTERM/Ctrl-C: training stops at an iteration boundary with a checkpoint, the summary
    # names it and the command exits with 128 + the signal number.
    with shutdown.handle_signals(graceful=args.command == "train"):
        cfg = load_config(args)
        if args.launcher == "none":
            if args.num_workers not in (None, 1) or args.gpu or args.address:
                raise ConfigError("--num-workers, --gpu and --address need --launcher ray")
            outcome = _run_in_process(args, cfg)
        else:
            outcome = _run_on_ray(args, cfg)
    lines = run_summary(args.command, wall_s=time.monotonic() - started, config=args.config,
                        cfg_options=_cfg_option_words(args.cfg_options),
                        launch_args=_launch_words(args), **outcome)
    print("\n".join(lines), flush=True)
    stopped = outcome.get("stopped")
    return shutdown.exit_code(stopped["signum"]) if stopped else EXIT_OK


def _innermost(exc: BaseException) -> BaseException:
    """The worker's own exception inside Ray's wrappers (TrainingFailedError, RayTaskError):
    the first rank's error that a restart cannot fix, else the lowest failed rank's."""
    failures = getattr(exc, "worker_failures", None)
    if failures:
        from .launch.failures import deterministic_failures, user_exception

        found = deterministic_failures(exc)
        failure = failures[min(failures)]
        exc = next(iter(found.values())) if found else (user_exception(failure) or failure)
    cause = getattr(exc, "cause", None)
    while isinstance(cause, BaseException):
        exc, cause = cause, getattr(cause, "cause", None)
    return exc


def _reason(exc: BaseException) -> str:
    inner = _innermost(exc)
    notes = " ".join(getattr(inner, "__notes__", []))
    text = f"{type(inner).__name__}: {inner}".strip()
    if inner is not exc:
        text = text.splitlines()[-1] if "Traceback" in text else text
    return f"{text} ({notes})" if notes else text


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.debug:
        warnings.formatwarning = _format_warning
    try:
        return run(args)
    except shutdown.ForcedStop as stop:  # before the run started, or outside training
        print(f"raytrainer: stopped by {shutdown.signal_name(stop.signum)}", file=sys.stderr)
        return shutdown.exit_code(stop.signum)
    except KeyboardInterrupt:
        print("raytrainer: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # every failure becomes one readable paragraph and exit code 1
        from . import storage

        storage.last_attempts_only()  # what still uploads gets one last try, then we exit
        storage.redact_exception(exc)  # a library's message may hold a URL's password
        if args.debug:
            traceback.print_exc()
        print(f"raytrainer {args.command} failed: {storage.redact_text(_reason(exc))}",
              file=sys.stderr)
        if not args.debug:
            print("(run with --debug for the full traceback)", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
