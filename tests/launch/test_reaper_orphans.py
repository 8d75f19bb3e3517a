"""The reaper's orphan rule on real processes, without Ray: an orphan (reparented to init) that
names the instance's session directory is stopped only if it started after the reaper's last
record; one that was already running then (a user's ``nohup tail -f`` of a log there, say) was
never part of the instance and is left alone."""
from __future__ import annotations

import subprocess
import sys
import time

import psutil

from raytrainer.launch.driver.reaper import Instance

SLEEPER = "import sys, time; time.sleep(float(sys.argv[1]))"
# A stand-in driver: its child names the session directory Ray would name after the driver's
# pid, as Ray's GCS and raylet do.
DRIVER = f"""
import os, subprocess, sys, time
session = f"{{sys.argv[1]}}/session_2026-12-08_00-00-00_123456_{{os.getpid()}}"
child = subprocess.Popen([sys.executable, "-c", {SLEEPER!r}, "60", session + "/raylet"])
print(session, child.pid, flush=True)
time.sleep(60)
"""


def _orphan(session_dir: str) -> psutil.Process:
    """A process naming ``session_dir`` whose parent exited (so its parent is init)."""
    line = f'"{sys.executable}" -c "{SLEEPER}" 60 {session_dir}/logs >/dev/null 2>&1 & echo $!'
    out = subprocess.run(["sh", "-c", line], capture_output=True, text=True, check=True).stdout
    process = psutil.Process(int(out.split()[-1]))
    deadline = time.monotonic() + 10
    while process.ppid() != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.ppid() == 1
    return process


def test_only_orphans_started_after_the_last_record_are_the_instances(tmp_path):
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    orphans: list[psutil.Process] = []
    try:
        session_dir, member = driver.stdout.readline().split()
        orphans.append(_orphan(session_dir))  # a user's process, running before the record
        time.sleep(1.5)  # past the slack allowed for psutil's whole-second boot time
        instance = Instance(driver.pid)
        instance.record()
        assert instance.session_dir == session_dir
        orphans.append(_orphan(session_dir))  # the instance's, orphaned after the record
        left = {process.pid for process in instance.left()}
        assert left == {int(member), orphans[1].pid}
    finally:
        for process in orphans:
            process.kill()
        for process in psutil.Process(driver.pid).children(recursive=True):
            process.kill()
        driver.kill()
        driver.wait()
