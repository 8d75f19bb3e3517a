"""The work_dir lease: a second live run in a work_dir is refused, with real processes on a
local directory and on S3; stale leases and resumes of the same run take it over."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from raytrainer import checkpoint as ckpt
from raytrainer import storage
from raytrainer.hooks import Hook
from raytrainer.runner import Runner
from raytrainer.runner.lease import (
    LEASE_FILE,
    LeaseExpiredError,
    WorkDirInUseError,
    WorkDirLease,
    read_lease,
)

from ..test_cli import ROOT, run_cli
from .helpers import runner_kwargs


def _config(tmp_path, release: str | None = None) -> str:
    hooks = f"[dict(type='tests.checkpoint.process_hooks.WaitForFile', path={release!r})]" \
        if release else "[]"
    path = tmp_path / f"cfg_{time.monotonic_ns()}.py"
    path.write_text(f"_base_ = [{os.path.join(ROOT, 'configs/digits/mlp.py')!r}]\n"
                    "train_cfg = dict(max_epochs=1, val_interval=1)\n"
                    "default_hooks = dict(logger=dict(interval=50))\n"
                    f"custom_hooks = {hooks}\n")
    return str(path)


def _start(config: str, work_dir: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "raytrainer.cli", "train", config,
                             "--launcher", "none", "--work-dir", work_dir, *extra], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(location: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not storage.exists(location):
        assert time.monotonic() < deadline, f"{location} never appeared"
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_second_live_run_in_the_work_dir_is_refused(tmp_path, where, request):
    root = str(tmp_path / "runs") if where == "local" else request.getfixturevalue("s3_bucket")
    work_dir = storage.join(root, "shared")
    release = str(tmp_path / "release")
    first = _start(_config(tmp_path, release), work_dir)
    try:
        _wait_for(storage.join(work_dir, LEASE_FILE))
        second = run_cli("train", _config(tmp_path), "--launcher", "none",
                         "--work-dir", work_dir)
        assert second.returncode == 1, second.stdout
        assert f"work_dir {work_dir} is in use by run cfg_" in second.stderr
        assert f"pid {first.pid}" in second.stderr
        assert "resume it with --resume" in second.stderr
        open(release, "w").close()
        out, err = first.communicate(timeout=300)
    finally:
        first.kill()
    assert first.returncode == 0, err
    root = storage.join(work_dir, "checkpoints")
    assert [os.path.basename(x) for x in ckpt.list_checkpoints(root)] == ["epoch_1"]
    assert not storage.exists(storage.join(work_dir, LEASE_FILE))  # released at the end


def _fake_lease(work_dir: str, lineage: str, age: float) -> None:
    now = time.time()
    record = dict(token="dead", run="gone_run", lineage=lineage, holder="elsewhere pid 1",
                  started=now - age - 5, heartbeat=now - age)
    storage.makedirs(work_dir)
    storage.write_text(storage.join(work_dir, LEASE_FILE), json.dumps(record))


def _runner(work_dir, **overrides) -> Runner:
    return Runner(**runner_kwargs(work_dir, epochs=1, val=False, **overrides))


def test_a_stale_lease_is_taken_over_and_a_fresh_one_refused(tmp_path, capsys):
    work_dir = str(tmp_path / "run")
    _fake_lease(work_dir, "20200101_000000", age=10)
    with pytest.raises(WorkDirInUseError, match=r"is in use by run gone_run \(lineage "
                       r"20200101_000000\) on elsewhere pid 1 since .*, last heartbeat \d+ s ago"):
        _runner(work_dir).train()
    assert not os.path.exists(os.path.join(work_dir, "checkpoints"))  # nothing was written
    _fake_lease(work_dir, "20200101_000000", age=3600)
    _runner(work_dir).train()
    assert "sent no heartbeat for 3600 s; taking its lease over" in capsys.readouterr().out
    assert not storage.exists(storage.join(work_dir, LEASE_FILE))


def test_a_resume_of_the_same_run_takes_its_lease_over_at_once(tmp_path, capsys):
    work_dir = str(tmp_path / "run")
    first = _runner(work_dir)
    first.train()
    lineage = first.checkpoints.lineage
    _fake_lease(work_dir, lineage, age=1)  # its process died a second ago
    with pytest.raises(WorkDirInUseError, match="is in use by run gone_run"):
        _runner(work_dir).train()  # a fresh run is refused
    resumed = _runner(work_dir, resume=True, train_cfg=dict(by_epoch=True, max_epochs=2))
    resumed.train()
    assert resumed.checkpoints.lineage == lineage and resumed.epoch == 2
    assert f"resuming run gone_run (lineage {lineage}); taking its lease over" in \
        capsys.readouterr().out


def test_of_runs_started_together_exactly_one_holds_the_lease(tmp_path):
    work_dir = str(tmp_path / "run")
    leases = [WorkDirLease(work_dir, f"run{i}", f"lineage{i}") for i in range(4)]
    outcomes: list = [None] * len(leases)

    def take(i: int) -> None:
        try:
            leases[i].acquire()
            outcomes[i] = "held"
        except WorkDirInUseError as exc:
            outcomes[i] = str(exc)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(len(leases))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert outcomes.count("held") == 1, outcomes
        assert read_lease(work_dir).token == leases[outcomes.index("held")].token
        # a loser names whichever record it read back (possibly another loser's, written
        # after the winner's and overwritten again)
        assert all(" is in use by run run" in o for o in outcomes if o != "held"), outcomes
    finally:
        for lease in leases:
            lease.release()
    assert not storage.exists(storage.join(work_dir, LEASE_FILE))


def test_the_ray_driver_resuming_its_own_run_takes_the_lease_over(tmp_path):
    # What a resubmitted driver does (decide_run, then WorkDirLease) after its predecessor
    # was killed with the lease still fresh; the Ray run itself is not needed for this.
    from raytrainer.config import Config
    from raytrainer.launch.run_spec import decide_run

    work_dir = str(tmp_path / "run")
    first = _runner(work_dir, default_hooks=dict(checkpoint=dict(type="CheckpointHook")))
    first.train()
    _fake_lease(work_dir, first.checkpoints.lineage, age=1)
    cfg = Config(dict(work_dir=work_dir, resume=True))
    spec = decide_run(cfg)
    assert spec.lineage == first.checkpoints.lineage and spec.resume
    with WorkDirLease(spec.work_dir, spec.experiment_name, spec.lineage,
                      resuming=bool(spec.resume)):
        assert read_lease(work_dir).run == spec.experiment_name
    _fake_lease(work_dir, first.checkpoints.lineage, age=1)
    fresh = decide_run(Config(dict(work_dir=work_dir)))  # not a resume: refused
    with pytest.raises(WorkDirInUseError, match="in use by run gone_run"):
        WorkDirLease(fresh.work_dir, fresh.experiment_name, fresh.lineage).acquire()


def test_a_resume_does_not_take_over_from_a_live_process_on_this_machine(tmp_path):
    work_dir = str(tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        record = dict(token="t", run="live_run", lineage="L1",
                      holder=f"{socket.gethostname()} pid {holder.pid}",
                      started=time.time(), heartbeat=time.time())
        storage.write_text(storage.join(work_dir, LEASE_FILE), json.dumps(record))
        with pytest.raises(WorkDirInUseError, match="is in use by run live_run"):
            WorkDirLease(work_dir, "again", "L1", resuming=True).acquire()
    finally:
        holder.kill()
        holder.wait()
    lease = WorkDirLease(work_dir, "again", "L1", resuming=True)
    lease.acquire()  # its holder is gone now: the resume takes the lease over at once
    lease.release()


def test_a_run_whose_lease_is_taken_over_stops_writing(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYTRAINER_LEASE_HEARTBEAT_S", "0.2")
    work_dir = str(tmp_path / "run")
    called = threading.Event()
    lease = WorkDirLease(work_dir, "first", "L1", on_lost=called.set)
    lease.acquire()
    try:
        lease.check()  # still ours
        other = dict(token="other", run="second", lineage="L2", holder="elsewhere pid 7",
                     started=time.time(), heartbeat=time.time())
        storage.write_text(storage.join(work_dir, LEASE_FILE), json.dumps(other))
        assert called.wait(10)
        with pytest.raises(WorkDirInUseError, match="run second on elsewhere pid 7 took this "
                                                    "run's lease over; this run stopped"):
            lease.check()
    finally:
        lease.release()
    assert read_lease(work_dir).token == "other"  # the other run's record is left alone


class _TakeOverAtIter3(Hook):
    """After iteration 3, another run writes its record over this run's lease and waits until
    a heartbeat (0.2 s apart in these tests) has noticed."""

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter == 3:
            other = dict(token="other", run="second", lineage="L2", holder="elsewhere pid 7",
                         started=time.time(), heartbeat=time.time())
            storage.write_text(storage.join(runner.work_dir, LEASE_FILE), json.dumps(other))
            time.sleep(1.0)


def test_a_runner_stops_at_its_next_save_once_its_lease_is_taken_over(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYTRAINER_LEASE_HEARTBEAT_S", "0.2")
    work_dir = str(tmp_path / "run")
    runner = Runner(**runner_kwargs(work_dir, iters=8, val=False, custom_hooks=[_TakeOverAtIter3()],
                                    default_hooks=dict(checkpoint=dict(
                                        type="CheckpointHook", interval=5, by_epoch=False))))
    with pytest.raises(WorkDirInUseError, match="took this run's lease over"):
        runner.train()
    assert not os.path.exists(os.path.join(work_dir, "checkpoints", "iter_5"))


def test_a_single_process_run_stops_at_the_next_iteration_once_its_lease_is_lost(
        tmp_path, monkeypatch):
    """No checkpoint is due (interval 1000, no last save): the loop checks the lease at every
    iteration, so the run does not train on in a work_dir another run owns."""
    monkeypatch.setenv("RAYTRAINER_LEASE_HEARTBEAT_S", "0.2")
    runner = Runner(**runner_kwargs(str(tmp_path / "run"), iters=60, val=False,
                                    custom_hooks=[_TakeOverAtIter3()],
                                    default_hooks=dict(checkpoint=dict(
                                        type="CheckpointHook", interval=1000, by_epoch=False,
                                        save_last=False))))
    with pytest.raises(WorkDirInUseError, match="took this run's lease over"):
        runner.train()
    assert runner.iter == 4  # the iteration after the take-over was never started


def _held_lease_on_s3(s3_bucket, monkeypatch, called: threading.Event) -> WorkDirLease:
    monkeypatch.setenv("RAYTRAINER_LEASE_HEARTBEAT_S", "0.2")
    monkeypatch.setenv("RAYTRAINER_LEASE_STALE_S", "2")
    lease = WorkDirLease(storage.join(s3_bucket, "run"), "first", "L1", on_lost=called.set)
    lease.acquire()
    assert lease.expire_after_s == pytest.approx(1.8)
    return lease


@pytest.mark.parametrize("outage", ["dead", "frozen"])
def test_a_run_whose_heartbeat_fails_stops_before_its_lease_goes_stale(
        s3_bucket, s3_server, monkeypatch, outage):
    from ..storage.frozen_endpoint import FrozenEndpoint

    called = threading.Event()
    lease = _held_lease_on_s3(s3_bucket, monkeypatch, called)
    with FrozenEndpoint() as frozen:
        # a frozen endpoint: each heartbeat write blocks for 5 x 30 s, far past the deadline
        endpoint = frozen if outage == "frozen" else "http://127.0.0.1:9"
        storage.set_storage_options({"endpoint_url": endpoint, "config_kwargs": {
            "read_timeout": 30}}, protocol="s3")
        began = time.monotonic()
        try:
            assert called.wait(30), "the run was never told to stop"
            stopped_after = time.monotonic() - began
            with pytest.raises(WorkDirInUseError) as info:
                lease.check()
        finally:
            released = time.monotonic()
            lease.release()  # still in the outage: one try, given up on after 0.2 s
            released_after = time.monotonic() - released
            storage.set_storage_options({"endpoint_url": s3_server}, protocol="s3")
    assert released_after < 5, released_after
    assert read_lease(lease.work_dir).token == lease.token  # left to go stale
    assert isinstance(info.value, LeaseExpiredError)
    message = str(info.value)
    assert message.startswith(f"work_dir {s3_bucket}/run: the lease {s3_bucket}/run/"
                              f"{LEASE_FILE} could not be renewed for "), message
    assert "another run may take the work_dir over" in message
    if outage == "dead":
        assert "EndpointConnectionError" in message
    else:
        assert "the storage call did not return before the deadline" in message
    # the deadline is 1.8 s after the last heartbeat written (0.2 s at most before the outage)
    assert stopped_after < 15, stopped_after


def test_the_stale_time_must_exceed_the_heartbeat(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYTRAINER_LEASE_HEARTBEAT_S", "30")
    monkeypatch.setenv("RAYTRAINER_LEASE_STALE_S", "20")
    with pytest.raises(ValueError, match="RAYTRAINER_LEASE_STALE_S \\(20 s\\) must be more than "
                                         "RAYTRAINER_LEASE_HEARTBEAT_S \\(30 s\\)"):
        WorkDirLease(str(tmp_path), "run", "L1")
