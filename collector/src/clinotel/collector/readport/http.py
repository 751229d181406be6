"""The `--http` port: ClickHouse's HTTP interface, read-only, plus `/metrics`.

Clients that speak to a ClickHouse server over HTTP (clickhouse-connect, Grafana's ClickHouse
plugin, curl) read the collector's store here: `GET /?query=…` or `POST /` with the query in the
body, `database`, `default_format`, `param_<name>` query parameters and settings as URL
parameters, credentials as HTTP Basic, `X-ClickHouse-User`/`X-ClickHouse-Key`, `user`/`password`
parameters or a Bearer token. Answers carry ClickHouse's headers, and errors its text, codes and
statuses.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import logging
import re
import socket
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final
from urllib.parse import parse_qsl, urlsplit

from clinotel.collector.errors import RefusedError
from clinotel.collector.net.body import BodyError, read_body
from clinotel.collector.net.deadline import DeadlineReader
from clinotel.collector.net.server import MAX_CONNECTIONS, CappedRequestHandler, QuietHTTPServer, ServerThread, bind
from clinotel.collector.readport import native
from clinotel.collector.readport.guard import READONLY
from clinotel.collector.readport.reader import ClickHouseError, ReadResult, SqlReader, content_type
from clinotel.collector.receiver.export import decompress
from clinotel.model.digits import ascii_digits

__all__ = ["ClickHouseHttpServer", "Credentials", "ReaderAccess"]

logger: Final = logging.getLogger("clinotel.collector")

MAX_QUERY_BYTES: Final = 1 << 20
BODY_TIMEOUT_S: Final = 30.0
"""How long a request's whole body may take to arrive, however slowly it trickles (the socket's
REQUEST_TIMEOUT_S bounds each read, not the whole: a byte every 20 s held a connection for good)."""
MAX_FORM_PARTS: Final = 1000
"""Parts a multipart/form-data body may have (ClickHouse's query, `param_<name>`s and settings)."""
MAX_PART_HEADER_BYTES: Final = 8192
"""Bytes of one part's header section."""
MAX_HEADER_PARAMS: Final = 32
"""Parameters of one part's Content-Disposition or of the request's Content-Type."""
TRANSPORT_PARAMS: Final = frozenset(
    {"query", "database", "default_format", "user", "password", "query_id", "session_id", "session_timeout",
     "session_check", "compress", "decompress", "buffer_size", "wait_end_of_query", "client_protocol_version",
     "role", "quota_key", "send_progress_in_http_headers", "http_headers_progress_interval_ms",
     "enable_http_compression", "add_http_cors_header", "stacktrace", "close_session",
     "cancel_http_readonly_queries_on_client_close", "http_write_exception_in_output_format",
     "http_zlib_compression_level"}
)  # fmt: skip
"""URL parameters that shape the HTTP exchange rather than the query; accepted and not applied."""
SERVER_NAME: Final = "clinotel"
_QUERY_ID: Final = re.compile(r"[\x21-\x7e]{1,128}")
_QVALUE: Final = re.compile(r"[0-9]+(?:\.[0-9]*)?", re.ASCII)
"""An Accept-Encoding weight (RFC 9110 allows at most three decimals; any digits are read)."""
_INSERT_SCAN: Final = 4096
"""How far into a statement `_starts_insert` looks past whitespace and comments."""
_SKIPPED: Final = "\ufeff\u200b\u200c\u200d\u2060\u180e"
"""What the engine's lexer passes over as whitespace besides Python's whitespace."""


class _BodyError(ClickHouseError):
    """A request body not read, as ClickHouse's HTTP handler answers it; the connection then closes."""

    _ERRORS: Final = {
        400: (27, "CANNOT_PARSE_INPUT_ASSERTION_FAILED"),
        411: (381, "HTTP_LENGTH_REQUIRED"),
        413: (229, "QUERY_IS_TOO_LARGE"),
        501: (48, "NOT_IMPLEMENTED"),
    }

    def __init__(self, refused: BodyError) -> None:
        super().__init__(*self._ERRORS[refused.status], refused.message)
        self._status = refused.status

    @property
    def http_status(self) -> int:
        return self._status


class _FormDataError(ClickHouseError):
    """A multipart/form-data body not read (malformed, or past a bound): 400, as ClickHouse answers
    its CANNOT_PARSE_* errors."""

    def __init__(self, message: str) -> None:
        super().__init__(27, "CANNOT_PARSE_INPUT_ASSERTION_FAILED", message)

    @property
    def http_status(self) -> int:
        return 400


@dataclass(frozen=True)
class Credentials:
    """What a request presented: a user name (informational) and a secret (the token)."""

    user: str | None
    secret: str | None


@dataclass(frozen=True)
class ReaderAccess:
    """Who a reader is: a tenant, or `None` for every tenant (an operator)."""

    tenant: str | None


Authorize = Callable[[Credentials], ReaderAccess]
"""Maps credentials to access, or raises ClickHouseError (REQUIRED_PASSWORD, AUTHENTICATION_FAILED…)."""
AuthorizeMetrics = Callable[[Credentials], None]
"""Returns when the credentials may read /metrics, else raises ClickHouseError."""


def _credentials(headers: object, params: dict[str, str]) -> Credentials:
    """What the request line and headers present: Authorization (Basic or Bearer), then
    `X-ClickHouse-User`/`X-ClickHouse-Key`, then the URL's `user`/`password`. Never the body: a
    request is authorised before its body is read (as ClickHouse's HTTP handler does)."""
    get = headers.get  # type: ignore[attr-defined]
    auth = get("Authorization") or ""
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "basic" and value:
        try:
            user, _, password = base64.b64decode(value.strip()).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return Credentials(None, None)
        return Credentials(user or None, password or None)
    if scheme.lower() == "bearer" and value.strip():
        return Credentials(None, value.strip())
    if get("X-ClickHouse-Key") or get("X-ClickHouse-User"):
        return Credentials(get("X-ClickHouse-User"), get("X-ClickHouse-Key") or None)
    return Credentials(params.get("user"), params.get("password") or None)


class _FormError(ValueError):
    """A multipart/form-data body that is not read: over a bound, or malformed."""


_TOKEN_OR_QUOTED: Final = re.compile(r'\s*([^=;\s]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^;]*))?\s*(?:;|$)', re.DOTALL)


def _header_params(value: str) -> tuple[str, dict[str, str]]:
    """The main value of a header (`form-data`, `multipart/form-data`) and its parameters, at
    most MAX_HEADER_PARAMS of them (names lower-cased, quotes and backslash escapes removed)."""
    main, _, rest = value.partition(";")
    params: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        match = _TOKEN_OR_QUOTED.match(rest, pos)
        if match is None or match.end() == pos:
            raise _FormError(f"malformed header parameters: {rest[pos : pos + 40]!r}")
        if len(params) >= MAX_HEADER_PARAMS:
            raise _FormError(f"over {MAX_HEADER_PARAMS} parameters in a header")
        name, raw = match.group(1).lower(), (match.group(2) or "").strip()
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1], flags=re.DOTALL)
        params[name] = raw
        pos = match.end()
    return main.strip().lower(), params


def _form_fields(body: bytes, content_type_header: str) -> dict[str, str]:
    """The text fields of a multipart/form-data body (`query`, `param_<name>`, settings): parts
    with a Content-Disposition `name` and no `filename`, in order (a later part of the same name
    wins). Bounded before any work: at most MAX_FORM_PARTS parts, MAX_PART_HEADER_BYTES of headers
    and MAX_HEADER_PARAMS parameters a part, and no nested multipart (depth 1). Raises _FormError."""
    _, ctype = _header_params(content_type_header)
    boundary = ctype.get("boundary", "")
    if not 1 <= len(boundary) <= 70:  # RFC 2046 §5.1.1
        raise _FormError("multipart/form-data needs a boundary of 1 to 70 characters")
    delimiter = b"--" + boundary.encode("latin-1")
    if body.startswith(delimiter):
        pos = len(delimiter)
    else:
        found = body.find(b"\r\n" + delimiter)
        if found < 0:
            raise _FormError("the body has no multipart boundary")
        pos = found + 2 + len(delimiter)
    fields: dict[str, str] = {}
    parts = 0
    while True:
        if body.startswith(b"--", pos):  # the close delimiter
            return fields
        line_end = body.find(b"\r\n", pos)
        if line_end < 0 or body[pos:line_end].strip(b" \t"):
            raise _FormError("a multipart boundary line is not followed by CRLF")
        start = line_end + 2
        end = body.find(b"\r\n" + delimiter, start)
        if end < 0:
            raise _FormError("the multipart body ends inside a part (no closing boundary)")
        parts += 1
        if parts > MAX_FORM_PARTS:
            raise _FormError(f"over {MAX_FORM_PARTS} parts in a multipart body")
        _form_part(body, start, end, fields)
        pos = end + 2 + len(delimiter)


def _form_part(body: bytes, start: int, end: int, fields: dict[str, str]) -> None:
    if body.startswith(b"\r\n", start):
        head, data_start = b"", start + 2
    else:
        head_end = body.find(b"\r\n\r\n", start, min(end, start + MAX_PART_HEADER_BYTES + 4))
        if head_end < 0:
            raise _FormError(f"a part's headers are over {MAX_PART_HEADER_BYTES:,} bytes or not ended by a blank line")
        head, data_start = body[start:head_end], head_end + 4
    headers: dict[str, str] = {}
    for line in head.split(b"\r\n") if head else []:
        key, colon, value = line.partition(b":")
        if not colon or not key.strip() or key[:1] in b" \t":  # no folded lines (RFC 7578 §4.8)
            raise _FormError(f"malformed part header line {line[:40]!r}")
        headers[key.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
    ptype, _ = _header_params(headers.get("content-type", "text/plain"))
    if ptype.startswith("multipart/"):
        raise _FormError("nested multipart parts are not read")
    if headers.get("content-transfer-encoding", "").lower() not in ("", "7bit", "8bit", "binary"):
        raise _FormError("a part's Content-Transfer-Encoding must be 7bit, 8bit or binary")
    _, disposition = _header_params(headers.get("content-disposition", ""))
    name = disposition.get("name")
    if name and "filename" not in disposition:
        fields[name] = body[data_start:end].decode("utf-8")


class _Handler(CappedRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("http %s " + format, self.client_address[0], *args)

    def _reply(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-ClickHouse-Server-Display-Name", SERVER_NAME)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, err: ClickHouseError, query_id: str | None = None) -> None:
        extra = {"X-ClickHouse-Exception-Code": str(err.code)}
        if query_id:
            extra["X-ClickHouse-Query-Id"] = query_id
        if err.http_status == 401:
            extra["WWW-Authenticate"] = f'Basic realm="{SERVER_NAME}"'
        version = self.server.reader.version if self.server.reader else "unknown"
        self._reply(err.http_status, err.body(version).encode(), "text/plain; charset=UTF-8", extra)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if self.headers.get("Transfer-Encoding") or self.headers.get("Content-Length", "0").strip() not in ("", "0"):
            # a GET's body is never read: what follows it on the connection is no request of ours
            # (a second GET smuggled in a first one's body was answered)
            self.close_connection = True
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        if url.path in ("/ping", "/") and "query" not in params:
            problem = self.server.health()
            if problem is None:
                self._reply(HTTPStatus.OK, b"Ok.\n", "text/plain; charset=UTF-8")
            else:  # a collector that cannot store what it receives is not OK
                body = f"Not OK: {problem}\n".encode()
                self._reply(HTTPStatus.SERVICE_UNAVAILABLE, body, "text/plain; charset=UTF-8")
        elif url.path == "/metrics":
            try:
                self.server.authorize_metrics(_credentials(self.headers, params))
            except ClickHouseError as e:
                self._error(e)
                return
            self._reply(HTTPStatus.OK, self.server.metrics().encode(), "text/plain; version=0.0.4; charset=utf-8")
        elif url.path == "/":
            self._query(params, params.get("query", ""))
        else:
            self._reply(HTTPStatus.NOT_FOUND, b"Not found: /, /ping and /metrics are served here.\n", "text/plain")

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        if url.path != "/":
            self._refuse_unread(HTTPStatus.NOT_FOUND, b"Not found: queries are posted to /.\n")
            return
        # Who is asking comes from the request line and headers alone: a request that is not
        # authorised is answered before a byte of its body is read (or parsed).
        try:
            access = self.server.authorize(_credentials(self.headers, params))
        except ClickHouseError as e:
            self._refuse_unread(e)
            return
        if _starts_insert(params.get("query", "")):
            # refused before its rows are read (curl's `?query=INSERT …` with the rows as the body)
            self._refuse_unread(_read_only())
            return
        try:
            body = self._body()
        except ClickHouseError as e:
            self.close_connection = True
            self._error(e)
            return
        head = params.get("query", "")  # the engine reads the parameter, then the body
        if _starts_insert(f"{head}\n{bytes(body[:_INSERT_SCAN]).decode('utf-8', 'replace')}"):
            # clickhouse-connect's insert: the statement and then its rows, in the body
            self._error(_read_only())
            return
        ctype = self.headers.get("Content-Type") or ""
        if ctype.lower().startswith("multipart/form-data"):  # other types: the body is the query, as curl -d sends it
            try:
                fields = _form_fields(body, ctype)
            except (ValueError, UnicodeDecodeError) as e:
                self._error(_FormDataError(f"Cannot read form data: {e}"))
                return
            params.update(fields)
            sql = params.get("query", "")
        else:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                self._error(ClickHouseError(62, "SYNTAX_ERROR", "The query is not valid UTF-8"))
                return
            sql = "\n".join(part for part in (params.get("query", ""), text) if part)
        self._query(params, sql, access)

    def _refuse_unread(self, answer: ClickHouseError | HTTPStatus, text: bytes = b"") -> None:
        """Answer without reading the body, then close: what the client already sent is read
        without waiting (closing on unread data would reset the answer away), never more."""
        self.close_connection = True
        if isinstance(answer, ClickHouseError):
            self._error(answer)
        else:
            self._reply(answer, text, "text/plain")
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.setblocking(False)
            for _ in range(16):  # at most 1 MiB: what has arrived, not what is still coming
                if not self.connection.recv(1 << 16):
                    break

    def _body(self) -> bytes:
        """The body, whole within `body_timeout_s` of its first read (each read also within the
        socket's timeout), at most MAX_QUERY_BYTES, decompressed."""
        rfile = DeadlineReader(self.rfile, self.connection, time.monotonic() + self.server.body_timeout_s)
        try:
            body = read_body(
                rfile,
                self.headers,
                MAX_QUERY_BYTES,
                drain=4 * MAX_QUERY_BYTES,
                http10=self.request_version == "HTTP/1.0",
            )
        except BodyError as e:
            raise _BodyError(e) from None
        except TimeoutError:
            raise ClickHouseError(
                159, "TIMEOUT_EXCEEDED", f"the request body did not arrive within {self.server.body_timeout_s:g} s"
            ) from None
        finally:
            with contextlib.suppress(OSError):
                self.connection.settimeout(self.server.request_timeout_s)
        try:
            return decompress(body, self.headers.get("Content-Encoding") or "", MAX_QUERY_BYTES)
        except RefusedError as e:
            if e.reason == "unsupported_encoding":  # clickhouse-connect sends an insert's rows lz4 or zstd
                raise ClickHouseError(
                    36,
                    "BAD_ARGUMENTS",
                    f"{e.message}: a query is read as text, plain, gzip or deflate (and this read port is "
                    "read-only: an insert's rows are not read)",
                ) from None
            raise ClickHouseError(36, "BAD_ARGUMENTS", e.message) from None

    def _query(self, params: dict[str, str], sql: str, access: ReaderAccess | None = None) -> None:
        """Run `sql` for the request; `access` when the request was authorised already (POST)."""
        query_id = params.get("query_id") or None
        if query_id is not None and not _QUERY_ID.fullmatch(query_id):
            # echoed in a header: never let a client write CR/LF (or anything odd) into the answer
            self._error(ClickHouseError(36, "BAD_ARGUMENTS", "query_id: up to 128 printable ASCII characters"))
            return
        reader = self.server.reader
        if reader is None:
            self._error(
                ClickHouseError(
                    48,
                    "NOT_IMPLEMENTED",
                    "this collector stores into a ClickHouse server: query that server (docs/operations.md)",
                ),
                query_id,
            )
            return
        if not sql.strip():
            self._error(ClickHouseError(62, "SYNTAX_ERROR", "Empty query"), query_id)
            return
        try:
            if access is None:
                access = self.server.authorize(_credentials(self.headers, params))
        except ClickHouseError as e:
            logger.debug("reader refused: %s", e.message)
            self._error(e, query_id)
            return
        try:
            # the slot is held until the answer is written: an answer stays in memory until its
            # client has read it, so a slow client holds one of its tenant's slots meanwhile
            with reader.slot(access.tenant):
                result = reader.query(
                    sql,
                    tenant=access.tenant,
                    database=params.get("database") or None,
                    default_format=params.get("default_format") or None,
                    params={k.removeprefix("param_"): v for k, v in params.items() if k.startswith("param_")},
                    settings={
                        k: v for k, v in params.items() if k not in TRANSPORT_PARAMS and not k.startswith("param_")
                    }
                    | native.engine_settings(params),
                    query_id=query_id,
                    slot_held=True,
                )
                self._result(result, params)
        except ClickHouseError as e:
            logger.debug("reader refused: %s", e.message)
            self._error(e, query_id)

    def _result(self, result: ReadResult, params: dict[str, str]) -> None:
        reader = self.server.reader
        assert reader is not None
        headers = {
            "X-ClickHouse-Query-Id": result.query_id,
            "X-ClickHouse-Format": result.format,
            "X-ClickHouse-Timezone": reader.timezone,
            "X-ClickHouse-Summary": json.dumps(result.summary(), separators=(",", ":")),
        }
        try:
            body = native.reframe(result.body, result.format, params, max_bytes=reader.limits.max_result_bytes)
        except ClickHouseError as e:
            self._error(e, result.query_id)
            return
        # As ClickHouse does: compressed only when the client asks twice, by setting and by header.
        encoding = (
            _response_encoding(self.headers.get("Accept-Encoding"))
            if params.get("enable_http_compression") == "1"
            else None
        )
        if encoding is not None:
            body = _compress(body, encoding, params.get("http_zlib_compression_level"))
            headers["Content-Encoding"] = encoding
        self._reply(HTTPStatus.OK, body, content_type(result.format), headers)


def _read_only() -> ClickHouseError:
    """The answer to an INSERT, refused as a ClickHouse server in readonly mode refuses it."""
    return ClickHouseError(*READONLY, "Cannot execute query in readonly mode: this read port is read-only")


def _starts_insert(sql: str) -> bool:
    """True when `sql` begins, past whitespace and comments, with INSERT; linear in the text
    read (at most `_INSERT_SCAN` characters), whatever it holds."""
    text, i = sql[:_INSERT_SCAN], 0
    while i < len(text):
        if text[i].isspace() or text[i] in _SKIPPED:
            i += 1
        elif text.startswith("--", i) or text.startswith("#", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end + 1
        elif text.startswith("/*", i):  # comments nest, as the engine's lexer reads them
            depth, i = 1, i + 2
            while depth and i < len(text):
                opened, closed = text.find("/*", i), text.find("*/", i)
                if closed < 0:
                    return False
                if 0 <= opened < closed:
                    depth, i = depth + 1, opened + 2
                else:
                    depth, i = depth - 1, closed + 2
            if depth:
                return False
        else:
            break
    word = text[i : i + 7]
    return word[:6].upper() == "INSERT" and not (word[6:].isalnum() or word[6:] == "_")


def _response_encoding(accept: str | None) -> str | None:
    """`gzip` or `deflate` when the client's Accept-Encoding allows one (gzip preferred), else None."""
    allowed = set()
    for item in (accept or "").split(","):
        name, _, params = item.strip().partition(";")
        q = params.strip().removeprefix("q=")
        if name and not (params and _QVALUE.fullmatch(q) and float(q) == 0):
            allowed.add(name.strip().lower())
    for encoding in ("gzip", "deflate"):
        if encoding in allowed or "*" in allowed:
            return encoding
    return None


def _compress(body: bytes, encoding: str, level: str | None) -> bytes:
    lvl = int(level) if level and ascii_digits(level) and 1 <= int(level) <= 9 else 3  # ClickHouse's default
    if encoding == "gzip":
        return gzip.compress(body, compresslevel=lvl, mtime=0)
    return zlib.compress(body, lvl)


class _Server(QuietHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    body_timeout_s = BODY_TIMEOUT_S

    def __init__(
        self,
        address: tuple[str, int],
        metrics: Callable[[], str],
        reader: SqlReader | None,
        authorize: Authorize,
        authorize_metrics: AuthorizeMetrics,
        health: Callable[[], str | None],
        max_connections: int,
    ) -> None:
        self.metrics = metrics
        self.reader = reader
        self.authorize = authorize
        self.authorize_metrics = authorize_metrics
        self.health = health
        super().__init__(address, _Handler, max_connections=max_connections)


class ClickHouseHttpServer(ServerThread):
    """ClickHouse's HTTP interface (read-only) and `/metrics` on `host:port`, in a background thread.
    `health` says why the collector is not OK (`/ping` then answers 503), or None."""

    def __init__(
        self,
        host: str,
        port: int,
        metrics: Callable[[], str],
        reader: SqlReader | None,
        authorize: Authorize,
        authorize_metrics: AuthorizeMetrics,
        health: Callable[[], str | None] = lambda: None,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        server = bind("the ClickHouse HTTP interface (--http)", host, port,
                      lambda: _Server((host, port), metrics, reader, authorize, authorize_metrics, health,
                                      max_connections))  # fmt: skip
        self._chserver = server
        super().__init__(server, "clinotel-http")

    def set_reader(self, reader: SqlReader | None) -> None:
        """The store's reader, once it is open (the port is bound before the store)."""
        self._chserver.reader = reader
