"""The run request: what one ``raytrainer train|val|test`` command line asks for.

This module owns, once for every command that runs a config:

- the flags those commands share (the config, ``--work-dir``, ``--cfg-options``, ``--address``,
  ``--debug``, ``--verbose``; ``raytrainer tune`` declares its own flags around them) and the
  ``train``/``val``/``test`` parsers;
- reading the config with the command line's overrides (``--cfg-options``, ``--work-dir``, the
  train flags, ``--checkpoint``);
- mapping the flags onto the run's :class:`~raytrainer.config.ray_settings.RaySettings`.

The CLI runs a :class:`RunRequest`; ``raytrainer k8s`` builds the same request from the command
a manifest runs, so a manifest is checked against exactly what the CLI would run. Nothing here
starts Ray or builds a Runner.
"""
from __future__ import annotations

import argparse
import functools
from collections.abc import Mapping
from dataclasses import dataclass

from ...config import Config, ConfigError, DictAction
from ...config.loaders import SUPPORTED_SUFFIXES
from ...config.ray_settings import RaySettings

RUN_COMMANDS = ("train", "val", "test")

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


def add_config_arguments(parser: argparse.ArgumentParser, *, work_dir_help: str) -> None:
    """The config and its overrides: ``CONFIG``, ``--work-dir``, ``--cfg-options``."""
    parser.add_argument("config", help="config file (.py/.json/.yaml), a path or storage URL")
    parser.add_argument("--work-dir", help=work_dir_help)
    parser.add_argument("--cfg-options", nargs="+", action=DictAction, default={},
                        metavar="KEY=VALUE",
                        help="override config keys, e.g. optim_wrapper.optimizer.lr=0.1 "
                             "train_cfg.max_epochs=5 'model.hidden_dims=[128,128]'")


def add_address_argument(parser: argparse.ArgumentParser) -> None:
    """``--address``: the Ray cluster to join."""
    parser.add_argument("--address", metavar="ADDR",
                        help="Ray cluster to join: 'auto' (the cluster `ray start` made on this "
                             "machine), HOST:PORT or ray://HOST:PORT; default: RAY_ADDRESS, "
                             "else a private local instance started for this run")


def add_output_arguments(parser: argparse.ArgumentParser, *, verbose_help: str) -> None:
    """What the command prints: ``--debug``, ``--verbose``."""
    parser.add_argument("--debug", action="store_true",
                        help="print the full traceback when the command fails")
    parser.add_argument("--verbose", action="store_true", help=verbose_help)


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, work_dir_help="where logs and checkpoints go (path or URL); "
                                               "overrides the config's work_dir")
    parser.add_argument("--launcher", choices=("ray", "none"), default="ray",
                        help="ray (default): one Runner per Ray Train worker, on a local Ray "
                             "instance or the cluster given by --address/RAY_ADDRESS; none: "
                             "one Runner in this process, without Ray")
    parser.add_argument("--num-workers", type=int, metavar="N",
                        help="number of Ray Train workers (ranks); overrides ray.num_workers")
    parser.add_argument("--gpu", action="store_true",
                        help="one GPU per worker (NCCL); sets ray.use_gpu=True")
    add_address_argument(parser)
    add_output_arguments(parser, verbose_help="also print Ray's own output (every worker's log "
                                              "lines, Ray Train's internal messages); default: "
                                              "rank 0's lines only")


def add_run_parsers(subparsers: argparse._SubParsersAction) -> None:
    """Register ``train``, ``val`` and ``test`` on the ``raytrainer`` command's subparsers."""
    train = subparsers.add_parser("train", help="train a config",
                                  description="Train a config on Ray Train (or in this process "
                                              "with --launcher none).",
                                  epilog=_EXAMPLES["train"],
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_run_arguments(train)
    train.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CHECKPOINT",
                       action=_Resume,
                       help="resume: without a value from the latest committed checkpoint in "
                            "the work_dir; with a value from that checkpoint")
    train.error = functools.partial(_train_error, train)  # type: ignore[method-assign]
    train.add_argument("--load-from", metavar="CHECKPOINT",
                       help="initialise the model weights from a checkpoint (no training state)")
    train.add_argument("--seed", type=int, help="set randomness.seed")
    train.add_argument("--deterministic", action="store_true",
                       help="set randomness.deterministic=True")
    train.add_argument("--auto-scale-lr", action="store_true",
                       help="enable auto_scale_lr (needs auto_scale_lr.base_batch_size)")
    for name, verb in (("val", "validate"), ("test", "test")):
        sub = subparsers.add_parser(name, help=f"{verb} a checkpoint",
                                    description=f"Load a checkpoint's weights and {verb} it.",
                                    epilog=_EXAMPLES[name],
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        _add_run_arguments(sub)
        sub.add_argument("--checkpoint", required=True, metavar="CHECKPOINT",
                         help="checkpoint directory or .pth file (path or URL)")


class _Resume(argparse.Action):
    """``--resume [CHECKPOINT]`` that remembers its value on the parser, so that a missing
    config can be explained when ``--resume`` took it (:func:`_train_error`)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, self.const if values is None else values)
        parser.resume_value = values


def _train_error(parser: argparse.ArgumentParser, message: str) -> None:
    """``train``'s usage errors; ``train --resume CONFIG`` with no config after it says that
    ``--resume`` took the config as its checkpoint, and shows the right order."""
    taken = getattr(parser, "resume_value", None)
    if taken and "config" in message and str(taken).endswith(SUPPORTED_SUFFIXES):
        message = (f"--resume took {taken} as the checkpoint to resume from, and no config "
                   f"follows it; the config comes first: raytrainer train {taken} --resume "
                   "(the latest checkpoint) or raytrainer train "
                   f"{taken} --resume CHECKPOINT")
    argparse.ArgumentParser.error(parser, message)


def read_config(location: str, cfg_options: Mapping | None) -> Config:
    """The config file with the command line's ``--cfg-options`` merged in."""
    cfg = Config.fromfile(location)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def ray_settings(cfg: Config, *, num_workers: int | None = None, gpu: bool = False,
                 address: str | None = None) -> RaySettings:
    """The config's ``ray`` section with the flags that override it (``--num-workers``,
    ``--gpu``, ``--address``; a flag not given keeps the config's value)."""
    return RaySettings.from_config(cfg.get("ray"), num_workers=num_workers,
                                   use_gpu=True if gpu else None, address=address)


def run_settings(cfg: Config, args: argparse.Namespace) -> RaySettings:
    """The Ray settings of a ``train``/``val``/``test`` command's run of ``cfg``."""
    return ray_settings(cfg, num_workers=args.num_workers, gpu=args.gpu, address=args.address)


def load_config(args: argparse.Namespace) -> Config:
    """Read the config of a ``train``/``val``/``test`` command and apply its overrides."""
    cfg = read_config(args.config, args.cfg_options)
    if args.work_dir:
        cfg["work_dir"] = args.work_dir
    if "work_dir" not in cfg or not cfg["work_dir"]:
        raise ConfigError(f"{args.config} sets no work_dir; pass --work-dir")
    if args.command == "train":
        _apply_train_flags(cfg, args)
    else:
        cfg["load_from"] = args.checkpoint
        cfg["resume"] = False
    return cfg


def _apply_train_flags(cfg: Config, args: argparse.Namespace) -> None:
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


@dataclass(frozen=True)
class RunRequest:
    """One ``train``/``val``/``test`` run, as a command line asks for it.

    Attributes:
        command: ``'train'``, ``'val'`` or ``'test'``.
        cfg: The config with every override applied.
        checkpoint: What ``val``/``test`` evaluate (None for ``train``).
        settings: The run's Ray settings; None with ``--launcher none`` (one Runner in this
            process).
    """

    command: str
    cfg: Config
    checkpoint: str | None
    settings: RaySettings | None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RunRequest:
        """Load the config and map the flags; the config's errors come first.

        Raises:
            ConfigError: A config without a work_dir, a flag the config cannot take, Ray flags
                with ``--launcher none``, a bad ``ray`` section.
        """
        cfg = load_config(args)
        checkpoint = None if args.command == "train" else args.checkpoint
        if args.launcher == "none":
            if args.num_workers not in (None, 1) or args.gpu or args.address:
                raise ConfigError("--num-workers, --gpu and --address need --launcher ray")
            return cls(args.command, cfg, checkpoint, None)
        return cls(args.command, cfg, checkpoint, run_settings(cfg, args))


__all__ = ["RUN_COMMANDS", "RunRequest", "add_address_argument", "add_config_arguments",
           "add_output_arguments", "add_run_parsers", "load_config", "ray_settings",
           "read_config", "run_settings"]
