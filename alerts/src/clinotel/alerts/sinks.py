"""The sinks clinotel ships: Prometheus Alertmanager (API v2), PagerDuty Events API v2 and a webhook.

Each is a JSON POST through an `httpx.Client` it is given (tests inject one with a
`MockTransport`; `wiring` gives every sink of an evaluator one client, with the configured
timeout); without one, each delivery opens and closes its own. Each is registered by name in the
`clinotel.alert_sinks` entry-point group and built from an `AlertingConfig` by its `from_config`;
its `role` says which notifications it gets (`page` or `ticket`).

A delivery that fails raises RuntimeError with one line: `cannot reach URL: reason` or
`HTTP status from URL: the start of the body`. A redirect is a failure too: following it would
turn the POST into a GET and lose the notification. Each POST has an overall deadline besides
httpx's timeouts (which bound each read, not the whole: a receiver answering a byte every few
seconds held the evaluator forever): past it, its connection is shut and the delivery fails.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Final

import httpx

from clinotel.alerts.paging import Notification, Sink, iso

if TYPE_CHECKING:
    from clinotel.alerts.config import AlertingConfig

__all__ = [
    "DEFAULT_DEADLINE_S",
    "DEFAULT_TIMEOUT_S",
    "PAGERDUTY_URL",
    "ROUTING_KEY_ENV",
    "AlertmanagerSink",
    "PagerDutySink",
    "SinkConfigError",
    "WebhookSink",
    "http_client",
    "post",
    "shown",
]

PAGERDUTY_URL: Final = "https://events.pagerduty.com/v2/enqueue"
ROUTING_KEY_ENV: Final = "PAGERDUTY_ROUTING_KEY"
DEFAULT_TIMEOUT_S: Final = 10.0
"""Connect, read, write and pool timeouts of one delivery, each."""
DEFAULT_DEADLINE_S: Final = 20.0
"""The whole of one delivery attempt: connecting, sending and reading the answer."""
MAX_ANSWER_BYTES: Final = 64 * 1024
"""What is read of a receiver's answer (its start is quoted in an error; the rest is not needed)."""


class SinkConfigError(ValueError):
    """A sink the configuration cannot build (a missing URL or routing key, an unknown name)."""


def http_client(timeout_s: float = DEFAULT_TIMEOUT_S) -> httpx.Client:
    """A client as the sinks use it: the system's CA certificates (as urllib's default context),
    the proxy environment honoured, redirects not followed."""
    return httpx.Client(timeout=timeout_s, verify=ssl.create_default_context(), follow_redirects=False)


def post(
    http: httpx.Client | None, url: str, payload: object, headers: Mapping[str, str] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S, deadline_s: float = DEFAULT_DEADLINE_S,
) -> None:  # fmt: skip
    """POST `payload` as JSON to `url`; RuntimeError (one line) unless the answer is a 2xx within
    `deadline_s` in all. `timeout_s`: without `http`, the timeouts of the client opened for this
    one delivery."""
    body = json.dumps(payload).encode()
    # a connection of its own (closed after the answer), so the deadline can shut it
    sent = {"Content-Type": "application/json", **(headers or {}), "Connection": "close"}
    guard = _Deadline(deadline_s)
    try:
        with guard:
            if http is None:
                with http_client(timeout_s) as own:
                    status, head = _exchange(own, url, body, sent, guard)
            else:
                status, head = _exchange(http, url, body, sent, guard)
    except httpx.HTTPError as e:
        if guard.expired:
            raise RuntimeError(f"cannot reach {shown(url)}: no answer within {deadline_s:g} s") from None
        raise RuntimeError(f"cannot reach {shown(url)}: {_without(str(e), url) or type(e).__name__}") from None
    # an answer read whole is the receiver's, even if the deadline passed as it ended: failing it
    # would send a delivered notification again
    if not 200 <= status < 300:
        raise RuntimeError(f"HTTP {status} from {shown(url)}: {head[:200]!r}")


def _exchange(
    http: httpx.Client, url: str, body: bytes, headers: Mapping[str, str], guard: _Deadline
) -> tuple[int, bytes]:
    """The answer's status and the start of its body, the connection watched by `guard`."""
    with http.stream("POST", url, content=body, headers=headers, extensions={"trace": guard.trace}) as response:
        head = b""
        for chunk in response.iter_bytes():
            head += chunk[: MAX_ANSWER_BYTES - len(head)]
            if len(head) >= MAX_ANSWER_BYTES:
                break
        return response.status_code, head


class _Deadline:
    """Shuts the connection of one request once `seconds` have passed since it began: every read
    and write in the request then fails at once."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def trace(self, event: str, info: Mapping[str, Any]) -> None:
        """httpcore's trace hook: keeps the socket of each connection the request opens."""
        # the TCP socket, then (https) the TLS socket that takes it over: the first is detached
        # by the wrapping, and shutting it down then did nothing (a trickling https receiver held
        # a delivery 49 s past a 3 s deadline, a 2026-12-07 review)
        # through a proxy the TLS of the tunnel is `proxy.start_tls` (a review of this fix found the
        # deadline held nothing through HTTPS_PROXY); a SOCKS proxy's steps are `socks.*`
        if not event.endswith((".connect_tcp.complete", ".start_tls.complete")):
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):
            with self._lock:
                self._sockets.append(sock)
                if self.expired:
                    _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)


_PLAIN_SEGMENT: Final = re.compile(r"[A-Za-z][A-Za-z_-]{0,23}|v\d{1,2}")


def shown(url: str) -> str:
    """`url` as the audit trail (readable by the alert's tenant) and logs show it: without a
    password, query string or path segment that is not a plain word, any of which may carry the
    receiver's credentials (`/services/T0/B0/<token>` becomes `/services/***/***/***`)."""
    from urllib.parse import urlsplit

    from clinotel.model.store import shown_url

    parts = urlsplit(shown_url(url))
    path = "/".join(p if not p or _PLAIN_SEGMENT.fullmatch(p) else "***" for p in parts.path.split("/"))
    return parts._replace(path=path, query="", fragment="").geturl()


def _without(text: str, url: str) -> str:
    """An HTTP client's error text with the URL it may quote shown as `shown` has it."""
    return text.replace(url, shown(url)) if url else text


def _numbered(name: str, i: int) -> str:
    """The receiver name of the `i`-th sink of one kind: stable across runs for the audit trail,
    which says per receiver what each one has been told."""
    return name if i == 0 else f"{name}-{i + 1}"


MIN_EXPIRY_S: Final = 3600
"""A firing alert outlives its last re-send by an hour at least: Alertmanager resolves an alert
not re-sent by its `endsAt`, and a collector killed mid-incident sent four "resolved" notifications
4.5 minutes later for an outage still going on (an on-call review). A real resolution is sent as
one (`endsAt` = when it resolved); a dead evaluator leaves its pages firing, not cleared."""


@dataclass
class AlertmanagerSink:
    """`POST /api/v2/alerts`: labels identify the alert; a firing alert carries an `endsAt` a few
    evaluation intervals ahead (re-sent every evaluation), a resolved one `endsAt` = now."""

    url: str
    resend_ahead: timedelta = timedelta(seconds=MIN_EXPIRY_S)
    """How long Alertmanager keeps a firing alert not re-sent (`AlertingConfig.alert_expiry_s`):
    several evaluation intervals and an hour at least, or it resolves an ongoing incident (and
    pages it again), or tells everyone it is over when the evaluator died."""
    name: str = "alertmanager"
    http: httpx.Client | None = field(default=None, repr=False, compare=False)
    deadline_s: float = DEFAULT_DEADLINE_S
    role: ClassVar[str] = "page"
    resend_firing: ClassVar[bool] = True
    """Alertmanager expects firing alerts re-sent until they end (it deduplicates them)."""

    @classmethod
    def from_config(cls, config: AlertingConfig, http: httpx.Client, env: Mapping[str, str]) -> list[Sink]:
        if not config.alertmanager:
            raise SinkConfigError("the alertmanager sink needs --alertmanager URL")
        ahead = timedelta(seconds=config.alert_expiry_s)
        return [
            cls(url, ahead, name=_numbered("alertmanager", i), http=http, deadline_s=config.deadline_s)
            for i, url in enumerate(config.alertmanager)
        ]

    def send(self, notifications: list[Notification]) -> None:
        alerts = []
        for n in notifications:
            ends = n.ends_at if not n.firing and n.ends_at else datetime.now(UTC) + self.resend_ahead
            alerts.append(
                {
                    "labels": {"alertname": n.rule, "severity": n.severity, **n.labels},
                    "annotations": n.annotations,
                    "startsAt": iso(n.starts_at),
                    "endsAt": iso(ends),
                    "generatorURL": n.generator_url,
                }
            )
        post(self.http, self.url.rstrip("/") + "/api/v2/alerts", alerts, deadline_s=self.deadline_s)


@dataclass
class PagerDutySink:
    """Events API v2: `trigger` while firing, `resolve` when it ends, with a stable `dedup_key`.
    Built from a configuration, the routing key is read from the environment variable it names
    (PAGERDUTY_ROUTING_KEY by default)."""

    url: str = PAGERDUTY_URL
    routing_key: str = field(default="", repr=False)
    name: str = "pagerduty"
    http: httpx.Client | None = field(default=None, repr=False, compare=False)
    deadline_s: float = DEFAULT_DEADLINE_S
    role: ClassVar[str] = "page"

    @classmethod
    def from_config(cls, config: AlertingConfig, http: httpx.Client, env: Mapping[str, str]) -> list[Sink]:
        key = env.get(config.routing_key_env, "").strip()
        if not key:
            raise SinkConfigError(f"--pagerduty needs the routing key in {config.routing_key_env}")
        return [cls(config.pagerduty_url, key, http=http, deadline_s=config.deadline_s)]

    def send(self, notifications: list[Notification]) -> None:
        if not self.routing_key:
            raise RuntimeError(f"no PagerDuty routing key: set {ROUTING_KEY_ENV}")
        for n in notifications:
            event: dict[str, Any] = {
                "routing_key": self.routing_key,
                "event_action": "trigger" if n.firing else "resolve",
                "dedup_key": n.dedup_key,
            }
            if n.firing:
                event["payload"] = {
                    "summary": n.annotations.get("summary", n.rule)[:1024],
                    "source": n.labels.get("tenant") or "clinotel",
                    "severity": "critical",
                    "timestamp": iso(n.starts_at),
                    "component": n.labels.get("kind", ""),
                    "group": n.labels.get("tenant", ""),
                    "class": n.rule,
                    "custom_details": {**n.labels, **n.annotations},
                }
                event["client"] = "clinotel"
                if n.annotations.get("runbook_url"):
                    event["links"] = [{"href": n.annotations["runbook_url"], "text": "Runbook"}]
            post(self.http, self.url, event, deadline_s=self.deadline_s)


@dataclass
class WebhookSink:
    """A JSON POST per batch: `{"status": "firing"|"resolved", "alerts": [...]}`."""

    url: str
    name: str = "webhook"
    http: httpx.Client | None = field(default=None, repr=False, compare=False)
    deadline_s: float = DEFAULT_DEADLINE_S
    role: ClassVar[str] = "ticket"

    @classmethod
    def from_config(cls, config: AlertingConfig, http: httpx.Client, env: Mapping[str, str]) -> list[Sink]:
        if not config.webhook:
            raise SinkConfigError("the webhook sink needs --webhook URL")
        return [
            cls(url, name=_numbered("webhook", i), http=http, deadline_s=config.deadline_s)
            for i, url in enumerate(config.webhook)
        ]

    def send(self, notifications: list[Notification]) -> None:
        for firing in (True, False):
            batch = [n for n in notifications if n.firing is firing]
            if batch:
                post(self.http, self.url, {"status": "firing" if firing else "resolved", "alerts": [
                    {"rule": n.rule, "severity": n.severity, "labels": n.labels, "annotations": n.annotations,
                     "startsAt": iso(n.starts_at), "endsAt": iso(n.ends_at) if n.ends_at else None,
                     "dedupKey": n.dedup_key}
                    for n in batch
                ]}, deadline_s=self.deadline_s)  # fmt: skip
