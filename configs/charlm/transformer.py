# A byte-level transformer language model on Python's own stdlib sources (they ship with
# Python: no download). Validation perplexity falls from 256 (uniform over the byte values) to
# about 8.5 in 5 epochs, about a minute on 2 CPU cores. max_samples keeps the epochs short; set
# train_dataloader.dataset.max_samples=None to train on the whole ~320 KB train split.
#
# No strategy is set here, so the launcher picks it (one process with --launcher none, DDP on
# Ray workers); choose one on the command line instead, e.g.
#   --cfg-options strategy.type=DDPStrategy
#   --cfg-options strategy.type=FSDPStrategy "strategy.shard_modules=['Block']"
# The FSDP spelling as a config entry (FSDP2 with one shard unit per transformer Block):
#   strategy = dict(type='FSDPStrategy', shard_modules=['Block'])
_base_ = ["../_base_/default_runtime.py"]

# The context length (64) appears three times: model.block_size and both datasets' block_size.
model = dict(type="CharTransformer", vocab_size=256, block_size=64, embed_dim=128,
             num_layers=4, num_heads=4, mlp_ratio=4, dropout=0.0)

train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    dataset=dict(type="CharTextDataset", split="train", block_size=64, max_samples=2048),
    sampler=dict(type="DefaultSampler", shuffle=True),
    collate_fn=dict(type="default_collate"),
)
val_dataloader = dict(
    batch_size=64,
    num_workers=0,
    dataset=dict(type="CharTextDataset", split="val", block_size=64, max_samples=256),
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="default_collate"),
)
test_dataloader = val_dataloader
val_evaluator = dict(type="Perplexity")
test_evaluator = val_evaluator

# AdamW with gradient clipping: linear warm-up over the first 50 iterations, then a cosine
# decay that follows train_cfg.max_epochs.
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=3e-3, betas=(0.9, 0.99), weight_decay=0.01),
    clip_grad=dict(max_norm=1.0),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(type="CosineAnnealingLR", by_epoch=True, begin=0, eta_min=3e-4,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=5, val_interval=1)
val_cfg = dict()
test_cfg = dict()

default_hooks = dict(
    checkpoint=dict(type="CheckpointHook", interval=1, max_keep_ckpts=2,
                    save_best="perplexity", rule="less"),
)
work_dir = "./work_dirs/charlm_transformer"
randomness = dict(seed=0, deterministic=False)
