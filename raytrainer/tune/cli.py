"""The ``raytrainer tune`` command: sweep a config's keys with Ray Tune.

This module owns the command's own flags and turning them into a call of
:func:`raytrainer.tune.sweep.tune`; the flags every run command shares, reading the config and
the Ray settings are the run request's (:mod:`raytrainer.launch.driver.request`); the sweep
itself is :mod:`raytrainer.tune.sweep`'s.
"""
from __future__ import annotations

import argparse

from ..launch.driver.request import (
    add_address_argument,
    add_config_arguments,
    add_output_arguments,
    ray_settings,
    read_config,
)

_EXAMPLES = """examples:
  raytrainer tune configs/digits/mlp.py --space configs/digits/lr_space.py --num-samples 4 \\
      --scheduler asha --metric val/accuracy/top1 --mode max --work-dir work_dirs/lr_sweep
  raytrainer tune configs/digits/mlp.py --space configs/digits/lr_space.py \\
      --work-dir work_dirs/lr_sweep --resume           # continue after the driver died
  raytrainer train work_dirs/lr_sweep/best_config.py  # train the best trial's config again"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``raytrainer tune`` on the CLI's sub-command parsers."""
    parser = subparsers.add_parser(
        "tune", help="sweep config keys with Ray Tune",
        description="Run a Ray Tune sweep: every trial is a full raytrainer run (its own Ray "
                    "Train workers, work_dir, checkpoints and fault tolerance) with the swept "
                    "config keys set. Flags override the config's `tune` section.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, work_dir_help="the sweep directory (path or URL); trial "
                                               "work_dirs, results and best_config.py go there")
    parser.add_argument("--space", metavar="SPACE.py",
                        help="Python file defining `space`: dotted config keys -> Ray Tune "
                             "distributions or constants (default: the config's tune.space)")
    parser.add_argument("--num-samples", type=int, metavar="N", help="trials to draw")
    parser.add_argument("--scheduler", choices=("asha", "pbt", "fifo"),
                        help="asha: stop poor trials early; pbt: population based training; "
                             "fifo (default): run every trial to the end")
    parser.add_argument("--search", metavar="NAME",
                        help="random (default), grid (tune.choice -> grid axes) or a Ray Tune "
                             "searcher such as optuna or hyperopt (when installed)")
    parser.add_argument("--metric", metavar="KEY", help="reported key to optimise, e.g. "
                                                       "val/accuracy/top1")
    parser.add_argument("--mode", choices=("max", "min"), help="maximise (default) or minimise")
    parser.add_argument("--workers-per-trial", type=int, metavar="N",
                        help="Ray Train workers of each trial (default: ray.num_workers)")
    parser.add_argument("--max-concurrent", type=int, metavar="N",
                        help="trials at once (default: as many as fit the cluster)")
    parser.add_argument("--resume", nargs="?", const=True, default=False, type=_resume_value,
                        metavar="auto",
                        help="continue the sweep in --work-dir: finished trials are kept, "
                             "unfinished ones continue from their latest committed checkpoint; "
                             "'--resume auto' starts the sweep when there is none yet (for "
                             "retried jobs)")
    parser.add_argument("--resume-errored", action="store_true",
                        help="with --resume, also run errored trials again")
    add_address_argument(parser)
    add_output_arguments(parser, verbose_help="also print Ray's own output")
    parser.set_defaults(handler=run)
    return parser


def _resume_value(text: str) -> str:
    if text != "auto":
        raise argparse.ArgumentTypeError(f"expected 'auto' or nothing, got {text!r}")
    return text


def run(args: argparse.Namespace) -> int:
    """Run the sweep; returns the exit code."""
    from .space import load_space  # these import Ray Tune: not for `raytrainer --help`
    from .sweep import tune

    cfg = read_config(args.config, args.cfg_options)
    settings = ray_settings(cfg, address=args.address)
    result = tune(cfg, load_space(args.space) if args.space else None, work_dir=args.work_dir,
                  settings=settings, verbose=args.verbose, num_samples=args.num_samples,
                  scheduler=args.scheduler, search=args.search, metric=args.metric,
                  mode=args.mode, workers_per_trial=args.workers_per_trial,
                  max_concurrent=args.max_concurrent, resume=args.resume or None,
                  resume_errored=args.resume_errored or None)
    if result.best is not None:
        print(f"best trial {result.best['trial_id']}: {result.best}\n"
              f"best config: {result.sweep_dir}/best_config.py", flush=True)
    return 0
