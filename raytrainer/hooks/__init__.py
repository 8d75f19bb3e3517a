"""Hooks: the Hook base class, priorities, and the built-in hooks."""
from .check_invalid_loss_hook import CheckInvalidLossHook
from .checkpoint_hook import CheckpointHook
from .early_stopping_hook import EarlyStoppingHook
from .ema_hook import EMAHook
from .empty_cache_hook import EmptyCacheHook
from .hook import Hook, Priority, get_priority
from .iter_timer_hook import IterTimerHook
from .live_lr_hook import LiveLrHook
from .logger_hook import LoggerHook
from .param_scheduler_hook import ParamSchedulerHook
from .profiler_hook import ProfilerHook
from .runtime_info_hook import RuntimeInfoHook
from .sampler_seed_hook import DistSamplerSeedHook
from .sync_buffers_hook import SyncBuffersHook

__all__ = ["Hook", "Priority", "get_priority", "CheckpointHook", "IterTimerHook", "LoggerHook",
           "ParamSchedulerHook", "RuntimeInfoHook", "DistSamplerSeedHook", "EMAHook",
           "EmptyCacheHook", "SyncBuffersHook", "ProfilerHook", "EarlyStoppingHook",
           "CheckInvalidLossHook", "LiveLrHook"]
