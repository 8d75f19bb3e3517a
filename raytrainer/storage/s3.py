"""S3 defaults: the botocore settings every S3 filesystem raytrainer opens starts from.

This module owns what raytrainer gives s3fs's ``config_kwargs`` (botocore's
``Config(...)`` keywords) before any user option: request timeouts, no retries of botocore's
own (raytrainer's retry policy in ``retry.py`` decides how long to keep trying), and an HTTP
session that sends no ``Expect: 100-continue``. botocore asks for a 100-continue preamble on
every upload, and aiohttp arms the read timeout only once the body is sent: an endpoint that
accepts the connection and never answers (a frozen server) kept such an upload waiting
forever, whatever ``read_timeout`` said. Without the preamble the body is sent at once and
the read timeout covers the wait for the answer.

Importing it costs the import of aiobotocore; ``options.py`` loads it at the first S3 location.
"""
from __future__ import annotations

from typing import Any

from aiobotocore.httpsession import AIOHTTPSession


class NoExpectContinueSession(AIOHTTPSession):
    """aiobotocore's HTTP session, minus ``Expect: 100-continue`` (see the module docstring)."""

    async def send(self, request: Any) -> Any:
        request.headers.pop("Expect", None)
        return await super().send(request)


CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 10

S3_DEFAULTS: dict[str, Any] = {"config_kwargs": {
    "connect_timeout": CONNECT_TIMEOUT_S, "read_timeout": READ_TIMEOUT_S,
    "retries": {"total_max_attempts": 1}, "http_session_cls": NoExpectContinueSession}}


__all__ = ["CONNECT_TIMEOUT_S", "NoExpectContinueSession", "READ_TIMEOUT_S", "S3_DEFAULTS"]
