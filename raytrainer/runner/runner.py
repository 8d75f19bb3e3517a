"""The Runner: one rank's view of a training run, with MMEngine's constructor and methods.

The runner wires components together (model, loops, optim wrapper, schedulers, evaluators,
hooks), owns the run's identity on this rank (timestamp, seed, work_dir, log_dir) and its
training state (what goes into a checkpoint). It is the top of the engine's layers: building
details live in ``build.py``, the seed, logger and visualizer in ``services.py``, the loops and
their views in ``run_loops.py``, hook ordering in ``raytrainer.hooks.registration``, the
checkpoints in ``raytrainer.checkpoint`` (handed this runner as its ``TrainingParts``), rank,
device placement and wrapping in the strategy.
"""
from __future__ import annotations

import copy
import inspect
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from .. import dist
from .. import storage as store
from ..checkpoint.manager import CheckpointManager
from ..checkpoint.parts import LoadRequest
from ..config import Config, warn_ignored, warn_ignored_top_level
from ..dataset.builder import build_dataloader
from ..evaluator import Evaluator
from ..evaluator.evaluator import build_evaluator
from ..hooks.hook import Hook
from ..hooks.registration import HookList
from ..logging import MessageHub
from ..model.summary import model_summary
from ..model.wrappers import unwrap_model
from ..optim import OptimWrapper, OptimWrapperDict, build_optim_wrapper
from ..registry import (
    MODELS,
    RUNNERS,
    build_from_cfg,
    import_modules_from_strings,
)
from ..utils.run_identity import experiment_name_for
from . import build, services, validation
from .lease import runner_lease
from .run_loops import RunLoops

_TRAIN_KEYS = ("train_dataloader", "train_cfg", "optim_wrapper")
_VAL_KEYS = ("val_dataloader", "val_cfg", "val_evaluator")
_TEST_KEYS = ("test_dataloader", "test_cfg", "test_evaluator")


def _check_all_or_none(values: dict[str, Any]) -> None:
    given = [k for k, v in values.items() if v is not None]
    if given and len(given) != len(values):
        missing = [k for k in values if k not in given]
        raise ValueError(f"{', '.join(values)} must be given together; got {given} but not "
                         f"{missing}")


@RUNNERS.register_module()
class Runner(RunLoops):
    """Train, validate and test a model on this rank.

    Components may be given built or as config dicts; they are built when first needed (a
    test-only run never builds the optimizer). Arguments follow MMEngine's Runner; raytrainer
    adds ``strategy`` (device placement/wrapping), ``timestamp`` (decided by the Ray driver so
    every rank and every restart agrees) and ``storage`` (fsspec options for URLs).

    Args:
        model: A model or its config (registered in ``MODELS``).
        work_dir: Where logs and checkpoints go: a path or a storage URL.
        train_dataloader, val_dataloader, test_dataloader: DataLoaders or configs.
        train_cfg: ``dict(by_epoch=True, max_epochs=..)`` or ``dict(by_epoch=False,
            max_iters=..)`` plus ``val_begin``/``val_interval``, or a loop config with ``type``.
        val_cfg, test_cfg: Loop configs (``dict()`` for the default loops).
        auto_scale_lr: ``dict(enable=True, base_batch_size=N)``.
        optim_wrapper: An OptimWrapper or its config.
        param_scheduler: A scheduler config, a list of them, or per-optimizer dicts.
        val_evaluator, test_evaluator: Evaluators or metric configs.
        default_hooks: Overrides of the default hooks by name (None disables one).
        custom_hooks: Extra hooks or hook configs.
        data_preprocessor: Preprocessor config used when ``model`` is a config without one.
        load_from: Checkpoint whose weights are loaded before training/testing.
        load_strict: Whether ``load_from`` must match the model's keys exactly (default);
            False loads the matching keys and warns about the others. A checkpoint none of
            whose keys match is refused either way.
        resume: True/'auto' resumes from the latest committed checkpoint in ``work_dir``; a
            location resumes from that checkpoint.
        launcher: ``'none'`` (one process) or ``'pytorch'`` (torchrun env variables).
        env_cfg: ``dict(cudnn_benchmark=.., dist_cfg=dict(backend=..))``; other keys warn once.
        log_processor: LogProcessor config.
        log_level: Logger level name.
        visualizer: Visualizer or its config.
        default_scope: Accepted for compatibility (raytrainer has one registry scope); a scope
            other than ``'raytrainer'``/``'mmengine'`` warns once.
        randomness: ``dict(seed=None|int, deterministic=bool, diff_rank_seed=bool)``.
        experiment_name: Name of the run; defaults to ``<config name>_<timestamp>``.
        cfg: The full config, dumped to the work_dir and stored in checkpoints.
        strategy: A strategy or its config; defaults from ``launcher`` (``DDPStrategy`` for
            ``'ray'``/``'pytorch'``, taking MMEngine's ``model_wrapper_cfg`` and
            ``find_unused_parameters`` into account).
        model_wrapper_cfg: MMEngine's DDP wrapper config
            (``dict(type='MMDistributedDataParallel', find_unused_parameters=True, ...)``);
            its options go to the default ``DDPStrategy``.
        find_unused_parameters: MMEngine's top-level config key of the same name.
        timestamp: The run's timestamp; decided here (rank 0) when None. When it is given (the
            Ray driver gives it), ``resume=True`` considers only checkpoints of this run.
        storage: fsspec options for remote URLs (``endpoint_url``, ``profile`` ...).
    """

    def __init__(self, model: nn.Module | dict, work_dir: str,
                 train_dataloader: DataLoader | dict | None = None,
                 val_dataloader: DataLoader | dict | None = None,
                 test_dataloader: DataLoader | dict | None = None,
                 train_cfg: dict | None = None, val_cfg: dict | None = None,
                 test_cfg: dict | None = None, auto_scale_lr: dict | None = None,
                 optim_wrapper: Any = None, param_scheduler: Any = None,
                 val_evaluator: Any = None, test_evaluator: Any = None,
                 default_hooks: dict | None = None, custom_hooks: list | None = None,
                 data_preprocessor: nn.Module | dict | None = None, load_from: str | None = None,
                 resume: bool | str = False, launcher: str = "none", env_cfg: dict | None = None,
                 log_processor: dict | None = None, log_level: str | int = "INFO",
                 visualizer: Any = None, default_scope: str | None = "raytrainer",
                 randomness: dict | None = None, experiment_name: str | None = None,
                 cfg: Config | dict | None = None, strategy: Any = None,
                 timestamp: str | None = None, storage: dict | None = None,
                 model_wrapper_cfg: dict | None = None, find_unused_parameters: bool = False,
                 load_strict: bool = True):
        validation.check_runner_args(dict(
            train_cfg=train_cfg, default_hooks=default_hooks, custom_hooks=custom_hooks,
            optim_wrapper=optim_wrapper, train_dataloader=train_dataloader,
            val_dataloader=val_dataloader, test_dataloader=test_dataloader, model=model,
            val_evaluator=val_evaluator, test_evaluator=test_evaluator, load_strict=load_strict,
            randomness=randomness))
        validation.check_launcher(strategy, model_wrapper_cfg, launcher)
        self._set_config(cfg, storage, work_dir)
        _check_all_or_none(dict(zip(_TRAIN_KEYS, (train_dataloader, train_cfg, optim_wrapper))))
        _check_all_or_none(dict(zip(_VAL_KEYS, (val_dataloader, val_cfg, val_evaluator))))
        _check_all_or_none(dict(zip(_TEST_KEYS, (test_dataloader, test_cfg, test_evaluator))))
        if param_scheduler is not None and optim_wrapper is None:
            raise ValueError("param_scheduler needs an optim_wrapper")
        self._train_dataloader, self._train_loop = train_dataloader, train_cfg
        self._val_dataloader, self._val_loop, self._val_evaluator = \
            val_dataloader, val_cfg, val_evaluator
        self._test_dataloader, self._test_loop, self._test_evaluator = \
            test_dataloader, test_cfg, test_evaluator
        self.optim_wrapper = optim_wrapper
        self.param_schedulers = param_scheduler
        self.auto_scale_lr = auto_scale_lr
        self.lr_scale_factor: float | None = None
        self.default_scope = default_scope
        if default_scope not in (None, "raytrainer", "mmengine"):
            warn_ignored("default_scope", default_scope)
        self._lease = None  # the work_dir lease while training (rank 0, not on Ray)
        self._set_environment(launcher, env_cfg, strategy, model_wrapper_cfg,
                              find_unused_parameters)
        self._set_identity(timestamp, randomness, experiment_name)
        self.checkpoints = CheckpointManager(self, LoadRequest(
            resume=resume, load_from=load_from, load_strict=load_strict,
            own_timestamp=self._timestamp if timestamp is not None else None,
            training=train_cfg is not None))
        self._set_services(log_level, visualizer, log_processor)
        self._set_model(model, data_preprocessor)
        self._hook_list = HookList()
        self.register_hooks(default_hooks, custom_hooks)
        self.logger.info("Hooks will run in this order:\n" + self.get_hooks_info(),
                         extra={"file_only": True})  # long; the console shows progress
        self.dump_config()

    @classmethod
    def from_cfg(cls, cfg: Config | dict) -> Runner:
        """Build a runner from a full config (as ``Config.fromfile`` returns)."""
        cfg = cfg if isinstance(cfg, Config) else Config(cfg)
        custom_imports = cfg.get("custom_imports")
        if custom_imports:
            import_modules_from_strings(**custom_imports)
        validation.warn_unknown_keys(cfg)
        warn_ignored_top_level(cfg)
        validation.check_ray_section(cfg.get("ray"))
        if "work_dir" not in cfg:
            raise KeyError("the config has no 'work_dir'; set it in the file or pass "
                           "--work-dir")
        kwargs = {k: copy.deepcopy(cfg[k]) for k in _constructor_keys(cls)
                  if k in cfg and cfg[k] is not None}
        return cls(cfg=cfg, **kwargs)

    # ---- identity and state -------------------------------------------------------------
    @property
    def experiment_name(self) -> str:
        return self._experiment_name

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def work_dir(self) -> str:
        return self._work_dir

    @property
    def log_dir(self) -> str:
        return self._log_dir

    @property
    def timestamp(self) -> str:
        return self._timestamp

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def deterministic(self) -> bool:
        return bool(self._randomness_cfg.get("deterministic", False))

    @property
    def launcher(self) -> str:
        return self._launcher

    @property
    def lease(self) -> Any:
        """The work_dir lease while this process trains and holds it (rank 0, not on Ray)."""
        return self._lease

    @property
    def distributed(self) -> bool:
        return self.strategy.distributed

    @property
    def rank(self) -> int:
        return self.strategy.rank

    @property
    def world_size(self) -> int:
        return self.strategy.world_size

    @property
    def hooks(self) -> list[Hook]:
        return self._hook_list.hooks

    # ---- set-up -------------------------------------------------------------------------
    def _set_config(self, cfg: Config | dict | None, storage: dict | None,
                    work_dir: str) -> None:
        cfg = cfg if isinstance(cfg, Config) else Config(cfg or {})
        # Credentials in the config reach fsspec here and nowhere else: the runner's copy of the
        # config (dumped, logged, stored in checkpoints) has them replaced by '***'.
        self.cfg = Config(store.redact(cfg), filename=cfg.filename)
        self._storage_options = dict(storage or {})
        if self._storage_options:
            store.set_storage_options(self._storage_options)
        self._work_dir = str(work_dir) if storage_is_url(work_dir) else \
            os.path.abspath(str(work_dir))

    def _set_environment(self, launcher: str, env_cfg: dict | None, strategy: Any,
                         model_wrapper_cfg: dict | None, find_unused_parameters: bool) -> None:
        self._launcher = launcher
        self._env_cfg = dict(env_cfg or {})
        for key in sorted(set(self._env_cfg) - {"cudnn_benchmark", "dist_cfg"}):
            warn_ignored(f"env_cfg.{key}", self._env_cfg[key],
                         why="raytrainer reads env_cfg.cudnn_benchmark and env_cfg.dist_cfg only")
        backend = self._env_cfg.get("dist_cfg", {}).get("backend")
        self.strategy = build.build_strategy(strategy, launcher, model_wrapper_cfg,
                                             find_unused_parameters, backend)
        self.strategy.setup(self._env_cfg)

    def _set_identity(self, timestamp: str | None, randomness: dict | None,
                      experiment_name: str | None) -> None:
        """Timestamp, seed, name and log folder: the same on every rank (rank 0 decides)."""
        self._timestamp = services.shared(timestamp or time.strftime("%Y%m%d_%H%M%S"))
        self._randomness_cfg = dict(randomness or {})
        self._seed = services.decide_seed(self._randomness_cfg, self.cfg, self.rank)
        self._experiment_name = experiment_name_for(experiment_name, self.cfg.filename,
                                                    self._timestamp)
        self._log_dir = store.join(self._work_dir, self._timestamp)
        if self.rank == 0:
            store.makedirs(self._log_dir)
        dist.barrier()

    def _set_services(self, log_level: str | int, visualizer: Any,
                      log_processor: dict | None) -> None:
        name = self._experiment_name
        self.logger = services.build_logger(name, self._log_dir, self._timestamp, self.rank,
                                            log_level)
        self.logger.info(f"run {name}: work_dir={self._work_dir} "
                         f"rank={self.rank}/{self.world_size} device={self.strategy.device} "
                         f"seed={self._seed} (randomness={self._randomness_cfg})")
        self.message_hub = MessageHub.get_instance(name)
        self.visualizer = services.build_visualizer(visualizer, name, self._log_dir)
        if self.cfg:
            self.visualizer.add_config(self.cfg)
        self.log_processor = services.build_log_processor(log_processor)

    def _set_model(self, model: nn.Module | dict, data_preprocessor: Any) -> None:
        if isinstance(model, Mapping) and data_preprocessor is not None:
            model = dict(model)
            model.setdefault("data_preprocessor", data_preprocessor)
        with self.strategy.build_context():
            built = self.build_model(model)
        self.model = self.strategy.prepare_model(built)
        self._model_name = type(unwrap_model(self.model)).__name__

    def dump_config(self) -> None:
        """Write the resolved config (seed included) to the work_dir, on rank 0."""
        if self.rank == 0 and self.cfg:
            services.dump_config(self.cfg, self._work_dir, self._timestamp, self.logger)

    # ---- building -----------------------------------------------------------------------
    def build_model(self, model: nn.Module | dict) -> nn.Module:
        if isinstance(model, nn.Module):
            return model
        if isinstance(model, Mapping):
            return build_from_cfg(model, MODELS, key="model")
        raise TypeError(f"model must be an nn.Module or a config dict, got {type(model).__name__}")

    def build_dataloader(self, dataloader: DataLoader | dict, key: str = "dataloader",
                         seed: int | None = None, diff_rank_seed: bool | None = None):
        if diff_rank_seed is None:
            diff_rank_seed = self._randomness_cfg.get("diff_rank_seed", False)
        return build_dataloader(dataloader, seed=self._seed if seed is None else seed,
                                diff_rank_seed=diff_rank_seed, key=key)

    def build_evaluator(self, evaluator: Any, key: str = "evaluator") -> Evaluator:
        """An Evaluator from an Evaluator, a metric (config), a list of them, or an evaluator
        config with ``metrics`` (``dict(type='Evaluator', metrics=[...])``)."""
        return build_evaluator(evaluator, key)

    def build_optim_wrapper(self, optim_wrapper: Any):
        if isinstance(optim_wrapper, (OptimWrapper, OptimWrapperDict)):
            return optim_wrapper
        return build_optim_wrapper(self.model, optim_wrapper)

    def build_param_scheduler(self, scheduler: Any):
        return build.build_param_schedulers(scheduler, self.optim_wrapper, self)

    # ---- running ------------------------------------------------------------------------
    def train(self) -> nn.Module:
        """Train (validating as ``train_cfg`` says); returns the trained model."""
        if self._train_loop is None:
            raise RuntimeError("train() needs train_dataloader, train_cfg and optim_wrapper")
        inner = unwrap_model(self.model)
        if not hasattr(inner, "train_step"):
            raise TypeError(f"{type(inner).__name__} has no train_step; derive it from "
                            "raytrainer.model.BaseModel")
        loop = self.train_loop
        self.optim_wrapper = self.build_optim_wrapper(self.optim_wrapper)
        self.logger.info(model_summary(inner, sharded=self.strategy.sharded_state))
        self.lr_scale_factor = build.scale_lr(self, self.optim_wrapper, self.auto_scale_lr)
        if self.param_schedulers is not None:
            self.param_schedulers = self.build_param_scheduler(self.param_schedulers)
        if self._val_loop is not None:
            self._val_loop = self.build_val_loop(self._val_loop)
        self.call_hook("before_run")
        self._init_model_weights()
        self.load_or_resume()
        self.optim_wrapper.initialize_count_status(self.model, loop.iter, loop.max_iters)
        with runner_lease(self) as lease:  # one live run per work_dir
            self._lease = lease
            model = loop.run()
            self.checkpoints.wait()
        self.call_hook("after_run")
        return model

    def val(self) -> dict:
        """Validate once; returns the metrics."""
        if self._val_loop is None:
            raise RuntimeError("val() needs val_dataloader, val_cfg and val_evaluator")
        self._val_loop = self.build_val_loop(self._val_loop)
        self.call_hook("before_run")
        self.load_or_resume()
        metrics = self.val_loop.run()
        self.call_hook("after_run")
        return metrics

    def test(self) -> dict:
        """Test once; returns the metrics."""
        if self._test_loop is None:
            raise RuntimeError("test() needs test_dataloader, test_cfg and test_evaluator")
        self._test_loop = self.build_test_loop(self._test_loop)
        self.call_hook("before_run")
        self.load_or_resume()
        metrics = self.test_loop.run()
        self.call_hook("after_run")
        return metrics

    def _init_model_weights(self) -> None:
        model = unwrap_model(self.model)
        if hasattr(model, "init_weights"):
            model.init_weights()

    # ---- checkpoints (MMEngine's methods; the work is done by ``self.checkpoints``) -------
    @property
    def resumed_from(self) -> str | None:
        """The checkpoint this run resumed from, if any."""
        return self.checkpoints.resumed_from

    def save_checkpoint(self, out_dir: str, filename: str, file_client_args=None,
                        save_optimizer: bool = True, save_param_scheduler: bool = True,
                        meta: dict | None = None, by_epoch: bool = True, backend_args=None,
                        asynchronous: bool = False,
                        on_committed: Callable[[str], None] | None = None) -> str:
        """Save the training state as checkpoint ``filename`` under ``out_dir`` (every rank);
        returns its location. See :meth:`raytrainer.checkpoint.CheckpointManager.save`."""
        for name, value in (("file_client_args", file_client_args),
                            ("backend_args", backend_args)):
            if value is not None:
                warn_ignored(f"save_checkpoint.{name}", value)
        return self.checkpoints.save(out_dir, filename, save_optimizer, save_param_scheduler,
                                     meta, by_epoch, asynchronous, on_committed)

    def load_checkpoint(self, filename: str, map_location: str | torch.device = "cpu",
                        strict: bool = False,
                        revise_keys: Sequence[tuple[str, str]] = ((r"^module\.", ""),),
                        weights_only: bool = True) -> dict:
        """Load model weights from a checkpoint (ours, full or sharded; an MMEngine ``.pth``; a
        state dict); returns the checkpoint dict."""
        return self.checkpoints.load(filename, map_location, strict, revise_keys, weights_only)

    def resume(self, filename: str, resume_optimizer: bool = True,
               resume_param_scheduler: bool = True, map_location: str = "default") -> None:
        """Restore the complete training state from a checkpoint and continue from it."""
        if map_location not in ("default", "cpu"):
            warn_ignored("resume.map_location", map_location)
        self.checkpoints.resume(filename, resume_optimizer, resume_param_scheduler,
                                map_location)

    def load_or_resume(self) -> None:
        """Resume (``resume``) or load ``load_from``, once per run (MMEngine's method)."""
        self.checkpoints.load_or_resume()

    def wait_for_checkpoint(self) -> None:
        """Wait for a background checkpoint write; raise if it failed."""
        self.checkpoints.wait()

    # ---- hooks --------------------------------------------------------------------------
    def call_hook(self, fn_name: str, **kwargs) -> None:
        """Call ``fn_name`` on every hook that implements it, in priority order."""
        for method in self._hook_list.methods(fn_name):
            method(self, **kwargs)

    def register_hook(self, hook: Hook | dict, priority: int | str | None = None) -> None:
        """Insert a hook after every registered hook of the same or higher priority."""
        self._hook_list.insert(hook, priority)

    def register_default_hooks(self, hooks: dict | None = None) -> None:
        self._hook_list.insert_defaults(hooks)

    def register_custom_hooks(self, hooks: list | None) -> None:
        self._hook_list.insert_custom(hooks)

    def register_hooks(self, default_hooks: dict | None = None,
                       custom_hooks: list | None = None) -> None:
        self.register_default_hooks(default_hooks)
        self.register_custom_hooks(custom_hooks)

    def get_hooks_info(self) -> str:
        return self._hook_list.info()


def _constructor_keys(cls: type) -> list[str]:
    """The keyword arguments of ``cls.__init__`` that a config may set (all but ``cfg``)."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [name for name, param in inspect.signature(cls.__init__).parameters.items()
            if param.kind in kinds and name not in ("self", "cfg")]


def storage_is_url(location: Any) -> bool:
    return store.is_url(str(location))
