# Runtime defaults shared by the example configs.
default_scope = "raytrainer"
default_hooks = dict(
    runtime_info=dict(type="RuntimeInfoHook"),
    timer=dict(type="IterTimerHook"),
    sampler_seed=dict(type="DistSamplerSeedHook"),
    logger=dict(type="LoggerHook", interval=10),
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(type="CheckpointHook", interval=1, max_keep_ckpts=3),
)
env_cfg = dict(cudnn_benchmark=False)  # dist_cfg.backend: nccl on GPU, gloo on CPU by default
log_processor = dict(window_size=10, by_epoch=True)
log_level = "INFO"
load_from = None
resume = False
randomness = dict(seed=None, deterministic=False)
# Ray Train: ranks, resources and restarts (CLI flags --num-workers/--gpu/--address override).
# The backend follows use_gpu (nccl with GPUs, gloo without) unless `backend` is set here.
ray = dict(num_workers=2, use_gpu=False, max_failures=3)
