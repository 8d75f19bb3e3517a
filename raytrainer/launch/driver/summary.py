"""The summary the ``raytrainer`` command prints when a run ends.

It owns the wording only: final metrics, best and last checkpoint, work_dir, wall time and the
exact commands that resume the run and test its checkpoint (the latter only for a config that
can be tested), quoted minimally; for a run a signal stopped, a
first line with the signal, the iteration and the exit code. The values come from rank 0's
``result.json`` (see :mod:`raytrainer.launch.worker.loop`) or the in-process Runner.
"""
from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence


def format_metrics(metrics: Mapping | None) -> str:
    return "  ".join(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}"
                     for k, v in (metrics or {}).items())


def format_duration(seconds: float) -> str:
    """``1h02m03s``, ``2m03s`` or ``4.2s``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


_DOUBLE_QUOTE_SPECIAL = set('"$`\\!')


def quote(word: str) -> str:
    """``word`` as a POSIX shell reads it back, quoted minimally: bare when it can be, in
    single quotes, or in double quotes when it holds single quotes and nothing a double-quoted
    word expands (``['Block']`` gives ``"...=['Block']"``, not shlex's ``'...=['"'"'Block...``).
    """
    quoted = shlex.quote(word)
    if quoted == word or "'" not in word or _DOUBLE_QUOTE_SPECIAL & set(word):
        return quoted
    return f'"{word}"'


def _command(verb: str, config: str, work_dir: str, cfg_options: Sequence[str],
             flag: str, checkpoint: str, launch_args: Sequence[str] = ()) -> str:
    words = ["raytrainer", verb, config, "--work-dir", work_dir, *launch_args]
    if cfg_options:
        words += ["--cfg-options", *cfg_options]
    return " ".join(quote(word) for word in words + [flag, checkpoint])


def stop_line(stopped: Mapping) -> str:
    """How a signal ended the run early (see :mod:`raytrainer.launch.shutdown`)."""
    code = f"exit code {128 + int(stopped['signum'])}"
    checkpoint = stopped.get("checkpoint")
    if stopped.get("forced"):
        kept = f"newest committed checkpoint {checkpoint}" if checkpoint else \
            "no committed checkpoint"
        return f"stopped at once by a second {stopped['signal']}: {kept} ({code})"
    where = f" after iteration {stopped['iter']}" if stopped.get("iter") is not None else \
        " before training"
    saved = f"checkpoint {checkpoint}" if checkpoint else "no checkpoint yet"
    return f"stopped by {stopped['signal']}{where}: {saved} ({code})"


def run_summary(mode: str, metrics: Mapping | None, work_dir: str, wall_s: float,
                config: str, cfg_options: Sequence[str] = (), last_checkpoint: str | None = None,
                best_checkpoint: str | None = None, launch_args: Sequence[str] = (),
                stopped: Mapping | None = None, can_test: bool = True) -> list[str]:
    """The lines of the summary.

    Args:
        mode: ``'train'``, ``'val'`` or ``'test'``.
        metrics: The final validation (or test) metrics.
        work_dir: The run's work_dir (path or URL).
        wall_s: Seconds the command took.
        config: The config file as given on the command line.
        cfg_options: The ``--cfg-options`` words given, repeated in the commands.
        last_checkpoint: The newest checkpoint the run committed.
        best_checkpoint: The best checkpoint (``save_best``), if any.
        launch_args: Where the run ran (``--launcher none``, ``--num-workers 4`` ...),
            repeated in the commands.
        stopped: Set when a signal ended the run early (``signal``, ``signum``, ``iter``,
            ``checkpoint``, ``forced``): the first line says so and the metrics are the last
            validation's.
        can_test: The config can be tested (it has ``test_dataloader``, ``test_cfg`` and
            ``test_evaluator``): only then is the ``test:`` command printed.
    """
    title = {"train": "final val", "val": "val", "test": "test"}[mode]
    if stopped and mode == "train":
        title = "last val"
    lines = [stop_line(stopped)] if stopped else []
    lines.append(f"{title} {format_metrics(metrics)}" if metrics else f"{title}: no metrics")
    if mode == "train":
        lines.append(f"best checkpoint: {best_checkpoint or '-'}")
        lines.append(f"last checkpoint: {last_checkpoint or '-'}")
    lines += [f"work_dir: {work_dir}", f"wall time: {format_duration(wall_s)}"]
    if mode == "train" and last_checkpoint:
        lines.append("resume: " + _command("train", config, work_dir, cfg_options, "--resume",
                                           last_checkpoint, launch_args))
        if can_test:
            lines.append("test:   " + _command("test", config, work_dir, cfg_options,
                                               "--checkpoint", best_checkpoint or last_checkpoint,
                                               launch_args))
    return lines
