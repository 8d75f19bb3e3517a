"""BaseModel's step contract and the data preprocessors."""
from collections import namedtuple

import pytest
import torch
import torch.nn as nn

from raytrainer.model import BaseDataPreprocessor, BaseModel, ImgDataPreprocessor, MLPClassifier
from raytrainer.optim import OptimWrapper


class TwoLosses(BaseModel):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(2.0))

    def forward(self, inputs, data_samples=None, mode="tensor"):
        if mode == "loss":
            return {"loss_a": self.w * inputs, "loss_b": [self.w, self.w * 2],
                    "acc": torch.tensor(0.5)}
        return self.w * inputs


def test_parse_losses_sums_loss_terms_only():
    total, log_vars = TwoLosses().parse_losses(
        {"loss_a": torch.tensor([1.0, 3.0]),
         "loss_b": [torch.tensor(1.0), torch.tensor([2.0, 4.0])],
         "acc": torch.tensor(0.9)})
    assert total.item() == pytest.approx(2.0 + 1.0 + 3.0)
    assert list(log_vars) == ["loss", "loss_a", "loss_b", "acc"]
    assert log_vars["acc"].item() == pytest.approx(0.9)
    with pytest.raises(TypeError, match="loss 'bad' must be a tensor or a list of tensors"):
        TwoLosses().parse_losses({"bad": 1.0})


def test_train_step_updates_through_the_optim_wrapper():
    model = TwoLosses()
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    log_vars = model.train_step({"inputs": torch.tensor([1.0, 1.0])}, wrapper)
    # d/dw of (w*1 mean) + w + 2w = 1 + 3 = 4 → w = 2 - 0.4
    assert model.w.item() == pytest.approx(1.6)
    assert log_vars["loss"].item() == pytest.approx(2.0 + 2.0 + 4.0)


def test_val_step_runs_predict_mode():
    model = MLPClassifier(hidden_dims=(8,))
    scores, labels = model.val_step({"inputs": torch.zeros(3, 64),
                                     "data_samples": torch.tensor([1, 2, 3])})
    assert scores.shape == (3, 10) and labels.tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="mode must be"):
        model(torch.zeros(1, 64), mode="bogus")


def test_preprocessor_casts_nested_batches_and_follows_the_model_device():
    pre = BaseDataPreprocessor()
    Pair = namedtuple("Pair", "a b")
    batch = {"x": [torch.ones(1)], "p": Pair(torch.zeros(1), "text"), "n": None}
    out = pre(batch)
    assert isinstance(out["p"], Pair) and out["p"].b == "text" and out["n"] is None
    model = TwoLosses()
    model.to(torch.float64)
    assert model.data_preprocessor.device == torch.device("cpu")


def test_img_preprocessor_normalises_swaps_and_pads():
    pre = ImgDataPreprocessor(mean=[1.0, 2.0, 3.0], std=[2.0, 2.0, 2.0], bgr_to_rgb=True,
                              pad_size_divisor=4)
    images = torch.stack([torch.full((1, 3, 3), float(c)) for c in (3.0, 2.0, 1.0)], 1)
    out = pre({"inputs": images.squeeze(0).unsqueeze(0)}, training=True)
    assert out["inputs"].shape == (1, 3, 4, 4)
    # channels reversed to (1, 2, 3) then normalised: all zeros inside, pad value outside
    assert torch.all(out["inputs"][0, :, :3, :3] == 0)
    with pytest.raises(ValueError, match="mean and std must both be set"):
        ImgDataPreprocessor(mean=[1.0])
