"""Where notifications go: Prometheus Alertmanager (API v2), PagerDuty Events API v2, a webhook.

Routing by severity: `page` to Alertmanager and/or PagerDuty, `ticket` to the webhook. A delivery
is tried a few times with backoff; every attempt is reported to the caller, which writes it to the
audit trail. One that still fails is owed, and tried again at the next evaluation, whichever
process runs it: the audit trail, not this process's memory, says what is owed (`ledger`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

__all__ = [
    "AlertmanagerSink",
    "Attempt",
    "Notification",
    "Outbox",
    "PagerDutySink",
    "Sink",
    "WebhookSink",
    "check_url",
]

PAGERDUTY_URL: Final = "https://events.pagerduty.com/v2/enqueue"
ROUTING_KEY_ENV: Final = "PAGERDUTY_ROUTING_KEY"
BACKOFF_S: Final = (0.2, 0.5, 1.0)


@dataclass(frozen=True)
class Notification:
    """An alert instance starting or ending."""

    rule: str
    labels: dict[str, str]
    annotations: dict[str, str]
    severity: str
    firing: bool
    starts_at: datetime
    ends_at: datetime | None
    generator_url: str = ""

    @property
    def dedup_key(self) -> str:
        """Stable for the alert instance: the same key triggers and resolves the same incident."""
        identity = json.dumps({"rule": self.rule, **self.labels}, sort_keys=True)
        return "clinotel-" + hashlib.sha256(identity.encode()).hexdigest()[:40]


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Sink(Protocol):
    name: str

    def send(self, notifications: list[Notification]) -> None:
        """Deliver, or raise."""


def check_url(url: str) -> str:
    """`url` when it is an http(s) URL with a host; ValueError saying why not."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as e:
        raise ValueError(f"not a URL: {url!r} ({e})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"an http:// or https:// URL with a host, not {url!r}")
    return url


def _post(url: str, payload: object, headers: dict[str, str] | None = None, timeout: float = 10) -> None:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        request.add_header(k, v)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as e:
        with e:
            raise RuntimeError(f"HTTP {e.code} from {url}: {e.read()[:200]!r}") from None
    except (urllib.error.URLError, OSError) as e:
        raise RuntimeError(f"cannot reach {url}: {getattr(e, 'reason', e)}") from None


@dataclass
class AlertmanagerSink:
    """`POST /api/v2/alerts`: labels identify the alert; a firing alert carries an `endsAt` a few
    evaluation intervals ahead (re-sent every evaluation), a resolved one `endsAt` = now."""

    url: str
    resend_ahead: timedelta = timedelta(minutes=5)
    name: str = "alertmanager"

    def send(self, notifications: list[Notification]) -> None:
        alerts = []
        for n in notifications:
            ends = n.ends_at if not n.firing and n.ends_at else datetime.now(UTC) + self.resend_ahead
            alerts.append(
                {
                    "labels": {"alertname": n.rule, "severity": n.severity, **n.labels},
                    "annotations": n.annotations,
                    "startsAt": _iso(n.starts_at),
                    "endsAt": _iso(ends),
                    "generatorURL": n.generator_url,
                }
            )
        _post(self.url.rstrip("/") + "/api/v2/alerts", alerts)


@dataclass
class PagerDutySink:
    """Events API v2: `trigger` while firing, `resolve` when it ends, with a stable `dedup_key`.
    The routing key comes from PAGERDUTY_ROUTING_KEY."""

    url: str = PAGERDUTY_URL
    routing_key: str = field(default_factory=lambda: os.environ.get(ROUTING_KEY_ENV, ""))
    name: str = "pagerduty"

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
                    "timestamp": _iso(n.starts_at),
                    "component": n.labels.get("kind", ""),
                    "group": n.labels.get("tenant", ""),
                    "class": n.rule,
                    "custom_details": {**n.labels, **n.annotations},
                }
                event["client"] = "clinotel"
                if n.annotations.get("runbook_url"):
                    event["links"] = [{"href": n.annotations["runbook_url"], "text": "Runbook"}]
            _post(self.url, event)


@dataclass
class WebhookSink:
    """A JSON POST per batch: `{"status": "firing"|"resolved", "alerts": [...]}`."""

    url: str
    name: str = "webhook"

    def send(self, notifications: list[Notification]) -> None:
        for firing in (True, False):
            batch = [n for n in notifications if n.firing is firing]
            if batch:
                _post(self.url, {"status": "firing" if firing else "resolved", "alerts": [
                    {"rule": n.rule, "severity": n.severity, "labels": n.labels, "annotations": n.annotations,
                     "startsAt": _iso(n.starts_at), "endsAt": _iso(n.ends_at) if n.ends_at else None,
                     "dedupKey": n.dedup_key}
                    for n in batch
                ]})  # fmt: skip


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt, for the audit trail."""

    sink: str
    notification: Notification
    attempt: int
    ok: bool
    detail: str = ""


@dataclass
class Outbox:
    """Notifications for this pass, routed by severity; `flush` tries each (with quick retries) and
    keeps nothing: what failed is still owed in the audit trail, and the next pass sends it."""

    page: list[Sink]
    ticket: list[Sink]
    sleep: Callable[[float], None] = time.sleep
    pending: list[tuple[Sink, Notification, int]] = field(default_factory=list)

    def sinks(self, severity: str) -> list[Sink]:
        """Where notifications of `severity` go (each sink once)."""
        chosen = self.page if severity == "page" else self.ticket
        return list({id(s): s for s in chosen}.values())

    def add(self, n: Notification, sinks: list[Sink] | None = None, tried: int = 0) -> None:
        """Queue `n` for `sinks` (default: its severity's); `tried`: attempts already made."""
        for sink in self.sinks(n.severity) if sinks is None else sinks:
            self.pending.append((sink, n, tried))

    def flush(self) -> list[Attempt]:
        """Try every queued delivery (with a few quick retries); returns every attempt made."""
        attempts: list[Attempt] = []
        for sink, n, tried in self.pending:
            for i, delay in enumerate(BACKOFF_S):
                try:
                    sink.send([n])
                except Exception as e:  # noqa: BLE001 - every failure is recorded and owed
                    attempts.append(Attempt(sink.name, n, tried + i + 1, False, str(e)[:500]))
                    if i + 1 < len(BACKOFF_S):
                        self.sleep(delay)
                    continue
                attempts.append(Attempt(sink.name, n, tried + i + 1, True))
                break
        self.pending = []
        return attempts
