"""AmpOptimWrapper on CPU: bf16 autocast without a scaler, fp16 with a GradScaler, state dicts."""
from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn as nn
from torch.optim import SGD, Adam

from raytrainer.optim.optimizer import AmpOptimWrapper

from ._helpers import assert_same_params, make_batches, make_model, mse


@pytest.mark.parametrize("dtype", ["bfloat16", torch.bfloat16, None])
def test_bf16_autocast_on_cpu_without_scaler(dtype):
    model = nn.Linear(3, 2)
    wrapper = AmpOptimWrapper(optimizer=SGD(model.parameters(), lr=0.1), dtype=dtype)
    assert wrapper.cast_dtype == torch.bfloat16  # None: torch's CPU default
    assert wrapper.loss_scaler is None
    with wrapper.optim_context(model):
        inside = model(torch.randn(4, 3))
    outside = model(torch.randn(4, 3))
    assert inside.dtype == torch.bfloat16
    assert outside.dtype == torch.float32


def test_bf16_training_step_matches_manual_autocast(message_hub):
    batches = make_batches(4)
    model = make_model()
    reference = copy.deepcopy(model)
    wrapper = AmpOptimWrapper(optimizer=SGD(model.parameters(), lr=0.1), dtype="bfloat16",
                              accumulative_counts=2, clip_grad=dict(max_norm=0.05))
    before = [p.detach().clone() for p in model.parameters()]
    for batch in batches:
        with wrapper.optim_context(model):
            loss = mse(model, batch)
        wrapper.update_params(loss)

    optimizer = SGD(reference.parameters(), lr=0.1)
    for index, batch in enumerate(batches, start=1):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = mse(reference, batch)
        (loss / 2).backward()
        if index % 2 == 0:
            torch.nn.utils.clip_grad_norm_(reference.parameters(), max_norm=0.05)
            optimizer.step()
            optimizer.zero_grad()

    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert_same_params(model, reference)
    assert message_hub.get_scalar("train/grad_norm").current() > 0


def _trained_bf16_wrapper(model):
    wrapper = AmpOptimWrapper(optimizer=Adam(model.parameters(), lr=0.01), dtype="bfloat16")
    for batch in make_batches(2):
        with wrapper.optim_context(model):
            loss = mse(model, batch)
        wrapper.update_params(loss)
    return wrapper


def test_bf16_state_dict_round_trip_through_weights_only_load():
    model = make_model()
    wrapper = _trained_bf16_wrapper(model)
    state = wrapper.state_dict()
    assert "loss_scaler" not in state

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    restored = AmpOptimWrapper(optimizer=Adam(model.parameters(), lr=0.5), dtype="bfloat16")
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.get_lr() == {"lr": [0.01]}
    for key, value in wrapper.optimizer.state_dict()["state"][0].items():
        torch.testing.assert_close(restored.optimizer.state_dict()["state"][0][key], value)


def test_fp16_on_cpu_uses_grad_scaler_and_round_trips_its_state():
    model = make_model()
    wrapper = AmpOptimWrapper(optimizer=SGD(model.parameters(), lr=0.1), dtype="float16",
                              loss_scale=dict(init_scale=256.0, growth_interval=1))
    assert isinstance(wrapper.loss_scaler, torch.amp.GradScaler)
    with wrapper.optim_context(model):
        assert model(torch.randn(2, 3)).dtype == torch.float16
    batch = make_batches(1)[0]
    with wrapper.optim_context(model):
        loss = mse(model, batch)
    wrapper.update_params(loss)
    state = wrapper.state_dict()
    assert state["loss_scaler"]["scale"] == 512.0  # no overflow, grown after 1 step

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    restored = AmpOptimWrapper(optimizer=SGD(model.parameters(), lr=0.1), dtype="float16")
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.loss_scaler.get_scale() == 512.0


def test_fp16_overflow_skips_the_step_and_backs_off_the_scale():
    model = make_model()
    before = [p.detach().clone() for p in model.parameters()]
    # 2**40 overflows fp16 gradients, so the scaler must skip the update.
    wrapper = AmpOptimWrapper(optimizer=SGD(model.parameters(), lr=0.1), dtype="float16",
                              loss_scale=dict(init_scale=2.0**40))
    with wrapper.optim_context(model):
        loss = mse(model, make_batches(1)[0])
    wrapper.update_params(loss)
    assert_same_params(nn.ParameterList(before), nn.ParameterList(list(model.parameters())))
    assert wrapper.loss_scaler.get_scale() == 2.0**39


def test_fp16_static_scale_stays_fixed_and_clip_sees_unscaled_grads(message_hub):
    model = make_model()
    batch = make_batches(1)[0]
    clone = copy.deepcopy(model)
    with torch.autocast("cpu", dtype=torch.float16):
        mse(clone, batch).backward()
    unscaled_norm = torch.nn.utils.get_total_norm([p.grad for p in clone.parameters()])

    wrapper = AmpOptimWrapper(optimizer=SGD(model.parameters(), lr=0.1), dtype="float16",
                              loss_scale=128.0, clip_grad=dict(max_norm=10.0))
    with wrapper.optim_context(model):
        loss = mse(model, batch)
    wrapper.update_params(loss)
    assert wrapper.loss_scaler.get_scale() == 128.0
    logged = message_hub.get_scalar("train/grad_norm").current()
    assert logged == pytest.approx(float(unscaled_norm), rel=1e-2)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(dtype="float8"), ValueError, "dtype must be one of"),
    (dict(dtype=3), TypeError, "dtype must be None"),
    (dict(dtype="float16", loss_scale="static"), TypeError, "loss_scale must be 'dynamic'"),
    (dict(dtype="float16", loss_scale=-1.0), ValueError, "must be > 0"),
])
def test_bad_amp_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        AmpOptimWrapper(optimizer=SGD(make_model().parameters(), lr=0.1), **kwargs)


def test_loss_scale_with_bf16_is_ignored_with_a_warning(capsys):
    wrapper = AmpOptimWrapper(optimizer=SGD(make_model().parameters(), lr=0.1),
                              dtype="bfloat16", loss_scale=512.0)
    assert wrapper.loss_scaler is None
    assert "loss_scale=512.0 is ignored" in capsys.readouterr().out
