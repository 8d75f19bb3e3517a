"""The ``raytrainer`` command: ``train``, ``val`` and ``test`` a config (``tune`` sweeps it,
``plot`` draws curves, ``convert`` writes a checkpoint as one weights file, ``k8s`` prints a
KubeRay manifest).

This module owns assembling the subcommands, running a ``train``/``val``/``test`` request (in
this process or on Ray) with its summary, and turning failures into a one-paragraph reason with
a non-zero exit code. The flags of a run and what they change in the config are the run
request's (:mod:`raytrainer.launch.driver.request`); the work itself is the Runner's.
"""
from __future__ import annotations

import argparse
import sys
import time
import traceback
import warnings
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from . import storage
from .checkpoint import convert
from .config import ConfigWarning
from .k8s import cli as k8s_cli
from .launch import shutdown
from .launch.driver.request import RunRequest, add_run_parsers
from .launch.driver.summary import run_summary
from .tune import cli as tune_cli
from .visualization import plot

EXIT_OK = 0
EXIT_FAILED = shutdown.EXIT_FAILED  # 1
EXIT_USAGE = 2


def _version() -> str:
    try:
        return version("raytrainer")
    except PackageNotFoundError:
        return "unknown (not installed)"


_FORMAT_WARNING = warnings.formatwarning


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """Config warnings as one line (no source location: the config file is the user's)."""
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

    add_run_parsers(commands)
    k8s_cli.add_parser(commands)
    plot.add_parser(commands)
    convert.add_parser(commands)
    tune_cli.add_parser(commands)
    return parser


def _run_in_process(request: RunRequest) -> dict:
    """Run in this process; returns what the summary shows (``stopped``: how a signal ended
    the run early, see :mod:`raytrainer.launch.shutdown`)."""
    from .launch.worker import stop_hook
    from .runner import Runner

    runner = Runner.from_cfg(request.cfg)
    stopped = None
    if request.command == "train":
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
        metrics = runner.val() if request.command == "val" else runner.test()
    hub = runner.message_hub
    return {"metrics": metrics, "work_dir": str(runner.work_dir),
            "last_checkpoint": hub.get_info("last_ckpt"),
            "best_checkpoint": hub.get_info("best_ckpt"), "stopped": stopped}


def _run_on_ray(request: RunRequest, verbose: bool) -> dict:
    """Run on Ray Train; returns what the summary shows."""
    from .launch.driver.run import launch

    result = launch(request.cfg, request.command, request.settings, request.checkpoint,
                    verbose=verbose)
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

    started = time.monotonic()
    # SIGTERM/Ctrl-C: training stops at an iteration boundary with a checkpoint, the summary
    # names it and the command exits with 128 + the signal number.
    with shutdown.handle_signals(graceful=args.command == "train"):
        request = RunRequest.from_args(args)
        if request.settings is None:
            outcome = _run_in_process(request)
        else:
            outcome = _run_on_ray(request, args.verbose)
    cfg = request.cfg
    can_test = all(cfg.get(key) is not None
                   for key in ("test_dataloader", "test_cfg", "test_evaluator"))
    lines = run_summary(args.command, wall_s=time.monotonic() - started, config=args.config,
                        cfg_options=_cfg_option_words(args.cfg_options),
                        launch_args=_launch_words(args), can_test=can_test, **outcome)
    print("\n".join(lines), flush=True)
    stopped = outcome.get("stopped")
    return shutdown.exit_code(stopped["signum"]) if stopped else EXIT_OK


def _innermost(exc: BaseException) -> BaseException:
    """The worker's own exception inside Ray's wrappers (TrainingFailedError, RayTaskError):
    the first rank's error that a restart cannot fix, else the lowest failed rank's."""
    failures = getattr(exc, "worker_failures", None)
    if failures:
        from .launch.driver.failures import deterministic_failures, user_exception

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
