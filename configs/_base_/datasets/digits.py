# scikit-learn's bundled handwritten digits: 1,438 train / 359 val images of 8x8 pixels.
train_dataloader = dict(
    batch_size=32,
    num_workers=0,
    dataset=dict(type="DigitsDataset", split="train"),
    sampler=dict(type="DefaultSampler", shuffle=True),
    collate_fn=dict(type="default_collate"),
)
val_dataloader = dict(
    batch_size=64,
    num_workers=0,
    dataset=dict(type="DigitsDataset", split="val"),
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="default_collate"),
)
test_dataloader = val_dataloader
val_evaluator = dict(type="Accuracy", topk=(1,))
test_evaluator = val_evaluator
