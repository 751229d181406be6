"""Notifications and their delivery: what a sink is, and the outbox that routes each notification
to the sinks of its severity (the sinks themselves: `sinks`; built from a configuration: `wiring`).

Routing by severity: `page` to the paging sinks (Alertmanager, PagerDuty), `ticket` to the ticket
sinks (the webhook). A delivery is tried a few times with backoff; every attempt is reported to
the caller, which writes it to the audit trail. Each sink is delivered to in a thread of its own,
within a time budget per pass: one that hangs delays neither the others nor the next pass. One
that still fails is owed, and tried again at the next evaluation, whichever process runs it: the
audit trail, not this process's memory, says what is owed (`ledger`).
"""

from __future__ import annotations

import hashlib
import json
import threading
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
BUDGET_S: Final = 30.0
"""A pass starts no delivery attempt later than this after it began delivering."""
ATTEMPT_S: Final = 30.0
"""How long past the budget a sink's last attempt is waited for (the sinks' own deadline is shorter)."""


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
    saying why not, the URL shown without its userinfo (`store.shown_url`: a password or token)."""
    from clinotel.model.store import shown_url

    # a refused URL is no URL to read the userinfo of: everything before its last `@` goes (a
    # password holding `/`, `?` or `#` ended the userinfo early, and the rest was quoted)
    seen = f"***@{url.rpartition('@')[2]}" if "@" in url else shown_url(url)
    if any(c.isspace() or not c.isprintable() for c in url):
        raise ValueError(f"an http:// or https:// URL without spaces or control characters, not {seen!r}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as e:
        # urlsplit's words quote the port it read, which is a password's start in `user:pass@`
        why = "" if "@" in url else f" ({e})"
        raise ValueError(f"not a URL: {seen!r}{why}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"an http:// or https:// URL with a host, not {seen!r}")
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
    budget_s: float = BUDGET_S
    """No attempt starts this long after `flush` began; what is left is owed to the next pass."""
    attempt_s: float = ATTEMPT_S
    """How long past `budget_s` a sink's attempt under way is waited for before it is given up."""
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
        """Try every queued delivery (with a few quick retries), each sink in a thread of its own,
        for `budget_s` at most; returns every attempt made, sink by sink. A delivery not tried in
        time is reported as a failed attempt that counts no try (`attempt` unchanged): it is owed."""
        by_sink: dict[int, _Deliveries] = {}
        for sink, n, tried in self.pending:
            by_sink.setdefault(id(sink), _Deliveries(sink, self)).queue.append((n, tried))
        self.pending = []
        deadline = time.monotonic() + self.budget_s
        runs = list(by_sink.values())
        if len(runs) == 1:
            runs[0].run(deadline)
        else:
            threads = [threading.Thread(target=r.run, args=(deadline,), name=f"clinotel-sink-{r.sink.name}",
                                        daemon=True) for r in runs]  # fmt: skip
            for t in threads:
                t.start()
            for t in threads:
                t.join(max(0.0, deadline + self.attempt_s - time.monotonic()))
        return [a for r in runs for a in r.report()]

    def close(self) -> None:
        """Release what the sinks hold (once; later calls do nothing)."""
        on_close, self.on_close = self.on_close, None
        if on_close is not None:
            on_close()


class _Deliveries:
    """One sink's share of a flush, run in its own thread."""

    def __init__(self, sink: Sink, outbox: Outbox) -> None:
        self.sink = sink
        self.outbox = outbox
        self.queue: list[tuple[Notification, int]] = []
        self.attempts: list[Attempt] = []
        self.current: tuple[Notification, int] | None = None
        self.lock = threading.Lock()

    def run(self, deadline: float) -> None:
        box = self.outbox
        for n, tried in self.queue:
            for i in range(box.attempts):
                if time.monotonic() >= deadline:
                    return
                with self.lock:
                    self.current = (n, tried + i + 1)
                try:
                    self.sink.send([n])
                except Exception as e:  # noqa: BLE001 - every failure is recorded and owed
                    ok, detail = False, str(e)[:500]
                else:
                    ok, detail = True, ""
                with self.lock:
                    self.current = None
                    self.attempts.append(Attempt(self.sink.name, n, tried + i + 1, ok, detail))
                if ok:
                    break
                if i + 1 < box.attempts:
                    box.sleep(box.backoff_s[min(i, len(box.backoff_s) - 1)])

    def report(self) -> list[Attempt]:
        """The attempts made; the one still under way and those never tried, as failures."""
        with self.lock:
            attempts = list(self.attempts)
            current = self.current
        done = {id(a.notification) for a in attempts}
        if current is not None:
            n, number = current
            attempts.append(Attempt(self.sink.name, n, number, False, "given up: no answer within the pass's time"))
            done.add(id(n))
        for n, tried in self.queue:
            if id(n) not in done:
                attempts.append(Attempt(self.sink.name, n, tried, False, "not tried: the pass's delivery time ran out"))
        return attempts
