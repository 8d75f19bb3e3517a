"""Runner config values are checked when the Runner is created, before anything is written."""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F

from raytrainer.checkpoint import CheckpointKeyMismatch
from raytrainer.config import Config, ConfigError
from raytrainer.evaluator.metrics import Accuracy
from raytrainer.hooks import CheckpointHook
from raytrainer.model import BaseModel, MLPClassifier
from raytrainer.registry import MODELS
from raytrainer.runner import Runner
from raytrainer.runner.batch_check import BatchModelMismatch
from raytrainer.runner.validation import ConfigWarning, warn_unknown_keys

from .helpers import runner_kwargs


@pytest.mark.parametrize("overrides,message", [
    (dict(train_cfg=dict(by_epoch=True, max_epochs=2, val_interval=0)),
     "train_cfg.val_interval must be a positive integer, got 0"),
    (dict(train_cfg=dict(by_epoch=False, max_iters=1.5)),
     "train_cfg.max_iters must be a positive integer, got 1.5"),
    (dict(default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=0))),
     "default_hooks.checkpoint.interval must be a positive integer"),
    (dict(optim_wrapper=dict(optimizer=dict(type="SGD", lr="abc"))),
     "optim_wrapper.optimizer.lr must be a number >= 0, got 'abc'"),
    (dict(val_evaluator=dict(type="Accuracy", topk=(1, 20))),
     r"val_evaluator.topk=\(1, 20\) asks for the top 20 predictions, but "
     "model.num_classes=10"),
    (dict(strategy=dict(type="DDPStrategy")), "strategy=DDPStrategy is distributed"),
    (dict(load_strict="no"), "load_strict must be True or False"),
])
def test_bad_values_fail_before_the_work_dir_is_created(tmp_path, overrides, message):
    kwargs = runner_kwargs(tmp_path / "w", **overrides)
    if "val_evaluator" in overrides:
        kwargs["model"] = dict(type="MLPClassifier", hidden_dims=(32,), num_classes=10)
    with pytest.raises(ConfigError, match=message):
        Runner(**kwargs)
    assert not os.path.exists(tmp_path / "w")


def test_custom_hooks_are_named_by_their_index(tmp_path):
    with pytest.raises(Exception, match=r"config key 'custom_hooks\.1\.type'"):
        Runner(**runner_kwargs(tmp_path, custom_hooks=[dict(type="EMAHook"),
                                                      dict(type="EMAHok")]))


def test_checkpoint_hook_and_accuracy_check_their_arguments_too():
    with pytest.raises(ValueError, match="interval must be a positive integer or -1"):
        CheckpointHook(interval=0)
    metric = Accuracy(topk=(1, 20))
    with pytest.raises(ValueError, match="top 20 predictions, but the model scores 10 classes"):
        metric.process(None, (torch.randn(4, 10), torch.tensor([0, 1, 2, 3])))


def test_top_level_typos_warn_and_the_ray_section_is_checked_without_ray(tmp_path):
    cfg = dict(trian_cfg=dict(max_epochs=1), data_root="data/", train_pipeline=[])
    with pytest.warns(ConfigWarning) as caught:
        assert warn_unknown_keys(cfg) == [
            "config key 'trian_cfg' is not used by the Runner; did you mean 'train_cfg'?"]
    assert len(caught) == 1  # data_root and pipelines are an MMEngine config's own variables
    bad_ray = Config(dict(runner_kwargs(tmp_path), ray=dict(max_failure=2)))
    with pytest.raises(ConfigError, match=r"ray.max_failure is not a Ray setting; did you mean "
                                          r"'ray.max_failures'\?"):
        Runner.from_cfg(bad_ray)


def _save_weights(path, state):
    torch.save({"state_dict": state}, path)
    return str(path)


def test_load_from_is_strict_unless_load_strict_is_false(tmp_path):
    source = MLPClassifier(hidden_dims=(32,)).state_dict()
    partial = dict(source)
    partial.pop(next(iter(partial)))
    location = _save_weights(tmp_path / "partial.pth", partial)
    strict = Runner(**runner_kwargs(tmp_path / "a", load_from=location))
    with pytest.raises(CheckpointKeyMismatch, match="load_from: .*missing keys .* set "
                                                   "load_strict=False"):
        strict.val()
    relaxed = Runner(**runner_kwargs(tmp_path / "b", load_from=location, load_strict=False))
    relaxed.val()
    for key, value in partial.items():
        assert torch.equal(relaxed.model.state_dict()[key], value), key


def test_weights_with_no_key_of_the_model_are_refused_even_when_not_strict(tmp_path):
    location = _save_weights(tmp_path / "other.pth", {"encoder.weight": torch.zeros(2, 2)})
    runner = Runner(**runner_kwargs(tmp_path / "w", load_from=location, load_strict=False))
    with pytest.raises(CheckpointKeyMismatch, match="none of its 1 keys"):
        runner.val()
    with pytest.raises(CheckpointKeyMismatch, match="none of its 1 keys"):
        runner.load_checkpoint(location)  # MMEngine's default strict=False


def test_a_model_that_does_not_fit_the_data_names_the_keys_at_the_first_step(tmp_path):
    model = dict(type="MLPClassifier", in_features=32, hidden_dims=(32,))
    runner = Runner(**runner_kwargs(tmp_path / "t", model=model))
    with pytest.raises(BatchModelMismatch, match=r"first batch of train_dataloader .* inputs "
                                                 r"\(32, 64\)"):
        runner.train()
    evaluating = Runner(**runner_kwargs(tmp_path / "v", model=model))
    with pytest.raises(BatchModelMismatch, match="first batch of val_dataloader"):
        evaluating.val()


@MODELS.register_module(force=True)
class LabelsOffByOne(BaseModel):
    """Drops a row of logits, so the loss sees fewer predictions than labels (a ValueError)."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(64, 10)

    def forward(self, inputs, data_samples=None, mode="tensor"):
        logits = self.net(inputs.float())[:-1]
        if mode == "loss":
            return {"loss": F.cross_entropy(logits, data_samples)}
        return logits


def test_a_batch_size_mismatch_in_the_loss_is_explained_too(tmp_path):
    runner = Runner(**runner_kwargs(tmp_path, model=dict(type="LabelsOffByOne")))
    with pytest.raises(BatchModelMismatch, match="Expected input batch_size"):
        runner.train()


def test_resuming_into_another_model_names_the_keys_without_the_load_from_hint(tmp_path):
    Runner(**runner_kwargs(tmp_path, epochs=1, val=False)).train()
    wider = Runner(**runner_kwargs(tmp_path, epochs=2, val=False, resume=True,
                                   model=dict(type="MLPClassifier", hidden_dims=(32, 32))))
    with pytest.raises(CheckpointKeyMismatch, match="missing keys") as info:
        wider.train()
    assert "load_strict" not in str(info.value)
