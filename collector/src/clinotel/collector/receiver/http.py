"""OTLP/HTTP: `POST /v1/traces`, protobuf or JSON, gzip, with the specification's answers."""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, Final

from google.protobuf import json_format
from google.rpc import status_pb2

from clinotel.collector.errors import GRPC_CODES, RefusedError
from clinotel.collector.net.body import BodyError, read_body
from clinotel.collector.net.deadline import DeadlineReader
from clinotel.collector.net.listen import url_host
from clinotel.collector.net.server import (
    MAX_CONNECTIONS,
    CappedRequestHandler,
    QuietHTTPServer,
    ServerThread,
    bind,
    close_now,
)
from clinotel.collector.receiver.admission import Hold
from clinotel.collector.receiver.export import JSON, PROTOBUF, ExportResult, TraceReceiver
from clinotel.collector.tokens import Grant

__all__ = ["OtlpHttpServer", "is_loopback"]

logger: Final = logging.getLogger("clinotel.collector")

TRACES_PATH: Final = "/v1/traces"
_DRAIN_FACTOR: Final = 4
"""An oversized body up to this many times the limit is read and discarded before the 413, so
the client can read the answer; a larger one gets the answer and a closed connection. Bodies are
framed by Content-Length or sent chunked (the Node.js exporters do), see `http_body`."""

Authenticate = Callable[[str | None], Grant | None]


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def cannot_write(token: str | None, grant: Grant | None) -> str:
    """Why a request may not write spans, for the client: no token, a token this collector does
    not know, or one of another role (all three read alike before, and the collector logged none)."""
    if token is None:
        return "a write token is required (Authorization: Bearer <token>)"
    if grant is None:
        return "the bearer token is not one of this collector's tokens"
    return f"the bearer token is a {grant.role} token: sending spans needs a write token"


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class _Handler(CappedRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("otlp-http %s " + format, self.client_address[0], *args)

    def _media(self) -> str:
        media = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        return JSON if media == JSON else PROTOBUF

    def _status(self, refused: RefusedError, *, close: bool = False) -> None:
        status = status_pb2.Status(code=GRPC_CODES.get(refused.grpc_code, 2), message=refused.message)
        media = self._media()
        body = json_format.MessageToJson(status).encode() if media == JSON else status.SerializeToString()
        self.send_response(refused.http_status)
        self.send_header("Content-Type", media)
        self.send_header("Content-Length", str(len(body)))
        if refused.retry_after is not None:
            self.send_header("Retry-After", str(refused.retry_after))
        if refused.http_status == 401:
            self.send_header("WWW-Authenticate", 'Bearer realm="clinotel"')
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        if self.path.split("?")[0] != TRACES_PATH:
            self._status(RefusedError("not_found", f"no OTLP endpoint at {self.path}"), close=True)
            return
        token = _bearer(self.headers.get("Authorization"))
        grant = self.server.authenticate(token)
        if grant is None or grant.role != "write":
            refused = RefusedError("unauthenticated", cannot_write(token, grant))
            self.server.receiver.stats.count_refused("unauthenticated", _peer(self.client_address))
            self._status(refused, close=True)
            return
        with self.server.receiver.budget.hold(grant.tenant) as hold:
            outcome = self._receive(grant.tenant, hold)
        # answered once the request's memory is given back: a slow reader of the answer holds none
        if isinstance(outcome, ExportResult):
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", outcome.content_type)
            self.send_header("Content-Length", str(len(outcome.body)))
            self.end_headers()
            self.wfile.write(outcome.body)
        else:
            refused, close = outcome
            self._status(refused, close=close)

    def _receive(self, tenant: str, hold: Hold) -> ExportResult | tuple[RefusedError, bool]:
        """Read the body within `hold` and export it: the result, or the refusal and whether the
        connection must close."""
        receiver = self.server.receiver
        limits = receiver.limits
        media = self._media()
        limit = limits.request_limit(media)  # OTLP/JSON has a lower one: refused before it is read
        started = time.monotonic()
        rfile = DeadlineReader(self.rfile, self.connection, started)  # `allow` gives it its time

        def allow(seconds: float) -> None:
            rfile.deadline = started + seconds

        failed: BodyError | None = None
        try:
            with hold.receiving(lambda: close_now(self.connection)):
                body = read_body(
                    rfile,
                    self.headers,
                    limit,
                    drain=_DRAIN_FACTOR * limit,
                    http10=self.request_version == "HTTP/1.0",
                    budget=hold,
                    allow=allow,
                )
        except BodyError as e:
            failed = e
        finally:
            rfile.restore()
        if hold.evicted:  # ended to make room (perhaps just as its last bytes came: unanswerable)
            failed = BodyError("busy", "the body stalled while the receive buffer was full: retry")
        if failed is not None:
            refused = RefusedError(failed.reason, failed.message)
            if failed.reason == "too_large" and media == JSON:
                refused = limits.json_too_large("the request")
            if failed.status != 411:
                receiver.stats.count_refused(failed.reason, _peer(self.client_address))
            return refused, True
        try:
            return receiver.export(
                body,
                content_type=self.headers.get("Content-Type") or "",
                content_encoding=self.headers.get("Content-Encoding") or "",
                tenant=tenant,
                hold=hold,
            )
        except RefusedError as e:
            return e, False
        except Exception:  # a bug must answer, not drop the connection: the client retries 5xx
            logger.exception("OTLP/HTTP export failed")
            return RefusedError("internal", "internal error"), True

    def _not_allowed(self) -> None:
        self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
        self.send_header("Allow", "POST")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_PUT = do_DELETE = do_PATCH = _not_allowed


class _Server(QuietHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], receiver: TraceReceiver, authenticate: Authenticate, max_connections: int
    ) -> None:
        self.receiver = receiver
        self.authenticate = authenticate
        super().__init__(address, _Handler, max_connections=max_connections)


class OtlpHttpServer(ServerThread):
    """The OTLP/HTTP receiver on `host:port`, in a background thread."""

    def __init__(
        self,
        host: str,
        port: int,
        receiver: TraceReceiver,
        authenticate: Authenticate,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        server = bind("OTLP/HTTP", host, port, lambda: _Server((host, port), receiver, authenticate, max_connections))
        super().__init__(server, "clinotel-otlp-http")


def _peer(address: Any) -> str:
    """A client's address as `host:port` (`[host]:port` for IPv6)."""
    return f"{url_host(str(address[0]))}:{address[1]}"
