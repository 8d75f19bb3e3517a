"""A frozen storage endpoint on 127.0.0.1: it accepts TCP connections and never answers.

What a storage server stopped with SIGSTOP looks like to a client: the kernel completes the
handshake (up to the listen backlog), requests are sent, and no byte ever comes back.
"""
from __future__ import annotations

import socket


class FrozenEndpoint:
    """``with FrozenEndpoint() as url:`` points clients at an endpoint that never answers."""

    def __init__(self, backlog: int = 64):
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(backlog)  # never accepted, never read

    @property
    def url(self) -> str:
        host, port = self._socket.getsockname()[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> str:
        return self.url

    def __exit__(self, *exc_info) -> None:
        self._socket.close()
