"""``raytrainer plot``: training curves from the scalars a run logged, as a PNG.

This module owns finding ``<work_dir>/<timestamp>/vis_data/scalars.json`` (local or any storage
URL, through :mod:`raytrainer.storage`), sorting its records into panels (loss, lr, each
validation metric; x = iteration) and drawing them with matplotlib (the ``plot`` extra). A
directory whose sub-directories are work_dirs (a sweep) gives one line per run.
It does not write scalars (:mod:`raytrainer.visualization.vis_backend` does).
"""
from __future__ import annotations

import argparse
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from raytrainer import storage

SCALARS = "scalars.json"
NOT_PLOTTED = {"step", "epoch", "iter", "time", "data_time", "memory"}


@dataclass
class RunCurves:
    """One run's curves: key -> (iterations, values)."""

    name: str
    train: dict[str, tuple[list, list]] = field(default_factory=dict)
    val: dict[str, tuple[list, list]] = field(default_factory=dict)
    # which run of its work_dir this is (its timestamp) and the work_dir's other runs
    timestamp: str | None = None
    others: list[str] = field(default_factory=list)


def _scalar_files(run_dir: str) -> dict[str, str]:
    """The work_dir's runs: timestamp -> its ``<timestamp>/vis_data/scalars.json``, oldest
    first (timestamps sort as they were made)."""
    found = {}
    for entry in storage.listdir(run_dir):
        if entry["type"] == "directory":
            location = storage.join(entry["path"], "vis_data", SCALARS)
            if storage.exists(location):
                found[entry["name"]] = location
    return dict(sorted(found.items()))


def _pick(files: dict[str, str], run: str | None, where: str) -> tuple[str, str]:
    """The chosen run of a work_dir (the newest unless ``run`` names one): (timestamp, file).

    Raises:
        FileNotFoundError: ``run`` is not one of the work_dir's runs (they are listed).
    """
    if run is None:
        return next(reversed(files.items()))
    if run not in files:
        raise FileNotFoundError(f"--run {run}: {storage.describe(where)} has no run {run}; its "
                                f"runs are {', '.join(files)}")
    return run, files[run]


def _append(curves: dict, key: str, x: float, y: float) -> None:
    xs, ys = curves.setdefault(key, ([], []))
    xs.append(x)
    ys.append(y)


def read_run(scalars_file: str, name: str) -> RunCurves:
    """Sort a scalars file's records into train and validation curves over iterations.

    Training records carry ``lr``/``loss``; others are validation records, whose ``step`` is
    an epoch when training logs by epoch (its records have ``epoch``): they are drawn at the
    last logged iteration of that epoch.
    """
    records = [json.loads(line) for line in storage.read_text(scalars_file).splitlines()
               if line.strip()]
    run = RunCurves(name)
    epoch_end: dict[int, int] = {}
    val_records = []
    for record in records:
        if "lr" in record or any("loss" in key for key in record):
            step = record.get("iter", record.get("step", 0))
            if "epoch" in record:
                epoch_end[record["epoch"]] = max(epoch_end.get(record["epoch"], 0), step)
            for key, value in record.items():
                if key not in NOT_PLOTTED and isinstance(value, (int, float)):
                    _append(run.train, key, step, value)
        else:
            val_records.append(record)
    for record in val_records:
        step = record.get("step", 0)
        if epoch_end:
            step = max((it for epoch, it in epoch_end.items() if epoch <= step), default=0)
        for key, value in record.items():
            if key not in NOT_PLOTTED and isinstance(value, (int, float)):
                _append(run.val, key, step, value)
    return run


def _read_chosen(files: dict[str, str], run: str | None, where: str, name: str) -> RunCurves:
    timestamp, scalars_file = _pick(files, run, where)
    curves = read_run(scalars_file, name)
    curves.timestamp = timestamp
    curves.others = [other for other in files if other != timestamp]
    return curves


def find_runs(location: str, run: str | None = None) -> list[RunCurves]:
    """The runs under ``location``: a scalars file, a work_dir, or a directory of work_dirs.

    A work_dir with several timestamps (fresh runs in the same directory) is drawn from its
    newest one, or from the one ``run`` names (in each work_dir of a sweep directory).

    Raises:
        FileNotFoundError: Nothing under ``location`` holds a ``vis_data/scalars.json``, or no
            run is named ``run``.
    """
    location = str(location).rstrip("/")
    if location.endswith(".json"):
        return [read_run(location, "run")]
    own = _scalar_files(location)
    if own:
        return [_read_chosen(own, run, location, location.rsplit("/", 1)[-1])]
    runs = []
    for entry in storage.listdir(location):
        if entry["type"] == "directory":
            files = _scalar_files(entry["path"])
            if files:
                runs.append(_read_chosen(files, run, entry["path"], entry["name"]))
    if not runs:
        raise FileNotFoundError(
            f"no <timestamp>/vis_data/{SCALARS} under {storage.describe(location)}, nor in "
            "its sub-directories: expected a work_dir (or a sweep directory of work_dirs) "
            "of a run that logged with LocalVisBackend")
    return runs


def _panel_of(key: str) -> str:
    if "loss" in key:
        return "loss"
    if key == "lr" or key.endswith("/lr") or key.startswith("lr"):
        return "lr"
    return key


def panels(runs: Sequence[RunCurves], keys: Sequence[str] | None = None) -> dict[str, list]:
    """Panel title -> lines ``(label, xs, ys)``: all loss keys in ``loss``, learning rates in
    ``lr``, one panel per validation metric; ``keys`` keeps only those keys.

    Raises:
        KeyError: A key in ``keys`` was logged by none of the runs (names the keys there are).
    """
    result: dict[str, list] = {}
    seen: set[str] = set()
    for run in runs:
        for curves in (run.train, run.val):
            for key, (xs, ys) in curves.items():
                seen.add(key)
                if keys and key not in keys:
                    continue
                panel = _panel_of(key)
                label = run.name if len(runs) > 1 else key
                if len(runs) > 1 and sum(_panel_of(k) == panel for k in curves
                                         if not keys or k in keys) > 1:
                    label = f"{run.name}: {key}"  # several keys of one run in this panel
                result.setdefault(panel, []).append((label, xs, ys))
    order = {"loss": 0, "lr": 1}
    result = dict(sorted(result.items(), key=lambda item: order.get(item[0], 2)))
    missing = sorted(set(keys or ()) - seen)
    if missing:
        raise KeyError(f"--keys {missing} were not logged; the runs logged {sorted(seen)}")
    return result


def draw(runs: Sequence[RunCurves], keys: Sequence[str] | None = None) -> bytes:
    """The curves as PNG bytes."""
    try:
        import matplotlib
    except ImportError as exc:
        raise ImportError("raytrainer plot needs matplotlib: pip install 'raytrainer[plot]'") \
            from exc
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    content = panels(runs, keys)
    if not content:
        raise ValueError("nothing to plot: the runs logged no loss, lr or validation metric")
    count = len(content)
    columns = min(count, 3)
    rows = (count + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.6 * rows), squeeze=False)
    for axis, (title, lines) in zip(axes.flat, content.items()):
        for label, xs, ys in lines:
            axis.plot(xs, ys, label=label, marker="o" if len(xs) < 30 else None, markersize=3)
        axis.set_title(title)
        axis.set_xlabel("iteration")
        axis.grid(alpha=0.3)
        if title == "lr":
            axis.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        if len(lines) > 1:
            axis.legend(fontsize="small")
    for axis in list(axes.flat)[count:]:
        axis.set_visible(False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``raytrainer plot`` on the CLI's sub-command parsers."""
    parser = subparsers.add_parser(
        "plot", help="draw training curves as a PNG",
        description="Draw the loss, lr and validation metrics a run logged "
                    "(<work_dir>/<timestamp>/vis_data/scalars.json) against the iteration; for "
                    "a directory of work_dirs (a sweep), one line per run.",
        epilog="example: raytrainer plot work_dirs/digits_mlp -o curves.png")
    parser.add_argument("work_dir", metavar="WORK_DIR_OR_URL",
                        help="a run's work_dir, a sweep directory, or a scalars.json (path or "
                             "URL)")
    parser.add_argument("-o", "--output", default="curves.png",
                        help="where to write the PNG (path or URL; default: curves.png)")
    parser.add_argument("--keys", nargs="+", metavar="KEY",
                        help="plot only these scalars (e.g. loss accuracy/top1)")
    parser.add_argument("--run", metavar="TIMESTAMP",
                        help="which run of the work_dir to draw (its <timestamp> directory; "
                             "default: the newest)")
    parser.add_argument("--debug", action="store_true",
                        help="print the full traceback when the command fails")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Write the PNG; returns the exit code."""
    runs = find_runs(args.work_dir, args.run)
    storage.write_bytes(args.output, draw(runs, args.keys))
    print(f"wrote {storage.describe(args.output)}: {describe(runs)}", flush=True)
    return 0


def describe(runs: Sequence[RunCurves]) -> str:
    """Which runs were drawn: their timestamps, and the other runs a work_dir holds."""
    if len(runs) == 1 and runs[0].timestamp:
        (one,) = runs
        text = f"run {one.timestamp} of {one.name}"
        if one.others:
            newest = "the newest; " if one.timestamp > max(one.others) else ""
            text += f" ({newest}its work_dir also holds {', '.join(one.others)}: --run picks one)"
        return text
    return f"{len(runs)} run(s): " + ", ".join(
        f"{run.name} ({run.timestamp})" if run.timestamp else run.name for run in runs)
