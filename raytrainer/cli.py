"""The ``raytrainer`` command: ``train``, ``val`` and ``test`` a config.

This module owns argument parsing, turning flags into config overrides, and turning failures
into a one-paragraph reason with a non-zero exit code. The work itself is the Runner's.
"""
from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from .config import Config, ConfigError, DictAction

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
    parser.add_argument("--debug", action="store_true",
                        help="print the full traceback when the command fails")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raytrainer", description="Train, validate and test MMEngine-style configs.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a config",
                                description="Train a config in this process.")
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
                                  description=f"Load a checkpoint's weights and {verb} it.")
        _add_common(sub)
        sub.add_argument("--checkpoint", required=True, metavar="CHECKPOINT",
                         help="checkpoint directory or .pth file (path or URL)")
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


def _print_metrics(title: str, metrics: dict | None) -> None:
    if not metrics:
        return
    text = "  ".join(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}"
                     for k, v in metrics.items())
    print(f"{title} {text}", flush=True)


def run(args: argparse.Namespace) -> int:
    from .runner import Runner

    cfg = load_config(args)
    runner = Runner.from_cfg(cfg)
    if args.command == "train":
        runner.train()
        val_loop = runner.val_loop
        _print_metrics("final val", getattr(val_loop, "last_metrics", None))
    elif args.command == "val":
        _print_metrics("val", runner.val())
    else:
        _print_metrics("test", runner.test())
    return EXIT_OK


def _reason(exc: BaseException) -> str:
    notes = " ".join(getattr(exc, "__notes__", []))
    text = f"{type(exc).__name__}: {exc}"
    return f"{text} ({notes})" if notes else text


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("raytrainer: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # every failure becomes one readable paragraph and exit code 1
        if args.debug:
            traceback.print_exc()
        print(f"raytrainer {args.command} failed: {_reason(exc)}", file=sys.stderr)
        if not args.debug:
            print("(run with --debug for the full traceback)", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
