"""A ThreadingHTTPServer run in a background thread, for the collector's HTTP ports."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import Any, Final, TypeVar

from clinotel.collector.net.listen import MAX_PORT, ListenError, listen_error
from clinotel.model.threads import guarded

__all__ = ["REQUEST_TIMEOUT_S", "QuietHTTPServer", "ServerThread", "bind"]

logger: Final = logging.getLogger("clinotel.collector")


REQUEST_TIMEOUT_S: Final = 30.0
"""How long one read or write on a connection may wait (ClickHouse's http_receive_timeout and
http_send_timeout): a client that stalls mid-request, or an idle keep-alive connection, is dropped
instead of holding a thread and a descriptor for good."""


class QuietHTTPServer(ThreadingHTTPServer):
    """A client that hung up before its answer is no error worth a traceback on stderr; anything
    else a handler raises is logged, once, through the collector's logger. Every connection's
    socket operations time out after REQUEST_TIMEOUT_S."""

    daemon_threads = True
    request_timeout_s = REQUEST_TIMEOUT_S

    def get_request(self) -> tuple[Any, Any]:
        connection, address = super().get_request()
        connection.settimeout(self.request_timeout_s)
        return connection, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            logger.debug("client %s went away: %s", client_address, error)
        else:
            logger.error("request from %s failed", client_address, exc_info=True)


S = TypeVar("S", bound=ThreadingHTTPServer)


def bind(label: str, host: str, port: int, make: Callable[[], S]) -> S:
    """`make()` (a server's constructor binds and listens), or ListenError in one line."""
    if not 0 <= port <= MAX_PORT:
        raise ListenError(f"cannot listen on port {port} for {label}: a port is 0 to {MAX_PORT}")
    try:
        return make()
    except OSError as e:
        raise listen_error(label, host, port, e) from None


class ServerThread:
    """Runs `server` in a daemon thread; `stop` shuts it down and closes its socket. The server is
    bound (listening) from construction; `start` serves. If serving stops by itself,
    `on_failure` hears why."""

    def __init__(self, server: ThreadingHTTPServer, name: str) -> None:
        self._server = server
        self._name = name
        self._thread: threading.Thread | None = None
        self.on_failure: Callable[[str], None] | None = None

    def _died(self, reason: str) -> None:
        if self.on_failure is not None:
            self.on_failure(reason)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread = guarded(lambda: self._server.serve_forever(poll_interval=0.05), self._name, self._died)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
