"""OptimWrapper: accumulation divisors and steps, clipping, no_sync, state, MMEngine parity."""
from __future__ import annotations

import copy
import io
from contextlib import contextmanager

import pytest
import torch
import torch.nn as nn
from torch.optim import SGD, Adam

from raytrainer.optim.optimizer import OptimWrapper

from ...gloo_process import run_in_gloo_process
from ._helpers import assert_same_params, make_batches, make_model, mse


def _record_steps(wrapper: OptimWrapper) -> list[int]:
    """Patch the optimizer so each step records the wrapper's inner count."""
    steps: list[int] = []
    original = wrapper.optimizer.step

    def step(*args, **kwargs):
        steps.append(wrapper.inner_count)
        return original(*args, **kwargs)

    wrapper.optimizer.step = step
    return steps


def _hand_accumulation(model, batches, divisors, update_at, first_iter=1, lr=0.1):
    """Sum gradients of loss / divisor and step at the given 1-based iterations."""
    optimizer = SGD(model.parameters(), lr=lr)
    for index, batch in enumerate(batches):
        iteration = first_iter + index
        (mse(model, batch) / divisors[index]).backward()
        if iteration in update_at:
            optimizer.step()
            optimizer.zero_grad()


def test_accumulation_matches_hand_loop_with_short_last_window(message_hub):
    batches = make_batches(10)
    model = make_model()
    reference = copy.deepcopy(model)
    wrapper = OptimWrapper(SGD(model.parameters(), lr=0.1), accumulative_counts=3)
    wrapper.initialize_count_status(model, init_counts=0, max_counts=10)
    steps = _record_steps(wrapper)
    factors = []
    for batch in batches:
        factors.append(float(wrapper.scale_loss(torch.tensor(1.0))))
        wrapper.update_params(mse(model, batch))

    assert steps == [3, 6, 9, 10]
    assert factors == pytest.approx([1 / 3] * 9 + [1.0])
    _hand_accumulation(reference, batches, [3] * 9 + [1], {3, 6, 9, 10})
    assert_same_params(model, reference)


def test_resume_mid_window_keeps_fresh_run_divisors(message_hub, capsys):
    batches = make_batches(10)[4:]  # iterations 5..10 of a 10-iteration run
    model = make_model()
    reference = copy.deepcopy(model)
    wrapper = OptimWrapper(SGD(model.parameters(), lr=0.1), accumulative_counts=3)
    wrapper.initialize_count_status(model, init_counts=4, max_counts=10)
    assert "Resuming at iteration 4" in capsys.readouterr().out
    steps = _record_steps(wrapper)
    factors = []
    for batch in batches:
        factors.append(float(wrapper.scale_loss(torch.tensor(1.0))))
        wrapper.update_params(mse(model, batch))

    # The same windows as a fresh run: [4,6) then [6,9) divided by 3, the last one by 1.
    assert steps == [6, 9, 10]
    assert factors == pytest.approx([1 / 3] * 5 + [1.0])
    _hand_accumulation(reference, batches, [3] * 5 + [1], {6, 9, 10}, first_iter=5)
    assert_same_params(model, reference)


def test_unknown_max_counts_always_divides_by_window(message_hub):
    model = make_model()
    wrapper = OptimWrapper(SGD(model.parameters(), lr=0.1), accumulative_counts=4)
    steps = _record_steps(wrapper)
    factors = []
    for batch in make_batches(10):
        factors.append(float(wrapper.scale_loss(torch.tensor(1.0))))
        wrapper.update_params(mse(model, batch))
    assert wrapper.max_counts == -1
    assert steps == [4, 8]
    assert factors == pytest.approx([0.25] * 10)


def test_batch_norm_with_accumulation_warns(message_hub, capsys):
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    OptimWrapper(SGD(model.parameters(), lr=0.1), accumulative_counts=2) \
        .initialize_count_status(model, 0, 10)
    assert "BatchNorm" in capsys.readouterr().out
    OptimWrapper(SGD(model.parameters(), lr=0.1)).initialize_count_status(model, 0, 10)
    assert "BatchNorm" not in capsys.readouterr().out


def _one_grad(model, batch):
    """The gradients of one batch, computed on a copy of ``model``."""
    clone = copy.deepcopy(model)
    mse(clone, batch).backward()
    return [p.grad.clone() for p in clone.parameters()]


def test_clip_by_norm_matches_hand_clipping_and_logs_grad_norm(message_hub):
    model = make_model()
    batch = make_batches(1)[0]
    grads = _one_grad(model, batch)
    total_norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))
    max_norm = 0.05
    assert total_norm > max_norm  # the test must actually clip
    clip_coef = max_norm / (total_norm + 1e-6)
    expected = [p.detach() - 1.0 * g * clip_coef for p, g in zip(model.parameters(), grads)]

    wrapper = OptimWrapper(SGD(model.parameters(), lr=1.0), clip_grad=dict(max_norm=max_norm))
    wrapper.update_params(mse(model, batch))

    for param, want in zip(model.parameters(), expected):
        torch.testing.assert_close(param.detach(), want, rtol=1e-6, atol=1e-7)
    logged = message_hub.get_scalar("train/grad_norm").current()
    assert logged == pytest.approx(float(total_norm), rel=1e-6)


def test_clip_by_value_matches_hand_clipping(message_hub):
    model = make_model()
    batch = make_batches(1)[0]
    grads = _one_grad(model, batch)
    clip_value = 0.02
    assert any(g.abs().max() > clip_value for g in grads)
    expected = [p.detach() - 0.5 * g.clamp(-clip_value, clip_value)
                for p, g in zip(model.parameters(), grads)]

    clip_grad = dict(type="value", clip_value=clip_value)
    wrapper = OptimWrapper(SGD(model.parameters(), lr=0.5), clip_grad=clip_grad)
    wrapper.update_params(mse(model, batch))

    for param, want in zip(model.parameters(), expected):
        torch.testing.assert_close(param.detach(), want, rtol=1e-6, atol=1e-7)
    assert clip_grad == dict(type="value", clip_value=clip_value)  # config not mutated
    assert "train/grad_norm" not in message_hub.log_scalars


@pytest.mark.parametrize("clip_grad, error, match", [
    (dict(type="l2", max_norm=1.0), ValueError,
     r"clip_grad.type must be one of \['norm', 'value'\], got 'l2'"),
    (dict(max_norm=1.0, norm="inf"), ValueError, r"unknown keys \['norm'\]"),
    (dict(type="value"), ValueError, "needs 'clip_value'"),
    ({}, TypeError, "non-empty dict"),
])
def test_bad_clip_grad_is_rejected_at_construction(clip_grad, error, match):
    with pytest.raises(error, match=match):
        OptimWrapper(SGD(make_model().parameters(), lr=0.1), clip_grad=clip_grad)


def test_bad_accumulative_counts_and_optimizer_are_rejected():
    with pytest.raises(ValueError, match="accumulative_counts must be an int >= 1, got 0"):
        OptimWrapper(SGD(make_model().parameters(), lr=0.1), accumulative_counts=0)
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        OptimWrapper(optimizer=[1, 2])


class _NoSyncRecorder(nn.Module):
    """A model with a DDP-like ``no_sync`` that records whether a forward ran inside it."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2)
        self.in_no_sync = False
        self.forwards_in_no_sync: list[bool] = []

    @contextmanager
    def no_sync(self):
        self.in_no_sync = True
        try:
            yield
        finally:
            self.in_no_sync = False

    def forward(self, inputs):
        self.forwards_in_no_sync.append(self.in_no_sync)
        return self.linear(inputs)


def test_optim_context_enters_no_sync_exactly_on_non_update_iterations(message_hub):
    model = _NoSyncRecorder()
    wrapper = OptimWrapper(SGD(model.parameters(), lr=0.1), accumulative_counts=3)
    wrapper.initialize_count_status(model, 0, 7)
    updates = []
    for inputs, _ in make_batches(7):
        with wrapper.optim_context(model):
            loss = model(inputs).sum()
        wrapper.update_params(loss)
        updates.append(wrapper.should_update())
    # Iterations 3, 6 and the last one (7) update, so they must all-reduce.
    assert updates == [False, False, True, False, False, True, True]
    assert model.forwards_in_no_sync == [True, True, False, True, True, False, False]


def test_optim_context_without_accumulation_never_skips_sync(message_hub):
    model = _NoSyncRecorder()
    wrapper = OptimWrapper(SGD(model.parameters(), lr=0.1))
    for inputs, _ in make_batches(3):
        with wrapper.optim_context(model):
            wrapper.update_params(model(inputs).sum())
    assert model.forwards_in_no_sync == [False, False, False]


def test_lr_and_momentum_views():
    model = make_model()
    sgd = OptimWrapper(SGD([{"params": model[0].parameters(), "lr": 0.5},
                            {"params": model[2].parameters()}], lr=0.1, momentum=0.9))
    assert sgd.get_lr() == {"lr": [0.5, 0.1]}
    assert sgd.get_momentum() == {"momentum": [0.9, 0.9]}
    assert sgd.param_groups is sgd.optimizer.param_groups
    assert sgd.defaults["lr"] == 0.1
    adam = OptimWrapper(Adam(model.parameters(), lr=0.01, betas=(0.8, 0.99)))
    assert adam.get_momentum() == {"momentum": [0.8]}
    rprop = OptimWrapper(torch.optim.Rprop(model.parameters(), lr=0.01))
    assert rprop.get_momentum() == {"momentum": [0]}


def test_state_dict_survives_weights_only_load_and_resumes_exactly(message_hub):
    batches = make_batches(6)
    model = make_model()
    wrapper = OptimWrapper(Adam(model.parameters(), lr=0.01), clip_grad=dict(max_norm=1.0))
    for batch in batches[:3]:
        wrapper.update_params(mse(model, batch))

    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optim": wrapper.state_dict()}, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    resumed = make_model(seed=7)
    resumed.load_state_dict(checkpoint["model"])
    resumed_wrapper = OptimWrapper(Adam(resumed.parameters(), lr=0.5),
                                   clip_grad=dict(max_norm=1.0))
    resumed_wrapper.load_state_dict(checkpoint["optim"])
    assert resumed_wrapper.get_lr() == {"lr": [0.01]}

    for batch in batches[3:]:
        wrapper.update_params(mse(model, batch))
        resumed_wrapper.update_params(mse(resumed, batch))
    assert_same_params(model, resumed)


def test_load_state_dict_accepts_mmengine_extras_without_mutating_input():
    model = make_model()
    wrapper = OptimWrapper(SGD(model.parameters(), lr=0.1))
    state = wrapper.state_dict()
    state["base_param_settings"] = {"params": torch.zeros(1), "lr": 0.1}
    keys = set(state)
    wrapper.load_state_dict(state)
    assert set(state) == keys


def _run_pair(wrappers_and_models, batches):
    for batch in batches:
        for wrapper, model in wrappers_and_models:
            with wrapper.optim_context(model):
                loss = mse(model, batch)
            wrapper.update_params(loss)


@pytest.mark.parametrize("init_counts", [0, 3])
def test_parity_with_mmengine_optim_wrapper(message_hub, init_counts):
    MMOptimWrapper = pytest.importorskip("mmengine.optim").OptimWrapper

    batches = make_batches(7)[init_counts:]
    ours_model = make_model()
    theirs_model = copy.deepcopy(ours_model)
    kwargs = dict(accumulative_counts=2, clip_grad=dict(max_norm=0.05))
    ours = OptimWrapper(SGD(ours_model.parameters(), lr=0.1, momentum=0.9), **copy.deepcopy(kwargs))
    theirs = MMOptimWrapper(SGD(theirs_model.parameters(), lr=0.1, momentum=0.9),
                            **copy.deepcopy(kwargs))
    ours.initialize_count_status(ours_model, init_counts, 7)
    theirs.initialize_count_status(theirs_model, init_counts, 7)

    _run_pair([(ours, ours_model), (theirs, theirs_model)], batches)

    assert ours.inner_count == theirs.inner_count == 7
    assert_same_params(ours_model, theirs_model)
    from mmengine.logging import MessageHub as MMMessageHub
    theirs_norm = MMMessageHub.get_current_instance().get_scalar("train/grad_norm").current()
    assert message_hub.get_scalar("train/grad_norm").current() == theirs_norm


def _ddp_syncs_per_micro_step() -> list[bool]:
    """In a one-rank gloo process: DDP's gradient-sync flag at each micro-step."""
    ddp = nn.parallel.DistributedDataParallel(nn.Linear(3, 2))
    wrapper = OptimWrapper(SGD(ddp.parameters(), lr=0.1), accumulative_counts=2)
    wrapper.initialize_count_status(ddp, 0, 4)
    syncs = []
    for inputs, _ in make_batches(4):
        with wrapper.optim_context(ddp):
            syncs.append(ddp.require_backward_grad_sync)
            loss = ddp(inputs).sum()
        wrapper.update_params(loss)
    return syncs


@pytest.mark.slow
def test_optim_context_disables_real_ddp_gradient_sync_mid_window():
    assert run_in_gloo_process(_ddp_syncs_per_micro_step) == [False, True, False, True]
