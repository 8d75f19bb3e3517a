"""A driver with a private local Ray instance (raytrainer.launch.driver.cluster.connect), an actor
that has a child process of its own, and nothing else: prints ``ready`` and waits until its
stdin closes (then ends the instance as a run does) or it is killed."""
from __future__ import annotations

import os
import subprocess
import sys

import ray

from raytrainer.config.ray_settings import RaySettings
from raytrainer.launch.driver.cluster import connect


@ray.remote(num_cpus=0)
class Holder:
    def start(self) -> int:
        self.child = subprocess.Popen(["sleep", "600"])  # like a DataLoader worker
        return self.child.pid


if __name__ == "__main__":
    with connect(RaySettings.from_config(dict(num_cpus=1)), log_to_driver=False):
        holder = Holder.remote()
        print("ready", ray.get(holder.start.remote()), flush=True)
        sys.stdin.read()
    print("done", os.getpid(), flush=True)
