"""LoggerHook: when it logs, what reaches the visualizer, the test JSON, copying logs out."""
from __future__ import annotations

import json
import logging
import uuid
from types import SimpleNamespace

import numpy as np
import pytest

from raytrainer import storage
from raytrainer.hooks.hook import get_priority
from raytrainer.hooks.logger_hook import LoggerHook
from raytrainer.logging import MessageHub, MMLogger
from raytrainer.registry import HOOKS
from raytrainer.runner.log_processor import LogProcessor
from raytrainer.visualization import Visualizer

TIMESTAMP = "20240101_120000"


class ListHandler(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def runner(tmp_path):
    """A runner with a real message hub, logger (file in log_dir), processor and visualizer."""
    name = f"logger-hook-{uuid.uuid4().hex}"
    work_dir = tmp_path / "work" / "my_exp"
    log_dir = work_dir / TIMESTAMP
    logger = MMLogger(name, log_file=str(log_dir / f"{TIMESTAMP}.log"))
    messages = ListHandler()
    logger.addHandler(messages)
    visualizer = Visualizer.get_instance(name, save_dir=str(log_dir),
                                         vis_backends=[dict(type="LocalVisBackend")])
    train_loader, val_loader, test_loader = list(range(12)), list(range(4)), list(range(3))
    loop = SimpleNamespace(dataloader=train_loader, max_iters=36)
    runner = SimpleNamespace(
        message_hub=MessageHub(name), logger=logger, visualizer=visualizer,
        log_processor=LogProcessor(), epoch=0, iter=0, max_epochs=3, max_iters=36,
        train_loop=loop, train_dataloader=train_loader, val_dataloader=val_loader,
        test_dataloader=test_loader, work_dir=str(work_dir), log_dir=str(log_dir),
        timestamp=TIMESTAMP, experiment_name=f"my_exp_{TIMESTAMP}", rank=0, world_size=1,
        messages=messages.messages)
    yield runner
    visualizer.close()
    logger.close()
    Visualizer.drop_instance(name)
    MMLogger.drop_instance(name)


def train(hook, runner, n_iters, dataloader_len=12):
    """Drive after_train_iter the way an epoch-based loop does."""
    runner.train_dataloader = list(range(dataloader_len))
    for it in range(n_iters):
        runner.iter = it
        batch_idx = it % dataloader_len
        runner.message_hub.update_scalar("train/lr", 0.1)
        runner.message_hub.update_scalar("train/loss", float(it + 1))
        hook.after_train_iter(runner, batch_idx)
        if batch_idx == dataloader_len - 1:
            runner.epoch += 1


def train_lines(runner):
    return [m for m in runner.messages if m.startswith("Epoch(train)")]


def scalar_lines(runner, name="scalars.json"):
    location = storage.join(runner.log_dir, "vis_data", name)
    return [json.loads(line) for line in storage.read_text(location).splitlines()]


def test_logs_every_interval_and_ignores_last(runner):
    hook = LoggerHook(interval=10)
    hook.before_run(runner)
    train(hook, runner, 25)
    # iterations 10 and 22 (the 10th batch of epochs 1 and 2); the last 2 of each epoch ignored
    assert [line.split("  ")[0] for line in train_lines(runner)] == [
        "Epoch(train) [1][10/12]", "Epoch(train) [2][10/12]"]
    assert [line["step"] for line in scalar_lines(runner)] == [10, 22]
    assert scalar_lines(runner)[0] == {"lr": 0.1, "loss": 5.5, "epoch": 1, "iter": 10,
                                       "step": 10}
    assert scalar_lines(runner, f"{TIMESTAMP}.json") == scalar_lines(runner)


def test_logs_epoch_end_without_ignore_last(runner):
    hook = LoggerHook(interval=10, ignore_last=False)
    hook.before_run(runner)
    train(hook, runner, 25)
    assert [line["step"] for line in scalar_lines(runner)] == [10, 12, 22, 24]
    assert train_lines(runner)[1] == "Epoch(train) [1][12/12]  lr: 1.0000e-01  loss: 7.5000"


def test_short_epoch_always_logged_at_its_end(runner):
    hook = LoggerHook(interval=10, ignore_last=True)
    train(hook, runner, 10, dataloader_len=5)
    assert [line["step"] for line in scalar_lines(runner)] == [5, 10]


def test_experiment_name_interval(runner):
    hook = LoggerHook(interval=10, interval_exp_name=5)
    train(hook, runner, 25)
    exp_lines = [m for m in runner.messages if m == f"Exp name: my_exp_{TIMESTAMP}"]
    assert len(exp_lines) == 7  # iterations 5, 10, 15, 20, 25 and the epoch ends 12, 24


def test_val_and_test_iterations(runner):
    hook = LoggerHook(interval=2)
    for batch_idx in range(4):
        hook.after_val_iter(runner, batch_idx)
    for batch_idx in range(3):
        hook.after_test_iter(runner, batch_idx)
    assert [m.split("  ")[0] for m in runner.messages] == [
        "Epoch(val) [0][2/4]", "Epoch(val) [0][4/4]", "Epoch(test) [2/3]"]


def fill_val(runner, accuracy=90.0):
    for i in range(4):
        runner.message_hub.update_scalar("val/data_time", 0.001)
        runner.message_hub.update_scalar("val/time", 0.01 * (i + 1))
    runner.message_hub.update_scalar("val/accuracy", accuracy)


def test_val_epoch_step_is_epoch(runner):
    hook = LoggerHook()
    runner.epoch, runner.iter = 2, 23
    fill_val(runner)
    hook.after_val_epoch(runner, {"accuracy": 90.0})
    assert runner.messages[-1] == ("Epoch(val) [2][4/4]    accuracy: 90.0000  "
                                   "data_time: 0.0010  time: 0.0250")
    assert scalar_lines(runner) == [{"accuracy": 90.0, "data_time": 0.001, "time": 0.025,
                                     "step": 2}]


@pytest.mark.parametrize(("hook_kwargs", "by_epoch"), [(dict(log_metric_by_epoch=False), True),
                                                       (dict(), False)])
def test_val_epoch_step_is_iter(runner, hook_kwargs, by_epoch):
    runner.log_processor = LogProcessor(by_epoch=by_epoch)
    runner.epoch, runner.iter = 2, 23
    fill_val(runner)
    LoggerHook(**hook_kwargs).after_val_epoch(runner)
    assert scalar_lines(runner)[0]["step"] == 23


def test_val_epoch_without_train_loop_uses_step_zero(runner):
    runner.train_loop = None
    runner.epoch, runner.iter = 5, 50
    fill_val(runner)
    LoggerHook().after_val_epoch(runner)
    assert scalar_lines(runner)[0]["step"] == 0


def test_test_epoch_writes_json(runner):
    hook = LoggerHook()
    hook.before_run(runner)
    runner.message_hub.update_scalar("test/accuracy", 0.75)
    runner.message_hub.update_scalar("test/time", 0.5)
    runner.message_hub.update_scalar("test/data_time", 0.25)
    runner.message_hub.update_info("test/confusion", np.array([[1, 0], [0, 1]]))
    hook.after_test_epoch(runner)
    assert runner.messages[-1].startswith("Epoch(test) [3/3]    accuracy: 0.7500  confusion:")
    written = json.loads(storage.read_text(f"{runner.log_dir}/{TIMESTAMP}.json"))
    assert written == {"accuracy": 0.75, "confusion": [[1, 0], [0, 1]], "time": 0.5,
                       "data_time": 0.25}


def test_test_epoch_json_on_rank_zero_only(runner):
    runner.rank = 1
    runner.message_hub.update_scalar("test/accuracy", 0.75)
    LoggerHook().after_test_epoch(runner)
    assert not storage.exists(f"{runner.log_dir}/{TIMESTAMP}.json")


def _run_with_out_dir(runner, out_dir, **hook_kwargs):
    hook = LoggerHook(interval=10, out_dir=out_dir, **hook_kwargs)
    hook.before_run(runner)
    runner.visualizer.add_config(SimpleNamespace(pretty_text="a = 1\n"))
    storage.write_text(f"{runner.log_dir}/model.pth", "not a log")
    storage.write_text(f"{runner.log_dir}/extra/params.yaml", "lr: 0.1\n")
    train(hook, runner, 12)
    hook.after_run(runner)
    return f"{out_dir}/my_exp/{TIMESTAMP}"


def test_after_run_copies_logs(runner):
    out_dir = f"memory://{uuid.uuid4().hex}/logs"
    target = _run_with_out_dir(runner, out_dir)
    assert storage.read_text(f"{target}/vis_data/config.py") == "a = 1\n"
    assert storage.read_text(f"{target}/extra/params.yaml") == "lr: 0.1\n"
    copied_scalars = storage.read_text(f"{target}/vis_data/scalars.json").splitlines()
    assert [json.loads(line)["step"] for line in copied_scalars] == [10]
    assert "Epoch(train) [1][10/12]" in storage.read_text(f"{target}/{TIMESTAMP}.log")
    assert not storage.exists(f"{target}/model.pth")
    assert f"Text logs will be saved to {target} after the run." in runner.messages
    assert storage.exists(f"{runner.log_dir}/{TIMESTAMP}.log")  # keep_local


def test_after_run_removes_local_copies(runner):
    out_dir = f"memory://{uuid.uuid4().hex}/logs"
    target = _run_with_out_dir(runner, out_dir, keep_local=False)
    assert storage.exists(f"{target}/{TIMESTAMP}.log")
    assert not storage.exists(f"{runner.log_dir}/{TIMESTAMP}.log")
    assert not storage.exists(f"{runner.log_dir}/vis_data/scalars.json")
    assert storage.exists(f"{runner.log_dir}/model.pth")  # not a log: left alone


def test_after_run_without_out_dir_closes_visualizer(runner):
    hook = LoggerHook()
    hook.before_run(runner)
    train(hook, runner, 10)
    hook.after_run(runner)
    assert runner.visualizer.get_backend("LocalVisBackend")._streams == {}


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    (dict(interval=0), ValueError, "interval must be greater than 0"),
    (dict(interval=2.5), TypeError, "interval must be an int"),
    (dict(interval_exp_name=0), ValueError, "interval_exp_name must be greater than 0"),
    (dict(ignore_last=1), TypeError, "ignore_last must be a bool"),
    (dict(keep_local="no"), TypeError, "keep_local must be a bool"),
    (dict(out_suffix=[".log", 3]), TypeError, "out_suffix must be a str or a list of str"),
])
def test_argument_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        LoggerHook(**kwargs)


@pytest.mark.parametrize("ignore_last", [True, False])
@pytest.mark.parametrize("dataloader_len", [12, 5])
def test_schedule_matches_mmengine(ignore_last, dataloader_len):
    mmengine_hooks = pytest.importorskip("mmengine.hooks")

    def record(hook):
        logged, steps = [], []
        hub = MessageHub(f"schedule-{uuid.uuid4().hex}")
        runner = SimpleNamespace(
            message_hub=hub, log_processor=LogProcessor(), epoch=0, iter=0, max_epochs=5,
            max_iters=5 * dataloader_len, train_loop=SimpleNamespace(), experiment_name="exp",
            timestamp=TIMESTAMP, work_dir="work",
            logger=SimpleNamespace(info=lambda message, **_: logged.append(message)),
            visualizer=SimpleNamespace(
                add_scalars=lambda tag, step, file_path: steps.append((step, file_path))),
            messages=logged)
        hook.before_run(runner)
        train(hook, runner, 25, dataloader_len)
        return logged, steps

    kwargs = dict(interval=4, ignore_last=ignore_last, interval_exp_name=7)
    ours = record(LoggerHook(**kwargs))
    theirs = record(mmengine_hooks.LoggerHook(**kwargs))
    assert ours == theirs
    assert ours[1]  # something was logged


def test_registered_with_below_normal_priority():
    hook = HOOKS.build(dict(type="LoggerHook", interval=5, out_suffix=".log"))
    assert isinstance(hook, LoggerHook) and hook.out_suffix == (".log",)
    assert get_priority(hook.priority) == get_priority("BELOW_NORMAL")
    assert {"after_train_iter", "after_val_epoch", "after_run"} <= set(
        hook.get_triggered_stages())
