"""A ThreadingHTTPServer run in a background thread, for the collector's HTTP ports."""

from __future__ import annotations

import contextlib
import http.client
import logging
import re
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final, TypeVar

from clinotel.collector.net.listen import MAX_PORT, ListenError, listen_error
from clinotel.model.threads import guarded

__all__ = [
    "HEADER_TIMEOUT_S",
    "MAX_CONNECTIONS",
    "MAX_HEADER_BYTES",
    "REQUEST_TIMEOUT_S",
    "CappedRequestHandler",
    "QuietHTTPServer",
    "ServerThread",
    "bind",
    "close_now",
]

logger: Final = logging.getLogger("clinotel.collector")


REQUEST_TIMEOUT_S: Final = 30.0
"""How long one read or write on a connection may wait (ClickHouse's http_receive_timeout and
http_send_timeout): a client that stalls mid-request, or an idle keep-alive connection, is dropped
instead of holding a thread and a descriptor for good."""


MAX_CONNECTIONS: Final = 1024
"""Connections one HTTP port serves at once (`--max-connections`). Each holds a thread and a file
descriptor: without a cap, a flood of idle connections could take every descriptor the log and the
engine need to write (ClickHouse's own `max_connections` is 4096 for a whole server)."""
MAX_HEADER_BYTES: Final = 32 << 10
"""The largest header section a request may send (its request line apart): exporters and ClickHouse
clients send well under a kilobyte; more is answered 431 (nginx accepts 32 KiB by default)."""
HEADER_TIMEOUT_S: Final = 10.0
"""How long a request may take from its first byte to the end of its headers, however slowly they
trickle in (REQUEST_TIMEOUT_S bounds each read, not the whole: a header line every 29 s held a
connection for good)."""
_BUSY: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain; charset=UTF-8\r\n"
    b"Content-Length: 40\r\nConnection: close\r\n\r\ntoo many connections: try again shortly\n"
)
"""The answer past the cap: 503 with Retry-After, which OTLP exporters and ClickHouse clients retry."""
_WARN_EVERY_S: Final = 60.0
_IDLE, _HEADERS, _HANDLING, _CLOSING = "idle", "headers", "handling", "closing"


class CappedRequestHandler(BaseHTTPRequestHandler):
    """Tells its `QuietHTTPServer` where each request is: waiting for one (`idle`: a keep-alive
    connection the server may close to make room), reading its request line and headers (under
    HEADER_TIMEOUT_S), or being handled."""

    server: QuietHTTPServer
    raw_requestline: bytes  # set by the standard library's handler before `parse_request`

    def handle_one_request(self) -> None:
        self.server.connection_state(self.connection, _IDLE)
        try:
            self.rfile.peek(1)  # type: ignore[attr-defined]  # a BufferedReader: the first byte, unread
        except (OSError, ValueError):  # timed out, reset, or closed to make room: done with it
            self.close_connection = True
            return
        self.server.connection_state(self.connection, _HEADERS)
        super().handle_one_request()

    def parse_request(self) -> bool:
        if _HTTP2_OR_LATER.fullmatch(self.raw_requestline.split(b" ")[-1].strip()):
            self._refuse_http2()
            return False
        rfile = self.rfile
        self.rfile = _HeaderSection(rfile, MAX_HEADER_BYTES)  # type: ignore[assignment]
        try:
            parsed = super().parse_request()
        finally:
            self.rfile = rfile
        self.server.connection_state(self.connection, _HANDLING)
        return parsed

    def _refuse_http2(self) -> None:
        """Answer HTTP/2 with prior knowledge (h2c: Go's `SetUnencryptedHTTP2`, curl's
        `--http2-prior-knowledge`) in HTTP/2, so the client says why: a server preface and a GOAWAY
        of HTTP_1_1_REQUIRED. The standard library answered its preface with a bare HTML page and
        no status line, which Go reported as `http2: frame too large`. Any other request line of
        version 2 or later is answered 505 with a status line."""
        self.close_connection = True
        self.server.connection_state(self.connection, _HANDLING)
        if self.raw_requestline.rstrip(b"\r\n") == _H2C_PREFACE_LINE:
            _answer_last(self.connection, _H2C_REFUSAL)
            return
        self.command, self.requestline = "", self.raw_requestline.decode("latin-1").rstrip("\r\n")
        self.request_version = "HTTP/1.1"  # an answer with a status line (the library's default is HTTP/0.9's)
        self.send_error(505, "HTTP/1.1 only: HTTP/2 is not served on this port")


def _answer_last(connection: Any, answer: bytes) -> None:
    """Send `answer` on a connection about to be closed without reading its request, and take in
    what the client sent already: closing on unread data resets the connection, the answer with it."""
    try:
        connection.sendall(answer)
        connection.setblocking(False)
        connection.recv(1 << 16)
    except OSError:
        pass


_HTTP2_OR_LATER: Final = re.compile(rb"HTTP/[2-9](?:\.[0-9])?")
_H2C_PREFACE_LINE: Final = b"PRI * HTTP/2.0"
_H2C_DEBUG: Final = b"HTTP/1.1 only: this port does not serve HTTP/2 over cleartext (h2c); OTLP/gRPC has its own port"
_H2C_REFUSAL: Final = (
    b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # SETTINGS, empty: the server's preface
    + (8 + len(_H2C_DEBUG)).to_bytes(3, "big")
    + b"\x07\x00\x00\x00\x00\x00"  # GOAWAY on stream 0
    + b"\x00\x00\x00\x00\x00\x00\x00\x0d"  # last stream 0, HTTP_1_1_REQUIRED
    + _H2C_DEBUG
)
"""HTTP/2's way of saying "use HTTP/1.1" (RFC 9113, section 7): Go's client reports the GOAWAY's
code and text."""


class _HeaderSection:
    """The connection's reader while the header section is read: at most `limit` bytes in all,
    else `http.client.LineTooLong`, which the handler answers 431. The standard library allows
    100 lines of 64 KiB each, parsed into Python objects before any handler runs (and before the
    token is checked): 40 connections of such headers took a receiver to 1,456 MB."""

    def __init__(self, inner: Any, limit: int) -> None:
        self._inner = inner
        self._left = limit

    def readline(self, size: int = -1) -> bytes:
        want = self._left + 1 if size < 0 else min(size, self._left + 1)
        line: bytes = self._inner.readline(want)
        self._left -= len(line)
        if self._left < 0:
            raise http.client.LineTooLong(f"header section over {MAX_HEADER_BYTES:,} bytes")
        return line


class QuietHTTPServer(ThreadingHTTPServer):
    """A client that hung up before its answer is no error worth a traceback on stderr; anything
    else a handler raises is logged, once, through the collector's logger. Every connection's
    socket operations time out after REQUEST_TIMEOUT_S, and a request's headers must arrive within
    HEADER_TIMEOUT_S. At most `max_connections` are served at once: at the cap, the connection
    idle longest between requests is closed to make room (keep-alive exporters take turns, idle
    connections cannot hold the port), and with none idle, a new one is answered 503 (Retry-After)
    and closed without a thread. Its handlers are `CappedRequestHandler`s."""

    daemon_threads = True
    request_timeout_s = REQUEST_TIMEOUT_S
    header_timeout_s = HEADER_TIMEOUT_S
    # many exporters reconnecting at once (a collector restart) wait in the kernel's queue instead
    # of having their connection attempts dropped (socketserver's default queue is 5)
    request_queue_size = socket.SOMAXCONN

    def __init__(self, *args: Any, max_connections: int = MAX_CONNECTIONS, **kwargs: Any) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections is at least 1, not {max_connections}")
        self.max_connections = max_connections
        self.refused_connections = 0
        """Connections answered 503 because the port was at its cap with none idle."""
        self.closed_idle = 0
        """Idle keep-alive connections closed to make room for a new one."""
        self.timed_out_headers = 0
        """Connections closed because their request's headers took over HEADER_TIMEOUT_S."""
        self._states: dict[Any, list[Any]] = {}
        """Each open connection: [state, since (monotonic)]."""
        self._lock = threading.Lock()
        self._warned_at = -_WARN_EVERY_S
        self._swept_at = 0.0
        address = args[0] if args else kwargs.get("server_address", ("", 0))
        if ":" in str(address[0]):  # an IPv6 address (`[::1]:4318` on the command line)
            self.address_family = socket.AF_INET6
        super().__init__(*args, **kwargs)

    @property
    def open_connections(self) -> int:
        return len(self._states)

    def connection_states(self) -> set[str]:
        """Where the open connections are: `idle`, `headers`, `handling`, `closing`."""
        with self._lock:
            return {state for state, _ in self._states.values()}

    def connection_state(self, connection: Any, state: str) -> None:
        """Where `connection`'s request is (`CappedRequestHandler` calls it)."""
        with self._lock:
            entry = self._states.get(connection)
            if entry is not None and entry[0] != _CLOSING:
                entry[0], entry[1] = state, time.monotonic()

    def get_request(self) -> tuple[Any, Any]:
        connection, address = super().get_request()
        connection.settimeout(self.request_timeout_s)
        return connection, address

    def verify_request(self, request: Any, client_address: Any) -> bool:
        victim = None
        with self._lock:
            closing = sum(1 for state, _ in self._states.values() if state == _CLOSING)
            if len(self._states) - closing >= self.max_connections:
                idle = [(since, c) for c, (state, since) in self._states.items() if state == _IDLE]
                if idle:
                    victim = min(idle, key=lambda e: e[0])[1]
                    self._states[victim][0] = _CLOSING
                    self.closed_idle += 1
            admitted = victim is not None or len(self._states) - closing < self.max_connections
            if admitted:
                self._states[request] = [_IDLE, time.monotonic()]
            else:
                self.refused_connections += 1
        if victim is not None:
            close_now(victim)
        if admitted:
            return True
        _answer_last(request, _BUSY)
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY_S:
            self._warned_at = now
            logger.warning(
                "port %s is serving its %d connections (--max-connections), none idle: new ones are answered "
                "503 (%d so far)", self.server_address[1], self.max_connections, self.refused_connections,
            )  # fmt: skip
        return False  # socketserver closes it

    def service_actions(self) -> None:
        """Between accepts: close the connections whose headers are overdue (once a second)."""
        now = time.monotonic()
        if now - self._swept_at < 1.0:
            return
        self._swept_at = now
        with self._lock:
            overdue = [
                c for c, entry in self._states.items()
                if entry[0] == _HEADERS and now - entry[1] > self.header_timeout_s
            ]  # fmt: skip
            for c in overdue:
                self._states[c][0] = _CLOSING
            self.timed_out_headers += len(overdue)
        for c in overdue:
            close_now(c)

    def _release(self, request: Any) -> None:
        with self._lock:
            self._states.pop(request, None)

    def process_request(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release(request)  # no thread started: the slot is free again
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            logger.debug("client %s went away: %s", client_address, error)
        else:
            logger.error("request from %s failed", client_address, exc_info=True)


def close_now(connection: Any) -> None:
    """End a connection another thread is reading: its read returns at once (end of stream)."""
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)


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
