"""The same config and seed train to the same per-iteration loss and lr on MMEngine 0.10.7.

MMEngine is a test-only dependency; both engines run in this process on the digits data with
their own Runner, model base class, samplers, optimizer wrapper and schedulers.
"""
from __future__ import annotations

import logging

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

mmengine = pytest.importorskip("mmengine")
from mmengine.hooks import Hook as MMHook  # noqa: E402
from mmengine.model import BaseModel as MMBaseModel  # noqa: E402
from mmengine.runner import Runner as MMRunner  # noqa: E402

from raytrainer import storage  # noqa: E402
from raytrainer.checkpoint import load_checkpoint  # noqa: E402
from raytrainer.dataset import DigitsDataset  # noqa: E402
from raytrainer.hooks import Hook  # noqa: E402
from raytrainer.model import BaseModel  # noqa: E402
from raytrainer.runner import Runner  # noqa: E402


def _layers() -> nn.Sequential:
    return nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10))


class OurNet(BaseModel):
    def __init__(self):
        super().__init__()
        self.net = _layers()

    def forward(self, inputs, data_samples=None, mode="tensor"):
        logits = self.net(inputs)
        if mode == "loss":
            return {"loss": F.cross_entropy(logits, data_samples)}
        return logits, data_samples


class TheirNet(MMBaseModel):
    def __init__(self):
        super().__init__()
        self.net = _layers()

    def forward(self, inputs, data_samples=None, mode="tensor"):
        logits = self.net(inputs)
        if mode == "loss":
            return {"loss": F.cross_entropy(logits, data_samples)}
        return logits, data_samples


def _recorder(base):
    class Recorder(base):
        priority = "LOWEST"

        def __init__(self):
            self.records = []

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            self._lr = runner.optim_wrapper.get_lr()["lr"][0]

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            self.records.append((runner.iter, float(outputs["loss"].detach()), self._lr))

    return Recorder()


def _common_cfg(by_epoch: bool) -> dict:
    train = DigitsDataset("train")
    loader = dict(batch_size=32, dataset=train, collate_fn=dict(type="default_collate"))
    if by_epoch:
        loader["sampler"] = dict(type="DefaultSampler", shuffle=True)
        train_cfg = dict(by_epoch=True, max_epochs=3)
        schedulers = [
            dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=20),
            dict(type="CosineAnnealingLR", by_epoch=True, begin=1, end=3, T_max=2,
                 convert_to_iter_based=True)]
    else:
        loader["sampler"] = dict(type="InfiniteSampler", shuffle=True)
        train_cfg = dict(by_epoch=False, max_iters=101)
        schedulers = [
            dict(type="LinearLR", start_factor=0.2, by_epoch=False, begin=0, end=10),
            dict(type="MultiStepLR", by_epoch=False, milestones=[40, 70], gamma=0.5)]
    return dict(
        train_dataloader=loader, train_cfg=train_cfg,
        optim_wrapper=dict(type="OptimWrapper", accumulative_counts=2,
                           clip_grad=dict(max_norm=1.0),
                           optimizer=dict(type="SGD", lr=0.2, momentum=0.9, weight_decay=1e-4)),
        param_scheduler=schedulers, randomness=dict(seed=2024))


def _run_ours(tmp_path, by_epoch: bool):
    recorder = _recorder(Hook)
    runner = Runner(model=dict(type=OurNet), work_dir=str(tmp_path / "ours"),
                    default_hooks=dict(checkpoint=None, logger=None),
                    custom_hooks=[recorder], experiment_name="parity_ours",
                    **_common_cfg(by_epoch))
    model = runner.train()
    return recorder.records, model


def _run_theirs(tmp_path, by_epoch: bool):
    torch.manual_seed(12345)  # anything left over from other tests must not matter
    recorder = _recorder(MMHook)
    runner = MMRunner(model=dict(type=TheirNet), work_dir=str(tmp_path / "theirs"),
                      default_hooks=dict(checkpoint=None, logger=None),
                      custom_hooks=[recorder], log_level=logging.WARNING,
                      experiment_name=f"parity_theirs_{by_epoch}", default_scope="mmengine",
                      **_common_cfg(by_epoch))
    model = runner.train()
    return recorder.records, model


@pytest.mark.parametrize("by_epoch", [True, False], ids=["epoch_based", "iter_based"])
def test_same_loss_and_lr_per_iteration_as_mmengine(tmp_path, by_epoch):
    theirs, their_model = _run_theirs(tmp_path, by_epoch)
    ours, our_model = _run_ours(tmp_path, by_epoch)

    assert len(ours) == len(theirs) and len(ours) > 100
    for (our_iter, our_loss, our_lr), (their_iter, their_loss, their_lr) in zip(ours, theirs):
        assert our_iter == their_iter
        assert our_lr == pytest.approx(their_lr, rel=1e-12, abs=1e-15), our_iter
        assert our_loss == pytest.approx(their_loss, rel=1e-6, abs=1e-7), our_iter
    # Same final weights: the whole trajectory (sampler order, accumulation, clipping, schedule)
    # agrees, not just the logged numbers.
    for ours_p, theirs_p in zip(our_model.state_dict().values(),
                                their_model.state_dict().values()):
        torch.testing.assert_close(ours_p, theirs_p, rtol=1e-5, atol=1e-6)


def test_a_checkpoint_saved_by_mmengine_loads_with_load_from(tmp_path):
    """MMEngine's own CheckpointHook output (message hub with HistoryBuffers and numpy arrays
    inside) gives its weights to ``load_from`` without unpickling MMEngine classes."""
    cfg = _common_cfg(by_epoch=True)
    cfg["train_cfg"] = dict(by_epoch=True, max_epochs=1)
    runner = MMRunner(model=dict(type=TheirNet), work_dir=str(tmp_path / "theirs"),
                      default_hooks=dict(logger=None,
                                         checkpoint=dict(type="CheckpointHook", interval=1)),
                      log_level=logging.WARNING, experiment_name="ckpt_theirs",
                      default_scope="mmengine", **cfg)
    their_model = runner.train()
    path = tmp_path / "theirs" / "epoch_1.pth"
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(path, weights_only=True)  # why a plain weights-only load is not enough

    ours = Runner(model=dict(type=OurNet), work_dir=str(tmp_path / "ours"),
                  load_from=str(path), experiment_name="ckpt_ours")
    ours.load_or_resume()
    for key, value in their_model.state_dict().items():
        assert torch.equal(ours.model.state_dict()[key], value), key
    # The same file from a store without local paths (read as bytes, then parsed twice).
    remote = "memory://mmengine-parity/epoch_1.pth"
    storage.write_bytes(remote, path.read_bytes())
    loaded = load_checkpoint(remote)
    for key, value in their_model.state_dict().items():
        assert torch.equal(loaded["state_dict"][key], value), key
    assert loaded["meta"]["epoch"] == 1 and "message_hub" not in loaded
