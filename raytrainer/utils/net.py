"""Loopback networking helpers: the one place that picks a free local port."""
from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` that nobody listens on now (the OS picks it).

    For a server this process is about to start (a private Ray instance's GCS and dashboard,
    a process group's rendezvous). Another process may take the port before it is bound
    again; callers that cannot retry should bind it themselves.
    """
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


__all__ = ["LOOPBACK", "free_port"]
