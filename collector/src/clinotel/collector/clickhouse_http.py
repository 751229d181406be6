"""The `--http` port: `/ping` and `/metrics` (Prometheus). SQL reads arrive here later."""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final

from clinotel.collector.http_thread import ServerThread

__all__ = ["AdminHttpServer"]

logger: Final = logging.getLogger("clinotel.collector")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("http %s " + format, self.client_address[0], *args)

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path in ("/ping", "/"):
            self._reply(HTTPStatus.OK, b"Ok.\n", "text/plain; charset=UTF-8")
        elif path == "/metrics":
            self._reply(HTTPStatus.OK, self.server.metrics().encode(), "text/plain; version=0.0.4; charset=utf-8")
        else:
            self._reply(HTTPStatus.NOT_FOUND, b"Not found: /ping and /metrics are served here.\n", "text/plain")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], metrics: Callable[[], str]) -> None:
        self.metrics = metrics
        super().__init__(address, _Handler)


class AdminHttpServer(ServerThread):
    """`/ping` and `/metrics` on `host:port`, in a background thread."""

    def __init__(self, host: str, port: int, metrics: Callable[[], str]) -> None:
        super().__init__(_Server((host, port), metrics), "clinotel-http")
