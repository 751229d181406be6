"""The demo's back end: the embedded collector receiving real OTLP, then the dashboards checked
panel by panel, the report, and the alerts replayed over the simulated hours and paged through a
local Alertmanager, or straight to a local webhook sink (standing in for the paging service),
whose deliveries are shown."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from clinotel.alerts.actions import DisableFlag
from clinotel.collector.service import Collector, CollectorConfig
from clinotel.demo.scenario import TENANT, TRUTH_LEAD_NS

__all__ = [
    "AlertReplay",
    "AlertReplayer",
    "Delivered",
    "PageSink",
    "delivered",
    "replay_alerts",
    "sim_range",
    "start_collector",
]


def start_collector(data_dir: Path, wal_dir: Path) -> Collector:
    """The embedded collector on loopback (ephemeral ports, no tokens: loopback only), storing in
    `data_dir` with its log in `wal_dir`."""
    config = CollectorConfig(
        data_dir=data_dir, wal_dir=wal_dir, otlp_http=("127.0.0.1", 0), otlp_grpc=None,
        http=("127.0.0.1", 0), insecure_no_auth=True, insecure_tenant=TENANT, metrics_interval_s=5.0,
        # the simulated hours end now: their late truth is dated up to TRUTH_LEAD_NS ahead
        max_span_lead_ns=TRUTH_LEAD_NS,
    )  # fmt: skip
    from clinotel.collector.cli import exit_soon, start_or_exit

    # a failed engine ends the demo (exit 1) as it ends `clinotel serve`: closing it waits forever
    collector = Collector(config, on_store_lost=exit_soon)
    start_or_exit(collector)
    return collector


class PageSink:
    """A local HTTP receiver standing in for the paging service: it keeps every delivery."""

    def __init__(self) -> None:
        self.deliveries: list[dict[str, Any]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sink.deliveries.append({"path": self.path, **json.loads(body)})
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, name="demo-page-sink", daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass(frozen=True)
class Delivered:
    """What one of the sink's endpoints received: its POSTs, and the alerts they told of, by
    severity and status (an Alertmanager notification repeats every alert of its group)."""

    notifications: int = 0
    firing: dict[str, int] = field(default_factory=dict)
    resolved: dict[str, int] = field(default_factory=dict)


def delivered(deliveries: list[dict[str, Any]], path: str) -> Delivered:
    """Count what reached `path`: clinotel's webhook batches (`{"status", "alerts": [{"severity",
    ...}]}`) and Alertmanager's webhook notifications (each alert with its own `status` and
    `labels.severity`) alike."""
    posts = [d for d in deliveries if d.get("path") == path]
    firing: dict[str, int] = {}
    resolved: dict[str, int] = {}
    for d in posts:
        for alert in d.get("alerts") or ():
            severity = str(alert.get("severity") or (alert.get("labels") or {}).get("severity") or "unknown")
            told = resolved if (alert.get("status") or d.get("status")) == "resolved" else firing
            told[severity] = told.get(severity, 0) + 1
    return Delivered(len(posts), firing, resolved)


@dataclass
class AlertReplay:
    """What the alerts did over the simulated hours."""

    evaluations: int = 0
    fired: dict[str, datetime] = field(default_factory=dict)
    """Rule → the first simulated time it fired."""
    resolved: dict[str, datetime] = field(default_factory=dict)
    pages: int = 0
    """Alert instances that started firing on a `page` rule (what reached a person: `delivered`)."""
    tickets: int = 0
    """Alert instances that started firing on a `ticket` rule."""
    errors: list[tuple[str, str]] = field(default_factory=list)
    actions: list[tuple[str, str, str, datetime]] = field(default_factory=list)
    """(rule, what it switched, the result, the simulated time) of each kill-switch action."""


class AlertReplayer:
    """The default rule pack evaluated at simulated times, as it would have run live: pages go
    to `alertmanager` when given (its receiver is the sink), else to the sink with the tickets
    (`/ticket`), as `clinotel alerts evaluate --webhook` sends them. With `flagd_file`, the
    kill-switch actions rewrite it and are recorded as change events in the collector."""

    def __init__(
        self, collector: Collector, sink: PageSink, alertmanager: str | None, flagd_file: Path | None = None
    ) -> None:
        from clinotel.alerts.config import AlertingConfig
        from clinotel.alerts.wiring import build_evaluator, load_rules

        assert collector.http is not None
        config = AlertingConfig(
            alertmanager=(alertmanager,) if alertmanager else (), webhook=(f"{sink.url}/ticket",),
            flagd_file=flagd_file,
            changes_endpoint=f"http://127.0.0.1:{collector.http.port}" if flagd_file is not None else None,
        )  # fmt: skip
        # the collector's own rules watch the live process, which ran for seconds, not simulated hours
        pack = load_rules(config)
        pack = pack.model_copy(update={"rules": tuple(r for r in pack.rules if r.kind != "collector")})
        # alone on its own store by construction: no lease to take
        self.evaluator = build_evaluator(config, collector.client, collector.config.database, pack=pack, alone=True)
        self.severity = {r.name: r.severity for r in pack.rules}
        self.actions = {r.name: r.action.disable_flag for r in pack.rules if r.action is not None}
        self.replay = AlertReplay()

    def action_of(self, rule: str) -> DisableFlag | None:
        """The kill-switch action of `rule`, if it has one."""
        return self.actions.get(rule)

    def evaluate(self, t: datetime) -> list[tuple[str, str, str, datetime]]:
        """One evaluation at simulated time `t`; the kill-switch actions it ran."""
        summary = self.evaluator.evaluate(t)
        replay = self.replay
        replay.evaluations += 1
        for rule, _, state in summary.transitions:
            if state == "firing":
                replay.fired.setdefault(rule, t)
                if self.severity[rule] == "page":
                    replay.pages += 1
                else:
                    replay.tickets += 1
            elif state == "resolved":
                replay.resolved.setdefault(rule, t)
        replay.errors += summary.errors
        actions = [(rule, what, outcome.result, t) for rule, what, outcome in summary.actions]
        replay.actions += actions
        return actions

    def close(self) -> None:
        self.evaluator.close()


def replay_alerts(
    collector: Collector, start: datetime, end: datetime, step: timedelta, sink: PageSink, alertmanager: str | None,
    flagd_file: Path | None = None,
) -> AlertReplay:  # fmt: skip
    """Evaluate the default rule pack every `step` from `start` to `end` (`AlertReplayer`)."""
    replayer = AlertReplayer(collector, sink, alertmanager, flagd_file)
    t = start
    try:
        while t <= end:
            replayer.evaluate(t)
            t += step
    finally:
        replayer.close()
    return replayer.replay


def sim_range(base_ns: int, window_ns: int) -> tuple[datetime, datetime]:
    """The simulated hours: from the first workflow to an hour after the last (late truths land)."""
    start = datetime.fromtimestamp(base_ns / 1e9, UTC)
    return start, start + timedelta(seconds=window_ns / 1e9) + timedelta(hours=1)
