"""Small Runner set-ups on the digits data shared by the runner tests."""
from __future__ import annotations

import itertools

from raytrainer.hooks import Hook

_names = itertools.count()


def digits_loader(split: str = "train", batch_size: int = 32, shuffle: bool = True,
                  sampler: str = "DefaultSampler") -> dict:
    return dict(batch_size=batch_size, dataset=dict(type="DigitsDataset", split=split),
                sampler=dict(type=sampler, shuffle=shuffle),
                collate_fn=dict(type="default_collate"))


def runner_kwargs(work_dir, *, epochs: int | None = 2, iters: int | None = None,
                  val: bool = True, **overrides) -> dict:
    """Keyword arguments for a small digits Runner (epoch-based unless ``iters`` is given)."""
    train_cfg = dict(by_epoch=False, max_iters=iters, val_interval=iters) if iters else \
        dict(by_epoch=True, max_epochs=epochs, val_interval=1)
    kwargs = dict(
        model=dict(type="MLPClassifier", hidden_dims=(32,)),
        work_dir=str(work_dir),
        train_dataloader=digits_loader(sampler="InfiniteSampler" if iters else "DefaultSampler"),
        train_cfg=train_cfg,
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.05, momentum=0.9)),
        randomness=dict(seed=0),
        experiment_name=f"test{next(_names)}",
        default_hooks=dict(logger=dict(type="LoggerHook", interval=20)),
    )
    if val:
        kwargs.update(val_dataloader=digits_loader("val", 64, False), val_cfg=dict(),
                      val_evaluator=dict(type="Accuracy"))
    kwargs.update(overrides)
    return kwargs


class CallRecorder(Hook):
    """Records every hook point it sees, in order."""

    def __init__(self, tag: str = "rec", priority="NORMAL"):
        self.tag = tag
        self.priority = priority
        self.calls: list[str] = []

    def _record(self, name):
        self.calls.append(name)


for _stage in Hook.stages:
    def _make(stage):
        def method(self, runner, *args, **kwargs):
            self._record(stage)
        return method
    setattr(CallRecorder, _stage, _make(_stage))
