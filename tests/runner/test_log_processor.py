"""LogProcessor: smoothing, custom statistics, log line text and tag dicts."""
from __future__ import annotations

import random
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from raytrainer.logging import MessageHub
from raytrainer.registry import LOG_PROCESSORS
from raytrainer.runner.log_processor import LogProcessor, has_train_loop


def make_runner(hub, *, epoch=0, it=0, max_epochs=3, max_iters=84, train_len=28, val_len=5,
                test_len=5, with_train_loop=True):
    """A runner with MMEngine's attribute names, enough for both libraries' processors."""
    train_loader, val_loader, test_loader = (list(range(n)) for n in
                                             (train_len, val_len, test_len))
    loop = SimpleNamespace(dataloader=train_loader, max_iters=max_iters) if with_train_loop \
        else None
    return SimpleNamespace(
        message_hub=hub, epoch=epoch, iter=it, max_epochs=max_epochs, max_iters=max_iters,
        _train_loop=loop, train_loop=loop, train_dataloader=train_loader,
        val_dataloader=val_loader, test_dataloader=test_loader,
        val_loop=SimpleNamespace(dataloader=val_loader),
        test_loop=SimpleNamespace(dataloader=test_loader))


@pytest.fixture
def hub():
    return MessageHub("test_log_processor")


def fill_train(hub, n=15, eta=30.7):
    """Deterministic train history: loss = 1..n, time = 0.1*i, data_time = 0.01*i."""
    for i in range(1, n + 1):
        hub.update_scalar("train/lr", 0.01 / i)
        hub.update_scalar("train/time", 0.1 * i)
        hub.update_scalar("train/data_time", 0.01 * i)
        hub.update_scalar("train/loss", float(i))
        hub.update_scalar("train/accuracy", 50.0 + i)
    if eta is not None:
        hub.update_info("eta", eta)


def test_train_line_by_epoch(hub):
    fill_train(hub)
    tag, log_str = LogProcessor().get_log_after_iter(
        make_runner(hub, epoch=0, it=9), batch_idx=9, mode="train")
    # window 10 over 1..15 -> values 6..15
    assert tag["loss"] == pytest.approx(10.5)
    assert tag["time"] == pytest.approx(1.05)
    assert tag["data_time"] == pytest.approx(0.105)
    assert tag["lr"] == pytest.approx(0.01 / 15)  # not smoothed: the latest value
    assert tag["accuracy"] == 65.0
    assert tag["epoch"] == 1 and tag["iter"] == 10
    assert log_str == ("Epoch(train) [1][10/28]  lr: 6.6667e-04  eta: 0:00:30  time: 1.0500  "
                       "data_time: 0.1050  loss: 10.5000  accuracy: 65.0000")
    assert all(isinstance(v, (int, float)) for v in tag.values())


def test_train_line_aligns_counters(hub):
    fill_train(hub)
    _, log_str = LogProcessor().get_log_after_iter(
        make_runner(hub, epoch=4, max_epochs=100, train_len=280), batch_idx=9, mode="train")
    assert log_str.startswith("Epoch(train)   [5][ 10/280]  lr: ")


def test_train_line_by_iter(hub):
    fill_train(hub)
    tag, log_str = LogProcessor(by_epoch=False).get_log_after_iter(
        make_runner(hub, it=9, max_iters=600), batch_idx=9, mode="train")
    assert log_str.startswith("Iter(train) [ 10/600]  lr: 6.6667e-04  eta: 0:00:30  ")
    assert "epoch" not in tag and tag["iter"] == 10


def test_window_size_and_mean_pattern(hub):
    fill_train(hub)
    processor = LogProcessor(window_size=4, mean_pattern=r"(loss|accuracy)")
    tag, _ = processor.get_log_after_iter(make_runner(hub), 0, "train")
    assert tag["loss"] == pytest.approx((12 + 13 + 14 + 15) / 4)
    assert tag["accuracy"] == pytest.approx(50 + 13.5)
    assert tag["time"] == pytest.approx(1.5)  # no longer matched: the current value


def test_counts_weight_the_mean(hub):
    hub.update_scalar("train/loss", 6.0, count=3)
    hub.update_scalar("train/loss", 2.0, count=1)
    tag, _ = LogProcessor().get_log_after_iter(make_runner(hub), 0, "train")
    assert tag["loss"] == pytest.approx(8.0 / 4)


@pytest.mark.parametrize(("eta", "text"), [(30.7, "0:00:30"), (3725, "1:02:05"),
                                           (90061, "1 day, 1:01:01")])
def test_eta_format(hub, eta, text):
    fill_train(hub, eta=eta)
    _, log_str = LogProcessor().get_log_after_iter(make_runner(hub), 0, "train")
    assert f"  eta: {text}  time: " in log_str


def test_without_eta_time_is_an_ordinary_item(hub):
    fill_train(hub, eta=None)
    _, log_str = LogProcessor().get_log_after_iter(make_runner(hub), 0, "train")
    assert "eta" not in log_str
    assert log_str.endswith("time: 1.0500  data_time: 0.1050  loss: 10.5000  accuracy: 65.0000")


def test_memory_reported_on_cuda(hub, monkeypatch):
    fill_train(hub)
    resets = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a, **k: 123 * 1024 * 1024 + 5)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda *a, **k: resets.append(1))
    tag, log_str = LogProcessor().get_log_after_iter(make_runner(hub), 0, "train")
    assert tag["memory"] == 123
    assert "data_time: 0.1050  memory: 123  loss: 10.5000" in log_str
    assert resets == [1]  # each line reports the peak of its own interval


@pytest.mark.gpu
def test_memory_on_real_cuda(hub):
    fill_train(hub)
    processor = LogProcessor()
    block = torch.empty(64 * 1024 * 1024, dtype=torch.uint8, device="cuda")
    tag, log_str = processor.get_log_after_iter(make_runner(hub), 0, "train")
    assert tag["memory"] >= 64 and f"memory: {tag['memory']}  loss:" in log_str
    del block
    # The reset after the first line starts the next peak at what was allocated then (the
    # block), so the drop shows one line later.
    processor.get_log_after_iter(make_runner(hub), 0, "train")
    tag, _ = processor.get_log_after_iter(make_runner(hub), 0, "train")
    assert tag["memory"] < 64


def test_no_memory_without_cuda(hub, monkeypatch):
    fill_train(hub)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    tag, log_str = LogProcessor().get_log_after_iter(make_runner(hub), 0, "train")
    assert "memory" not in tag and "memory" not in log_str


def test_custom_cfg_adds_and_replaces(hub):
    fill_train(hub)
    processor = LogProcessor(custom_cfg=[
        dict(data_src="loss", method_name="mean", window_size="global", log_name="loss_global"),
        dict(data_src="loss", method_name="max", window_size=3),
        dict(data_src="time", method_name="min", window_size="epoch", log_name="time_min"),
        dict(data_src="accuracy", method_name="current", log_name="acc_now"),
        dict(data_src="absent", method_name="mean"),
    ])
    tag, log_str = processor.get_log_after_iter(make_runner(hub, it=7), 4, "train")
    assert tag["loss_global"] == pytest.approx(sum(range(8, 16)) / 8)  # runner.iter + 1 = 8
    assert tag["loss"] == 15.0  # replaced: max of the last 3
    assert tag["time_min"] == pytest.approx(1.1)  # batch_idx + 1 = 5 values: 1.1 .. 1.5
    assert tag["acc_now"] == 65.0
    assert "absent" not in tag
    assert "loss: 15.0000" in log_str and "loss_global: 11.5000" in log_str


def test_custom_cfg_none_window_is_whole_history(hub):
    fill_train(hub)
    tag, _ = LogProcessor(custom_cfg=[dict(data_src="loss", method_name="mean")]) \
        .get_log_after_iter(make_runner(hub), 0, "train")
    assert tag["loss"] == pytest.approx(8.0)


@pytest.mark.parametrize(("custom_cfg", "error", "message"), [
    ([dict(data_src="loss", method_name="mean"), dict(data_src="loss", method_name="max")],
     ValueError, "logs 'loss' twice"),
    ([dict(data_src="a", method_name="mean", log_name="x"),
      dict(data_src="b", method_name="max", log_name="x")], ValueError, "logs 'x' twice"),
    ([dict(data_src="loss", method_name="median")], ValueError,
     r"custom_cfg\[0\]: method_name must be one of"),
    ([dict(method_name="mean")], ValueError, r"custom_cfg\[0\] needs 'data_src'"),
    ([dict(data_src="loss", method_name="mean", window="epoch")], ValueError,
     r"unknown key\(s\) \['window'\]"),
    ([dict(data_src="loss", method_name="mean", window_size=0)], ValueError, "positive int"),
    ([dict(data_src="loss", method_name="mean", window_size="all")], ValueError,
     "'epoch' or 'global', got 'all'"),
    ([dict(data_src="loss", method_name="mean", window_size=2.5)], TypeError, "got 2.5"),
    ([dict(data_src="loss", method_name="current", window_size=3)], ValueError,
     "'current' takes no window_size"),
    (["loss"], TypeError, r"custom_cfg\[0\] must be a dict"),
    (dict(data_src="loss", method_name="mean"), TypeError, "must be a list of dicts"),
])
def test_custom_cfg_errors(custom_cfg, error, message):
    with pytest.raises(error, match=message):
        LogProcessor(custom_cfg=custom_cfg)


def test_epoch_window_needs_by_epoch():
    cfg = [dict(data_src="loss", method_name="mean", window_size="epoch")]
    with pytest.raises(ValueError, match="window_size='epoch' needs by_epoch=True"):
        LogProcessor(by_epoch=False, custom_cfg=cfg)
    LogProcessor(by_epoch=True, custom_cfg=cfg)


@pytest.mark.parametrize("kwargs", [dict(window_size=0), dict(num_digits=-1),
                                    dict(mean_pattern="(")])
def test_argument_errors(kwargs):
    with pytest.raises(ValueError, match="log_processor"):
        LogProcessor(**kwargs)


def test_num_digits(hub):
    fill_train(hub)
    _, log_str = LogProcessor(num_digits=2).get_log_after_iter(make_runner(hub), 0, "train")
    assert "lr: 6.67e-04" in log_str and "time: 1.05  data_time: 0.11  loss: 10.50" in log_str


def test_log_with_hierarchy(hub):
    fill_train(hub)
    tag, log_str = LogProcessor(log_with_hierarchy=True).get_log_after_iter(
        make_runner(hub, it=9), 9, "train")
    assert tag["train/loss"] == pytest.approx(10.5) and tag["train/lr"] == pytest.approx(0.01 / 15)
    assert "loss" not in tag and tag["epoch"] == 1 and tag["iter"] == 10
    assert "lr: 6.6667e-04" in log_str and "train/" not in log_str


def fill_val(hub):
    for i in range(1, 6):
        hub.update_scalar("val/data_time", 0.001 * i)
        hub.update_scalar("val/time", 0.01 * i)
    hub.update_info("eta", 12)


def test_val_and_test_iter_lines(hub):
    fill_val(hub)
    hub.update_scalar("val/accuracy/top1", 90.0)
    runner = make_runner(hub, epoch=1, it=27, val_len=50)
    tag, log_str = LogProcessor().get_log_after_iter(runner, 4, "val")
    assert log_str == "Epoch(val) [1][ 5/50]    eta: 0:00:12  time: 0.0300  data_time: 0.0030  "
    assert tag["epoch"] == 1 and tag["iter"] == 28
    hub.update_scalar("test/time", 0.5)
    hub.update_scalar("test/data_time", 0.25)
    _, log_str = LogProcessor().get_log_after_iter(runner, 4, "test")
    assert log_str == "Epoch(test) [5/5]    eta: 0:00:12  time: 0.5000  data_time: 0.2500  "
    _, log_str = LogProcessor(by_epoch=False).get_log_after_iter(runner, 4, "val")
    assert log_str.startswith("Iter(val) [ 5/50]    eta: 0:00:12")


def test_val_epoch_line(hub):
    fill_val(hub)
    hub.update_scalar("val/accuracy/top1", 96.11111)
    tag, log_str = LogProcessor().get_log_after_epoch(make_runner(hub, epoch=1), 4, "val")
    assert log_str == ("Epoch(val) [1][5/5]    accuracy/top1: 96.1111  data_time: 0.0030  "
                       "time: 0.0300")
    assert list(tag) == ["accuracy/top1", "data_time", "time"]
    assert tag["time"] == pytest.approx(0.03)  # the epoch's mean: batch_idx + 1 = 5 values


def test_epoch_line_time_covers_the_epoch_only(hub):
    for value in (9.0, 9.0, 1.0, 2.0, 3.0):  # two stale values from an earlier epoch
        hub.update_scalar("val/time", value)
        hub.update_scalar("val/data_time", value)
    tag, _ = LogProcessor().get_log_after_epoch(make_runner(hub, val_len=3), 2, "val")
    assert tag["time"] == pytest.approx(2.0)


def test_test_epoch_with_non_scalars(hub):
    hub.update_scalar("test/accuracy", 0.5)
    hub.update_scalar("test/time", 0.2)
    hub.update_scalar("test/data_time", 0.1)
    hub.update_info("test/confusion", np.array([[1, 0], [0, 1]]))
    tag, log_str = LogProcessor().get_log_after_epoch(make_runner(hub), 4, "test")
    assert "confusion" not in tag
    assert log_str.startswith("Epoch(test) [5/5]    accuracy: 0.5000  confusion: \n[[1 0]\n")
    assert log_str.endswith("data_time: 0.1000")
    tag, _ = LogProcessor().get_log_after_epoch(make_runner(hub), 4, "test",
                                                with_non_scalar=True)
    assert list(tag) == ["accuracy", "confusion", "time", "data_time"]
    _, log_str = LogProcessor(by_epoch=False).get_log_after_epoch(make_runner(hub), 4, "test")
    assert log_str.startswith("Iter(test) [5/5]    accuracy: 0.5000")


def test_without_train_loop_epoch_and_iter_are_zero(hub):
    fill_val(hub)
    runner = make_runner(hub, epoch=3, it=50, with_train_loop=False)
    assert not has_train_loop(runner)
    tag, log_str = LogProcessor().get_log_after_iter(runner, 0, "val")
    assert tag["epoch"] == 0 and tag["iter"] == 0
    assert log_str.startswith("Epoch(val)[0][1/5]  ")
    _, log_str = LogProcessor().get_log_after_epoch(runner, 4, "val")
    assert log_str.startswith("Epoch(val) [0][5/5]  ")


def test_has_train_loop_without_private_attribute():
    runner = SimpleNamespace(train_loop=SimpleNamespace())
    assert has_train_loop(runner)
    assert not has_train_loop(SimpleNamespace(train_loop=None))
    assert not has_train_loop(SimpleNamespace(train_loop={"type": "EpochBasedTrainLoop"}))

    class NoLoop:
        @property
        def train_loop(self):
            raise RuntimeError("no train loop configured")

    assert not has_train_loop(NoLoop())


def test_mode_is_checked(hub):
    with pytest.raises(ValueError, match="mode must be one of"):
        LogProcessor().get_log_after_iter(make_runner(hub), 0, "predict")
    with pytest.raises(ValueError, match=r"\['val', 'test'\]"):
        LogProcessor().get_log_after_epoch(make_runner(hub), 0, "train")


def test_registered():
    processor = LOG_PROCESSORS.build(dict(type="LogProcessor", window_size=3, by_epoch=False))
    assert isinstance(processor, LogProcessor)
    assert processor.window_size == 3 and processor.by_epoch is False


def test_long_history_is_cheap(hub):
    """Windowed means read the last N values only, so a long run does not slow logging."""
    for i in range(200_000):
        hub.update_scalar("train/loss", float(i))
    processor, runner = LogProcessor(window_size=10), make_runner(hub)
    start = time.perf_counter()
    for _ in range(200):
        tag, _ = processor.get_log_after_iter(runner, 0, "train")
    # Re-reading the whole history costs milliseconds per call; the window costs microseconds.
    assert time.perf_counter() - start < 0.5
    assert tag["loss"] == pytest.approx(sum(range(199_990, 200_000)) / 10)


# --- side by side with MMEngine ---------------------------------------------------------------

def _fill_both(hubs, seed=0):
    rng = random.Random(seed)
    for i in range(37):
        values = {"train/lr": 0.1 * 0.97 ** i, "train/loss": rng.uniform(0, 3),
                  "train/loss_cls": rng.uniform(0, 2), "train/time": rng.uniform(0.01, 0.2),
                  "train/data_time": rng.uniform(0, 0.02), "train/grad_norm": rng.uniform(0, 9),
                  "train/momentum": 0.9}
        for hub in hubs:
            for key, value in values.items():
                hub.update_scalar(key, value)
    for _ in range(8):
        values = {"val/data_time": rng.uniform(0, 0.01), "val/time": rng.uniform(0.01, 0.1)}
        for hub in hubs:
            for key, value in values.items():
                hub.update_scalar(key, value)
    for hub in hubs:
        hub.update_scalar("val/accuracy/top1", 96.11111)
        hub.update_info("eta", 4000.9)


@pytest.mark.parametrize("kwargs", [
    dict(), dict(by_epoch=False), dict(window_size=3, num_digits=2),
    dict(log_with_hierarchy=True),
    dict(custom_cfg=[dict(data_src="loss", method_name="mean", window_size="global",
                          log_name="loss_global"),
                     dict(data_src="loss_cls", method_name="max", window_size=5),
                     dict(data_src="time", method_name="mean", window_size="epoch")]),
])
def test_matches_mmengine(kwargs, monkeypatch):
    mmengine_logging = pytest.importorskip("mmengine.logging")
    from mmengine.runner import LogProcessor as MMLogProcessor

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ours_hub = MessageHub("ours")
    theirs_hub = mmengine_logging.MessageHub("theirs")
    _fill_both([ours_hub, theirs_hub])
    ours, theirs = LogProcessor(**kwargs), MMLogProcessor(**kwargs)
    ours_runner = make_runner(ours_hub, epoch=1, it=36, max_epochs=12, train_len=28, val_len=8)
    theirs_runner = make_runner(theirs_hub, epoch=1, it=36, max_epochs=12, train_len=28,
                                val_len=8)
    for mode in ("train", "val", "test"):
        ours_tag, ours_str = ours.get_log_after_iter(ours_runner, 8, mode)
        theirs_tag, theirs_str = theirs.get_log_after_iter(theirs_runner, 8, mode)
        assert ours_str == theirs_str
        assert ours_tag == pytest.approx(dict(theirs_tag))
    for mode in ("val", "test"):
        ours_tag, ours_str = ours.get_log_after_epoch(ours_runner, 7, mode)
        theirs_tag, theirs_str = theirs.get_log_after_epoch(theirs_runner, 7, mode)
        assert ours_str == theirs_str
        assert list(ours_tag) == list(theirs_tag)
        assert ours_tag == pytest.approx(dict(theirs_tag))
