"""Run a check inside a fresh process that holds a one-rank gloo process group.

Tests that need ``torch.distributed`` (a real ``DistributedDataParallel``) run it in a spawned
child, never in the pytest process: a process group there would outlive a failing test and
leak into the ones after it, and a stuck collective could hang the suite. The child is killed
after ``timeout`` seconds and its error is raised here.
"""
from __future__ import annotations

import multiprocessing
import pickle
import traceback
from collections.abc import Callable
from typing import Any

from raytrainer.utils.net import free_port  # tests take it from here too


def _child(fn: Callable, args: tuple, port: int, out: Any) -> None:
    import torch.distributed as dist

    try:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0,
                                world_size=1)
        try:
            result = ("ok", fn(*args))
        finally:
            dist.destroy_process_group()
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        result = ("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
    out.send(pickle.dumps(result))
    out.close()


def run_in_gloo_process(fn: Callable, *args: Any, timeout: float = 120.0) -> Any:
    """``fn(*args)`` in a spawned process with a one-rank gloo group; its return value.

    ``fn`` must be importable (a module-level function) and return something picklable.
    """
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(fn, args, free_port(), send), daemon=True)
    process.start()
    send.close()
    try:
        if not receive.poll(timeout):
            raise AssertionError(f"{fn.__name__} did not finish within {timeout:.0f} s")
        status, value = pickle.loads(receive.recv())
    finally:
        process.join(5)
        if process.is_alive():
            process.kill()
            process.join()
    if status != "ok":
        raise AssertionError(f"{fn.__name__} failed in its gloo process:\n{value}")
    return value
