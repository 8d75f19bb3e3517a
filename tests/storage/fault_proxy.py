"""A tiny HTTP reverse proxy on 127.0.0.1 that fails the first requests with an S3 error.

It forwards every request to a real S3 endpoint (the moto server) unchanged, except that the
first ``faults`` requests are answered with ``status`` and an S3 XML error body, as a throttled
or overloaded S3 would answer them; with ``outage_on``, every request is answered so for
``outage_s`` seconds from the first write of a key containing ``outage_on`` (that one too).
"""
from __future__ import annotations

import http.client
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
               "proxy-authorization", "proxy-authenticate"}


class FaultProxy:
    """``with FaultProxy(upstream, faults=2) as proxy:`` then point clients at ``proxy.url``.

    Attributes:
        served_faults: How many requests got the injected error so far.
        forwarded: How many requests were forwarded to the upstream.
    """

    def __init__(self, upstream: str, faults: int, status: int = 503, code: str = "SlowDown",
                 outage_on: str | None = None, outage_s: float = 0.0):
        self.upstream = urlsplit(upstream)
        self.outage_on, self.outage_s = outage_on, outage_s
        self.outage_until: float | None = None
        self.faulted_paths: list[str] = []
        self.faults_left = faults
        self.status = status
        self.code = code
        # S3's own wording; s3fs retries on the 'reduce your request rate' text by itself
        self.message = ("Please reduce your request rate." if code == "SlowDown"
                        else "Service is unable to handle the request.")
        self.served_faults = 0
        self.forwarded = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _take_fault(self, method: str, path: str) -> bool:
        with self._lock:
            if self.outage_on and self.outage_until is None and method == "PUT" and \
                    self.outage_on in path:
                self.outage_until = time.monotonic() + self.outage_s
            if self.outage_until is not None and time.monotonic() < self.outage_until:
                self.served_faults += 1
                self.faulted_paths.append(path)
                return True
            if self.faults_left <= 0:
                self.forwarded += 1
                return False
            self.faults_left -= 1
            self.served_faults += 1
            self.faulted_paths.append(path)
            return True

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _answer(self) -> None:
                body = self._body()
                if proxy._take_fault(self.command, self.path):
                    self._send(proxy.status, {"Content-Type": "application/xml"}, (
                        f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{proxy.code}"
                        f"</Code><Message>{proxy.message}</Message>"
                        f"<RequestId>fault</RequestId></Error>").encode())
                    return
                upstream = http.client.HTTPConnection(proxy.upstream.hostname,
                                                      proxy.upstream.port, timeout=30)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                self._send(response.status,
                           {k: v for k, v in response.getheaders()
                            if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"},
                           data, length=response.getheader("Content-Length"))
                upstream.close()

            def _send(self, status: int, headers: dict, data: bytes,
                      length: str | None = None) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                head_only = self.command == "HEAD"
                self.send_header("Content-Length", length if head_only and length
                                 else str(len(data)))
                self.end_headers()
                if not head_only:
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _answer

        return Handler
