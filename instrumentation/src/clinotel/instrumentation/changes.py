"""Send change events over OTLP from a process that is not a clinical service (a CI/CD pipeline,
the alert evaluator's kill switch), through clinotel's one recording path and PHI gate. Needs the
`sdk` extra."""

from __future__ import annotations

import base64
import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final
from urllib.parse import unquote

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import clinotel.instrumentation as ct
from clinotel.instrumentation._internal.runtime import MAX_TIME_NS
from clinotel.semconv import attributes as A

__all__ = ["DEFAULT_SERVICE", "ChangeSpec", "SendError", "send_changes"]

DEFAULT_SERVICE: Final = "clinotel-changes"
"""The `service.name` of change events sent by the command line."""


class SendError(RuntimeError):
    """The collector did not accept the change events (one line, with the exporter's reason).
    `status`: the HTTP status it answered, when it answered."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


_EXPORTER_LOGGER: Final = "opentelemetry.exporter"
_STATUS: Final = re.compile(r"\bcode: (\d{3})\b")
_GRPC_STATUS: Final = {"UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429, "UNAVAILABLE": 503}
_REASONS: Final = (
    (("Connection refused", "UNAVAILABLE"), "connection refused (is the collector running there?)"),
    (("Failed to parse", "Invalid URL", "No connection adapters", "Invalid IPv6"), "the endpoint is not a usable URL"),
    (("Name or service not known", "nodename nor servname", "name resolution", "getaddrinfo"), "its host is not known"),
    (("timed out", "timeout", "DEADLINE_EXCEEDED"), "no answer in time"),
)
"""What the exporter's log lines say, as the few words a refusal shows: never their own text, which
can carry the endpoint with its credentials."""


class _Said(logging.Handler):
    """What the OTLP exporter logged while it sent (it returns only FAILURE)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def reason(self) -> tuple[str, int | None]:
        """(why, in a few words; the HTTP status when the collector answered)."""
        for message in reversed(self.messages):
            found = _STATUS.search(message)
            if found:
                return f"it answered HTTP {found.group(1)}", int(found.group(1))
            for code, status in _GRPC_STATUS.items():
                if f"StatusCode.{code}" in message and code != "UNAVAILABLE":
                    return f"it answered {code}", status
        for needles, why in _REASONS:
            if any(needle in m for m in self.messages for needle in needles):
                return why, None
        return "the exporter gave up (run with the exporter's log on to see its words)", None


@contextmanager
def _listening() -> Iterator[_Said]:
    """The exporter's log lines from this thread while it sends (another thread's are not its
    refusal); they still reach the process's log, which they cannot tell a password to: the
    endpoint goes to the exporter without its credentials (`_credentials`)."""
    said = _Said()
    sender = threading.get_ident()
    said.addFilter(lambda record: record.thread in (sender, None))  # None: logging.logThreads off
    logger = logging.getLogger(_EXPORTER_LOGGER)
    logger.addHandler(said)
    try:
        yield said
    finally:
        logger.removeHandler(said)


@dataclass(frozen=True)
class ChangeSpec:
    """One change event to send (see `clinotel.instrumentation.record_change`)."""

    kind: str
    name: str
    version: str | None = None
    actor: str | None = None
    scope: Mapping[str, str] = field(default_factory=dict)
    result: str | None = None
    at: datetime | None = None


class _Held(SpanExporter):
    """Holds the spans clinotel's gate passes on until every change has been validated, then
    sends them in one export: a bad change sends nothing."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.held: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.held.extend(spans)
        return SpanExportResult.SUCCESS

    def send(self) -> bool:
        spans = [s for s in self.held if s.name == A.CHANGE_SPAN_NAME]
        self.held.clear()
        return not spans or self.inner.export(spans) is SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def send_changes(
    changes: Sequence[ChangeSpec],
    *,
    endpoint: str,
    headers: Mapping[str, str] | None = None,
    tenant: str | None = None,
    service: str = DEFAULT_SERVICE,
    protocol: str = "http/protobuf",
    exporter: SpanExporter | None = None,
) -> None:
    """Validate every change (strict: TelemetryValidationError names the bad field, nothing is
    sent) and send them to the collector at `endpoint` in one export; SendError when it refuses.
    `exporter`: sends them instead of an OTLP exporter to `endpoint` (which then only names it)."""
    # the endpoint's credentials travel as the Basic authorization requests would have made of
    # them, never in the URL the exporter logs (its words named it whole, password and all)
    bare, basic = _credentials(endpoint)
    sent_headers = dict(headers or {})
    if basic is not None:
        # headers given to the exporter replace the environment's: keep OTEL_EXPORTER_OTLP_HEADERS
        from opentelemetry.util.re import parse_env_headers

        env = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or os.environ.get("OTEL_EXPORTER_OTLP_HEADERS")
        sent_headers = {**parse_env_headers(env or "", liberal=True), **sent_headers}
        if not any(k.lower() == "authorization" for k in sent_headers):
            sent_headers["authorization"] = basic
    try:
        inner = exporter if exporter is not None else ct.otlp_exporter(bare, protocol, sent_headers or None)
    except ValueError:  # `http://[::1` and the like
        raise SendError(f"the endpoint {bare} is not a usable URL") from None
    held = _Held(inner)
    telemetry = ct.configure(
        service_name=service,
        tenant=tenant,
        exporter=held,
        batch=False,
        set_global=False,
        mode="strict",
        # a pipeline has no instance: the service's name, not the SDK's random id, so reruns agree
        resource_attributes={"service.instance.id": service},
    )
    try:
        for i, c in enumerate(changes, 1):
            at_ns = int(c.at.timestamp() * 1e9) if c.at is not None else None
            if at_ns is not None and not 0 <= at_ns <= MAX_TIME_NS:
                raise ct.TelemetryValidationError(
                    f"change {i}: `at` is after 1970 and before 2554 (what OTLP can carry)"
                )
            ct.record_change(
                c.kind, c.name, version=c.version, actor=c.actor, scope=dict(c.scope), result=c.result, at_ns=at_ns
            )
        with _listening() as said:
            sent = held.send()
    finally:
        held.held.clear()
        telemetry.restore()
    if not sent:
        why, status = said.reason()
        raise SendError(f"the collector at {bare} did not accept the change events: {why}", status)


def _credentials(url: str) -> tuple[str, str | None]:
    """(`url` without its user information, the Basic authorization it stands for, or None). The
    authority ends at the first `/`, `?` or `#` after `//`, as URLs have it: an `@` in the path or
    query names no user (splitting at the last `@` anywhere sent the events to the host after
    it). A user information with an unencoded `/` is refused: the URL means another host, and the
    exporter's words would show the password."""
    scheme, sep, rest = url.partition("//")
    if not sep:
        scheme, rest = "", url
    end = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    at = authority.rfind("@")
    if at < 0:
        port = authority.rpartition("]")[2].rpartition(":")[2] if ":" in authority.rpartition("]")[2] else ""
        if port and not (port.isascii() and port.isdigit()) and "@" in tail.partition("?")[0].partition("#")[0]:
            # `user:pa/ss@host`: no port reads so; an `@` further on in a path is a path's
            raise SendError("the endpoint's user information holds a '/': percent-encode it (%2F)")
        return url, None
    try:
        user, password = (unquote(part, errors="strict") for part in authority[:at].partition(":")[::2])
    except UnicodeDecodeError:
        raise SendError("the endpoint's user information is not UTF-8 once percent-decoded") from None
    bare = f"{scheme}{sep}{authority[at + 1 :]}{tail}"
    return bare, "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
