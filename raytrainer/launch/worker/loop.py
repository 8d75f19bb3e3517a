"""The function every Ray Train worker runs: one Runner for this rank."""
from __future__ import annotations

import json
from typing import Any

from ... import checkpoint as ckpt
from ... import storage
from ...config import Config
from ...config.loaders import add_import_roots
from ...runner import Runner
from . import stop_hook
from .console_hook import ConsoleFeedHook


class Secret:
    """Carries a value through Ray without letting it appear in reprs or logs."""

    def __init__(self, value: Any):
        self.value = value

    def __repr__(self) -> str:
        return "Secret(***)"


def announce_placement_group(link) -> None:
    """Called by rank 0 of a Ray Tune trial's run: tell the trial (through its mailbox actor,
    ``link``) which placement group holds the run, so the trial can free it when Tune stops
    the trial (:mod:`raytrainer.tune.trial`)."""
    import ray

    group = ray.util.get_current_placement_group()
    if group is not None:
        link.push.remote({"placement_group": group.id.hex()})


def _resume_for_this_attempt(spec: dict) -> bool | str:
    """A restarted worker group continues this run's newest committed checkpoint; the first
    attempt resumes what the driver chose (nothing, or a given checkpoint)."""
    if ckpt.list_checkpoints(spec["checkpoint_dir"], warn=False, timestamp=spec["timestamp"]):
        return True
    return spec["resume"]


def _runner_cfg(config: dict) -> Config:
    spec = config["spec"]
    cfg = Config(config["cfg"], filename=config["filename"])
    cfg["work_dir"] = spec["work_dir"]
    cfg["launcher"] = "ray"
    cfg["timestamp"] = spec["timestamp"]
    randomness = dict(cfg.get("randomness") or {})
    randomness["seed"] = spec["seed"]
    cfg["randomness"] = randomness
    cfg["storage"] = config["storage"].value
    if cfg.get("strategy"):
        strategy = dict(cfg["strategy"])
        strategy.setdefault("launcher", "ray")
        cfg["strategy"] = strategy  # else the runner picks DDP from model_wrapper_cfg
    if config["mode"] == "train":
        cfg["resume"] = _resume_for_this_attempt(spec)
    else:
        cfg["resume"] = False
        cfg["load_from"] = config["checkpoint"]
    logger_cfg = (cfg.get("default_hooks") or {}).get("logger") or {}
    report = dict(type="RayReportHook", interval_s=config["report_interval_s"],
                  log_interval=logger_cfg.get("interval", 10) if isinstance(logger_cfg, dict)
                  else 10)
    cfg["custom_hooks"] = list(cfg.get("custom_hooks") or []) + [report]
    return cfg


def train_loop_per_worker(config: dict) -> None:
    """Build this rank's Runner and train, validate or test (``config['mode']``).

    Rank 0 writes ``<log_dir>/result.json`` with the final metrics for the driver (and, when
    the driver asked the run to stop early, where it stopped: ``stopped``). An error
    reaches Ray (which logs and forwards it) with URL credentials removed from its message.
    """
    try:
        _run_rank(config)
    except BaseException as exc:
        storage.redact_exception(exc)
        raise


def _run_rank(config: dict) -> None:
    storage.set_storage_options(config["storage"].value)
    add_import_roots(config.get("import_roots") or [])  # custom_imports resolve as on the driver
    runner = Runner.from_cfg(_runner_cfg(config))
    if config.get("trial_link") is not None and runner.rank == 0:
        announce_placement_group(config["trial_link"])  # a Tune trial frees it when stopped
    if config.get("console"):
        runner.register_hook(ConsoleFeedHook(**config["console"]))
    mode = config["mode"]
    stopped = None
    if mode == "train":
        if config.get("stop_flag") is not None:  # the driver's SIGTERM/Ctrl-C reaches here
            runner.register_hook(stop_hook.StopHook(config["stop_flag"]))
            stopped = stop_hook.train(runner)
        else:
            runner.train()
        val_loop = runner.val_loop
        metrics = getattr(val_loop, "last_metrics", None) or {}
    elif mode == "val":
        metrics = runner.val()
    else:
        metrics = runner.test()
    if runner.rank == 0:
        last = runner.message_hub.get_info("last_ckpt")
        result = {"mode": mode, "metrics": metrics, "iter": runner.iter, "epoch": runner.epoch,
                  "last_checkpoint": last, "best_checkpoint": runner.message_hub.get_info(
                      "best_ckpt"), "resumed_from": runner.resumed_from,
                  "log_dir": runner.log_dir, "seed": runner.seed, "timestamp": runner.timestamp,
                  "stopped": stopped.to_dict() if stopped else None}
        storage.write_text(storage.join(runner.log_dir, "result.json"),
                           json.dumps(result, indent=1, default=str))
