"""Run-time logging: the message hub (scalars and run info shared by hooks) and the logger."""
from .history_buffer import HistoryBuffer
from .logger import MMLogger, print_log
from .message_hub import MessageHub

__all__ = ["HistoryBuffer", "MessageHub", "MMLogger", "print_log"]
