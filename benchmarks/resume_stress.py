"""Kill-and-resume, many times, under CPU load: does every resumed run end bitwise equal?

Each round trains the digits MLP of ``tests/checkpoint/train_script.py`` (dropout, AdamW,
warm-up + cosine) in a fresh process that dies abruptly (``os._exit``) at an iteration drawn
for the round, then resumes it in another fresh process, and compares the final weights and
optimizer state with an uninterrupted run's, bit for bit. Meanwhile ``--load`` busy processes
(matrix products in a loop) compete for the cores, as other tests and other users do.

Every run appends per-iteration digests (weights, optimizer state, torch generator) to a trace;
on a divergence the script names the first iteration at which the resumed run's trace leaves
the uninterrupted one.

Run from the repository root::

    .venv/bin/python benchmarks/resume_stress.py --rounds 50 [--s3] [--deterministic]

``--s3`` puts the work_dirs on a loopback S3 server (moto) instead of local disk. The closing
line reads ``N passed, D failed`` (a failed round is a divergence).
"""
from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tests", "checkpoint", "train_script.py")


def _busy(stop) -> None:
    torch.set_num_threads(1)
    a = torch.randn(256, 256)
    while not stop.is_set():
        for _ in range(20):
            a = torch.tanh(a @ a)


def _train(work_dir: str, loop: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, work_dir, loop, *flags],
                          capture_output=True, text=True, timeout=600)


def _trace(path: str) -> dict[int, dict]:
    with open(path) as lines:
        return {record["iter"]: record for record in map(json.loads, lines)}


def _first_difference(reference: dict[int, dict], other: dict[int, dict]) -> str:
    for iteration in sorted(other):
        mine, theirs = other[iteration], reference.get(iteration)
        if theirs is None:
            return f"iteration {iteration} is not in the uninterrupted trace"
        differing = [key for key in ("rng", "lr", "weights", "optimizer")
                     if mine[key] != theirs[key]]
        if differing:
            return f"iteration {iteration}: {', '.join(differing)} differ"
    return "the traces agree; only the final state differs"


def _same_state(a: dict, b: dict) -> bool:
    if any(not torch.equal(value, b["model"][key]) for key, value in a["model"].items()):
        return False
    for index, state in a["optimizer"]["state"].items():
        for name, value in state.items():
            if not torch.equal(value, b["optimizer"]["state"][index][name]):
                return False
    return a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]


def _s3_root() -> tuple[str, object]:
    """A bucket on a moto S3 server on loopback; the environment points runs at it."""
    import s3fs
    from moto.server import ThreadedMotoServer

    os.environ.update(AWS_ACCESS_KEY_ID="stress", AWS_SECRET_ACCESS_KEY="stress",
                      AWS_DEFAULT_REGION="us-east-1")
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(name, None)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3fs.S3FileSystem(endpoint_url=endpoint).mkdir("stress")
    os.environ["RAYTRAINER_STORAGE_OPTIONS"] = json.dumps({"s3": {"endpoint_url": endpoint}})
    return "s3://stress", server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--load", type=int, default=os.cpu_count() or 2,
                        help="busy processes competing for the cores (default: one per core)")
    parser.add_argument("--loop", choices=["epoch", "iter"], default="epoch")
    parser.add_argument("--s3", action="store_true", help="work_dirs on a loopback S3 server")
    parser.add_argument("--deterministic", action="store_true",
                        help="randomness.deterministic=True in every run")
    parser.add_argument("--seed", type=int, default=0, help="draws the crash iterations")
    args = parser.parse_args()

    scratch = tempfile.mkdtemp(prefix="resume-stress-")
    root, server = _s3_root() if args.s3 else (scratch, None)
    flags = ["--deterministic"] if args.deterministic else []
    stop = multiprocessing.Event()
    load = [multiprocessing.Process(target=_busy, args=(stop,), daemon=True)
            for _ in range(args.load)]
    for process in load:
        process.start()
    draws = random.Random(args.seed)
    failed: list[str] = []
    started = time.monotonic()
    try:
        reference_out = os.path.join(scratch, "straight.pt")
        reference_trace = os.path.join(scratch, "straight.trace")
        done = _train(f"{root}/straight", args.loop, "--out", reference_out,
                      "--trace", reference_trace, *flags)
        if done.returncode != 0:
            raise SystemExit(f"the uninterrupted run failed:\n{done.stderr[-3000:]}")
        reference = torch.load(reference_out, weights_only=True)
        steps = _trace(reference_trace)
        for index in range(args.rounds):
            crash_at = draws.randrange(21, 100)  # after the first checkpoint (iter_20)
            work_dir = f"{root}/round_{index}"
            trace = os.path.join(scratch, f"round_{index}.trace")
            out = os.path.join(scratch, f"round_{index}.pt")
            crashed = _train(work_dir, args.loop, "--crash-at", str(crash_at), *flags)
            resumed = _train(work_dir, args.loop, "--resume", "--out", out, "--trace", trace,
                             *flags)
            before = len(failed)
            if crashed.returncode != 17 or resumed.returncode != 0:
                failed.append(f"round {index}: crash rc {crashed.returncode}, resume rc "
                              f"{resumed.returncode}: {resumed.stderr[-1500:]}")
            elif not _same_state(reference, torch.load(out, weights_only=True)):
                failed.append(f"round {index} (killed after iteration {crash_at}): "
                              + _first_difference(steps, _trace(trace)))
            status = "ok" if len(failed) == before else "FAILED"
            print(f"round {index + 1}/{args.rounds}: killed after iteration {crash_at}, "
                  f"resumed: {status}", flush=True)
    finally:
        stop.set()
        for process in load:
            process.join(timeout=10)
        if server is not None:
            server.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    for failure in failed:
        print(failure)
    print(f"{args.rounds} rounds in {time.monotonic() - started:.0f} s under {args.load} busy "
          f"processes, storage {'S3 (loopback)' if args.s3 else 'local'}, deterministic="
          f"{args.deterministic}")
    print(f"{args.rounds - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
