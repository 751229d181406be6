"""A ThreadingHTTPServer run in a background thread, for the collector's HTTP ports."""

from __future__ import annotations

import logging
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import Any, Final, TypeVar

from clinotel.collector.net.listen import MAX_PORT, ListenError, listen_error
from clinotel.model.threads import guarded

__all__ = ["MAX_CONNECTIONS", "REQUEST_TIMEOUT_S", "QuietHTTPServer", "ServerThread", "bind"]

logger: Final = logging.getLogger("clinotel.collector")


REQUEST_TIMEOUT_S: Final = 30.0
"""How long one read or write on a connection may wait (ClickHouse's http_receive_timeout and
http_send_timeout): a client that stalls mid-request, or an idle keep-alive connection, is dropped
instead of holding a thread and a descriptor for good."""


MAX_CONNECTIONS: Final = 1024
"""Connections one HTTP port serves at once (`--max-connections`). Each holds a thread and a file
descriptor: without a cap, a flood of idle connections could take every descriptor the log and the
engine need to write (ClickHouse's own `max_connections` is 4096 for a whole server)."""
_BUSY: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain; charset=UTF-8\r\n"
    b"Content-Length: 40\r\nConnection: close\r\n\r\ntoo many connections: try again shortly\n"
)
"""The answer past the cap: 503 with Retry-After, which OTLP exporters and ClickHouse clients retry."""
_WARN_EVERY_S: Final = 60.0


class QuietHTTPServer(ThreadingHTTPServer):
    """A client that hung up before its answer is no error worth a traceback on stderr; anything
    else a handler raises is logged, once, through the collector's logger. Every connection's
    socket operations time out after REQUEST_TIMEOUT_S. At most `max_connections` are served at
    once: one past them is answered 503 (Retry-After) and closed without a thread."""

    daemon_threads = True
    request_timeout_s = REQUEST_TIMEOUT_S
    # many exporters reconnecting at once (a collector restart) wait in the kernel's queue instead
    # of having their connection attempts dropped (socketserver's default queue is 5)
    request_queue_size = socket.SOMAXCONN

    def __init__(self, *args: Any, max_connections: int = MAX_CONNECTIONS, **kwargs: Any) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections is at least 1, not {max_connections}")
        self.max_connections = max_connections
        self.refused_connections = 0
        """Connections answered 503 because the port was at its cap."""
        self._open = 0
        self._open_lock = threading.Lock()
        self._warned_at = -_WARN_EVERY_S
        super().__init__(*args, **kwargs)

    @property
    def open_connections(self) -> int:
        return self._open

    def get_request(self) -> tuple[Any, Any]:
        connection, address = super().get_request()
        connection.settimeout(self.request_timeout_s)
        return connection, address

    def verify_request(self, request: Any, client_address: Any) -> bool:
        with self._open_lock:
            if self._open < self.max_connections:
                self._open += 1
                return True
            self.refused_connections += 1
        try:
            request.sendall(_BUSY)
            request.setblocking(False)
            request.recv(1 << 16)  # what the client sent already: closing on unread data resets the answer away
        except OSError:
            pass
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY_S:
            self._warned_at = now
            logger.warning(
                "port %s is serving its %d connections (--max-connections): new ones are answered 503 "
                "(%d so far)", self.server_address[1], self.max_connections, self.refused_connections,
            )  # fmt: skip
        return False  # socketserver closes it

    def _release(self) -> None:
        with self._open_lock:
            self._open -= 1

    def process_request(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release()  # no thread started: the slot is free again
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()

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

    def __init__(self, server: QuietHTTPServer, name: str) -> None:
        self._server = server
        self._name = name
        self._thread: threading.Thread | None = None
        self.on_failure: Callable[[str], None] | None = None

    def _died(self, reason: str) -> None:
        if self.on_failure is not None:
            self.on_failure(reason)

    @property
    def server(self) -> QuietHTTPServer:
        """The socket server this thread runs (its connection counts)."""
        return self._server

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
