"""Notifications and their delivery: what a sink is, and the outbox that routes each notification
to the sinks of its severity (the sinks themselves: `sinks`; built from a configuration: `wiring`).

Routing by severity: `page` to the paging sinks (Alertmanager, PagerDuty), `ticket` to the ticket
sinks (the webhook). A delivery is tried a few times with backoff; every attempt is reported to
the caller, which writes it to the audit trail. One that still fails is owed, and tried again at
the next evaluation, whichever process runs it: the audit trail, not this process's memory, says
what is owed (`ledger`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Protocol
from urllib.parse import urlsplit

__all__ = ["Attempt", "Notification", "Outbox", "Sink", "check_url", "iso"]

ATTEMPTS: Final = 3
BACKOFF_S: Final = (0.2, 0.5)
"""Waits between the tries of one delivery (the last one repeated past the end)."""


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
    instance_labels: dict[str, str] = field(default_factory=dict)
    """The alert instance's own labels (`labels` less the rule's static ones; none for a
    collector rule): what the audit trail records its deliveries under, so the next pass knows
    them delivered."""

    @property
    def dedup_key(self) -> str:
        """Stable for the alert instance: the same key triggers and resolves the same incident."""
        identity = json.dumps({"rule": self.rule, **self.labels}, sort_keys=True)
        return "clinotel-" + hashlib.sha256(identity.encode()).hexdigest()[:40]


def iso(t: datetime) -> str:
    """`t` as the sinks' payloads carry it: UTC, milliseconds, `Z`."""
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Sink(Protocol):
    """Where notifications go. `name` tells its deliveries apart in the audit trail (stable across
    runs). A sink whose class sets `resend_firing = True` is sent the firing alerts again at every
    evaluation (Alertmanager, which expires an alert not re-sent)."""

    name: str

    def send(self, notifications: list[Notification]) -> None:
        """Deliver, or raise (one line: it is recorded and shown)."""


def check_url(url: str) -> str:
    """`url` when it is an http(s) URL with a host and no spaces or control characters; ValueError
    saying why not."""
    if any(c.isspace() or not c.isprintable() for c in url):
        raise ValueError(f"an http:// or https:// URL without spaces or control characters, not {url!r}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as e:
        raise ValueError(f"not a URL: {url!r} ({e})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"an http:// or https:// URL with a host, not {url!r}")
    return url


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
    attempts: int = ATTEMPTS
    backoff_s: tuple[float, ...] = BACKOFF_S
    on_close: Callable[[], None] | None = None
    """Called once by `close` (the HTTP client the sinks share, when the outbox made it)."""
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
            for i in range(self.attempts):
                try:
                    sink.send([n])
                except Exception as e:  # noqa: BLE001 - every failure is recorded and owed
                    attempts.append(Attempt(sink.name, n, tried + i + 1, False, str(e)[:500]))
                    if i + 1 < self.attempts:
                        self.sleep(self.backoff_s[min(i, len(self.backoff_s) - 1)])
                    continue
                attempts.append(Attempt(sink.name, n, tried + i + 1, True))
                break
        self.pending = []
        return attempts

    def close(self) -> None:
        """Release what the sinks hold (once; later calls do nothing)."""
        on_close, self.on_close = self.on_close, None
        if on_close is not None:
            on_close()
