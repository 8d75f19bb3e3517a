# SGD with momentum: linear warm-up over the first 45 iterations and a cosine decay over the
# whole run (20 epochs). The cosine's `end` and `T_max` follow train_cfg.max_epochs, so
# `--cfg-options train_cfg.max_epochs=5` shortens the whole schedule.
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="SGD", lr=0.05, momentum=0.9, weight_decay=1e-4),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=45),
    dict(type="CosineAnnealingLR", by_epoch=True, begin=0, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=20, val_interval=5)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(enable=False, base_batch_size=32)
