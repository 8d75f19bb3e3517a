"""The run's logger: console on rank 0, one log file per rank, opened through storage URLs.

``MMLogger.get_instance(name, log_file=..., rank=...)`` creates a logger for a run;
``print_log(msg, logger='current')`` writes through the current one (or ``print`` when none).
A record logged with ``extra={"file_only": True}`` goes to the log file but not the console.
"""
from __future__ import annotations

import io
import logging
import sys
from typing import Any

from ..storage import open_text_for_append
from ..storage.redaction import redact_text
from ..storage.retry import set_warning_sink
from ..utils.manager import ManagerMixin

_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"
_DATEFMT = "%Y/%m/%d %H:%M:%S"


class _OnceFormatter(logging.Formatter):
    """A formatter shared by the console and file handlers that formats each record once, with
    URL credentials removed (``http://user:password@host`` → ``http://***@host``)."""

    _record: logging.LogRecord | None = None
    _text = ""

    def format(self, record: logging.LogRecord) -> str:
        if record is not self._record:
            self._text, self._record = redact_text(super().format(record)), record
        return self._text


def _not_file_only(record: logging.LogRecord) -> bool:
    return not getattr(record, "file_only", False)


class _FlushingStreamHandler(logging.StreamHandler):
    """Stream handler over a (possibly remote) file object; flushes after every record."""

    def close(self) -> None:
        try:
            self.flush()
            if self.stream is not None and self.stream not in (sys.stdout, sys.stderr):
                self.stream.close()
        finally:
            super().close()


def _open_log_file(log_file: str, mode: str) -> io.TextIOBase:
    return open_text_for_append(log_file, mode)


class MMLogger(logging.Logger, ManagerMixin):
    """A named logger with a console handler (rank 0 only) and an optional per-rank log file.

    Args:
        name: Instance name (``get_instance`` key).
        logger_name: Name printed in each record.
        log_file: Path or URL of this rank's log file; None for console only.
        log_level: Level name or number.
        file_mode: ``'w'`` to start a new file, ``'a'`` to append (resumed runs).
        rank: This process's rank; ranks other than 0 print only errors to the console.
    """

    def __init__(self, name: str, logger_name: str = "raytrainer", log_file: str | None = None,
                 log_level: int | str = "INFO", file_mode: str = "w", rank: int = 0):
        logging.Logger.__init__(self, logger_name)
        ManagerMixin.__init__(self, name)
        level = logging.getLevelName(log_level) if isinstance(log_level, str) else log_level
        if not isinstance(level, int):
            raise ValueError(f"log_level must be a logging level name or number, got "
                             f"{log_level!r}")
        self.setLevel(level)
        self.propagate = False
        self.log_file = log_file
        formatter = _OnceFormatter(_FORMAT, _DATEFMT)
        console = logging.StreamHandler(sys.stdout)
        console.setFormatter(formatter)
        console.setLevel(level if rank == 0 else logging.ERROR)
        console.addFilter(_not_file_only)
        self.addHandler(console)
        if log_file is not None:
            handler = _FlushingStreamHandler(_open_log_file(log_file, file_mode))
            handler.setFormatter(formatter)
            handler.setLevel(level)
            self.addHandler(handler)

    def findCaller(self, stack_info: bool = False, stacklevel: int = 1):
        # The format names no file, line or function: skip walking the stack for them.
        if stack_info:
            return super().findCaller(stack_info, stacklevel + 1)
        return "(unknown file)", 0, "(unknown function)", None

    def close(self) -> None:
        """Flush and close the file handler (the run ended)."""
        for handler in list(self.handlers):
            handler.close()
            self.removeHandler(handler)


def print_log(msg: Any, logger: logging.Logger | str | None = "current",
              level: int = logging.INFO) -> None:
    """Log ``msg`` through ``logger`` ('current', an instance name, a Logger, 'silent' or None)."""
    if logger is None:
        print(msg)
    elif isinstance(logger, logging.Logger):
        logger.log(level, msg)
    elif logger == "silent":
        return
    elif logger == "current":
        if MMLogger._current is None:
            print(msg)
        else:
            MMLogger.get_current_instance().log(level, msg)
    elif isinstance(logger, str):
        if not MMLogger.check_instance_created(logger):
            raise ValueError(f"print_log: no logger instance named {logger!r}")
        MMLogger.get_instance(logger).log(level, msg)
    else:
        raise TypeError(f"print_log: logger must be a Logger, a name, 'current', 'silent' or "
                        f"None, got {type(logger)}")


def _log_storage_warning(message: str) -> None:
    print_log(message, logger="current", level=logging.WARNING)


set_warning_sink(_log_storage_warning)  # storage retries are logged in the run's log
