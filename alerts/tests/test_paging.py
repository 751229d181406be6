"""The evaluator end to end: incidents injected into the embedded store, a real Prometheus
Alertmanager on loopback delivering to a local webhook sink, PagerDuty's Events v2 shape through
the sink's injected HTTP client, and the audit trail in clinotel_alert_events. The sinks alone,
without a server: test_sinks.py."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from clinotel.alerts.evaluator import Evaluator
from clinotel.alerts.local_alertmanager import LocalAlertmanager, find_binary
from clinotel.alerts.paging import Outbox
from clinotel.alerts.rules import RulePack, load
from clinotel.alerts.sinks import AlertmanagerSink, PagerDutySink, WebhookSink
from clinotel.collector.store import schema
from clinotel.model import clinical

RULES = """rules:
  - name: model_fallback
    metric: fallback_rate
    threshold: 0.2
    window: 15m
    min_sample: 20
    severity: page
    summary: Decisions fall back
  - name: fallback_held
    metric: fallback_rate
    threshold: 0.2
    window: 15m
    for: 10m
    min_sample: 20
    severity: ticket
    summary: Fallbacks held for ten minutes
"""


class Sink:
    """A local HTTP receiver recording JSON bodies by path; it can refuse the first requests."""

    def __init__(self, fail_first: int = 0) -> None:
        self.received: list[tuple[str, Any]] = []
        self.fail_left = fail_first
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if sink.fail_left > 0:
                    sink.fail_left -= 1
                    self.send_response(500)
                else:
                    sink.received.append((self.path, json.loads(body)))
                    self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count: int, path: str, timeout: float = 15) -> list[Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = [b for p, b in self.received if p == path]
            if len(got) >= count:
                return got
            time.sleep(0.1)
        return [b for p, b in self.received if p == path]


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink()
    yield s
    s.close()


@pytest.fixture
def alertmanager(sink: Sink, tmp_path: Path) -> Iterator[str]:
    binary = find_binary()
    if binary is None:
        pytest.skip("Prometheus Alertmanager is not installed (make test installs it where apt-get is available)")
    am = LocalAlertmanager(binary, f"{sink.url}/am", tmp_path / "alertmanager")
    am.start()
    yield am.url
    am.stop()


@pytest.fixture
def pack(tmp_path: Path) -> RulePack:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES, encoding="utf-8")
    return load(path)


def _workflows(client: Any, options: schema.SchemaOptions, tenant: str, n: int, fallback: int, now: datetime) -> None:
    """`n` triage workflows in the last ten minutes, the first `fallback` of them decided by a fallback."""
    rows = []
    for i in range(n):
        start = now - timedelta(minutes=10) + timedelta(seconds=i * 540 / max(1, n))
        fell_back = i < fallback
        rows.append((tenant, "triage", uuid.uuid4().hex, start, start + timedelta(seconds=30),
                     "fallback" if fell_back else "model", "model_unavailable" if fell_back else ""))  # fmt: skip
    columns = [clinical.stored_column(c) for c in (
        "TenantId", "WorkflowKind", "TraceId", "StartTime", "EndTime", "DecisionSource", "FallbackReason")]  # fmt: skip
    client.insert(options.name(clinical.WORKFLOWS), rows, column_names=columns)


def _events(client: Any, options: schema.SchemaOptions, rule: str) -> list[tuple[str, str]]:
    return [
        (e, r) for e, r in client.query(
            f"SELECT Event, Receiver FROM {options.name(schema.ALERT_EVENTS)} WHERE Rule = '{rule}' "
            "ORDER BY Timestamp, Event"
        ).result_rows
    ]  # fmt: skip


def test_an_incident_pages_once_through_alertmanager_and_its_resolution_arrives(
    client: Any, options: schema.SchemaOptions, pack: RulePack, sink: Sink, alertmanager: str
) -> None:
    # evaluations a little in the past: Alertmanager judges a resolution's endsAt by its own clock
    now = datetime.now(UTC) - timedelta(minutes=2)
    _workflows(client, options, "st-marys", 40, 20, now)  # 50 % fallback: the model is down
    _workflows(client, options, "general", 10, 10, now)  # all fallback, but under the minimum sample
    outbox = Outbox([AlertmanagerSink(alertmanager)], [WebhookSink(f"{sink.url}/tickets")])
    evaluator = Evaluator(client, pack, outbox, options.database)

    first = evaluator.evaluate(now)
    assert first.errors == []
    assert ("model_fallback", {"tenant": "st-marys", "kind": "triage"}) in first.firing
    assert all(labels.get("tenant") != "general" for _, labels in first.firing), "no page below the minimum sample"
    firing = sink.wait_for(1, "/am")
    assert len(firing) == 1
    alert = firing[0]["alerts"][0]
    assert firing[0]["status"] == "firing"
    assert alert["labels"]["alertname"] == "model_fallback"
    assert alert["labels"]["severity"] == "page"
    assert alert["annotations"]["runbook_url"].endswith("docs/runbooks/model_fallback.md")
    # the person paged sees what fired it, and against what, without opening the rules
    what = {k: alert["annotations"].get(k) for k in ("criterion", "value", "observed")}
    assert what == {
        "criterion": "fallback_rate > 0.2 over 15m (at least 20 in the sample)",
        "value": "0.5",
        "observed": "0.5 vs 0.2 (40 in the sample)",
    }

    evaluator.evaluate(now + timedelta(seconds=30))  # still firing: re-sent, deduplicated by Alertmanager
    time.sleep(3)
    assert len([b for p, b in sink.received if p == "/am" and b["status"] == "firing"]) == 1
    held_now = httpx.get(f"{alertmanager}/api/v2/alerts", timeout=5).json()
    assert [a["annotations"].get("observed") for a in held_now] == [what["observed"]], "a re-send keeps the figure"

    _workflows(client, options, "st-marys", 160, 0, now)  # recovery: 20 of 200 = 10 %
    resolved = evaluator.evaluate(now + timedelta(seconds=60))
    assert ("model_fallback", {"tenant": "st-marys", "kind": "triage"}, "resolved") in resolved.transitions
    deliveries = sink.wait_for(2, "/am")
    assert [d["status"] for d in deliveries] == ["firing", "resolved"]
    assert deliveries[1]["alerts"][0]["annotations"]["criterion"] == what["criterion"]

    events = _events(client, options, "model_fallback")
    assert ("firing", "") in events
    assert ("resolved", "") in events
    assert events.count(("notify_ok", "alertmanager")) >= 2
    held = _events(client, options, "fallback_held")
    assert ("pending", "") in held
    assert ("firing", "") not in held, "a breach shorter than `for` never fires"
    assert [p for p, _ in sink.received if p == "/tickets"] == [], "nothing held back reached the ticket webhook"

    # the report reads the same audit trail: one episode, fired, told to Alertmanager, resolved
    from clinotel.dashboards._report.alerts import episodes, load_events
    from clinotel.dashboards._report.sections import details_html
    from clinotel.dashboards.macros import TimeRange

    trail = load_events(client, options.database, TimeRange(now - timedelta(hours=1), now + timedelta(hours=1)))
    (episode,) = [e for e in episodes(trail) if e.rule == "model_fallback"]
    assert episode.resolved is not None
    assert set(episode.delivered) == {"alertmanager"}
    details = details_html(trail, None, 1)
    assert "model_fallback" in details
    assert "resolved" in details


def test_pagerduty_events_v2_trigger_and_resolve_share_a_dedup_key(
    client: Any, options: schema.SchemaOptions, pack: RulePack
) -> None:
    # PagerDuty is outside SaaS: its side is the sink's injected HTTP client, recording each event
    events: list[tuple[str, Any]] = []

    def pagerduty(request: httpx.Request) -> httpx.Response:
        events.append((str(request.url), json.loads(request.content)))
        return httpx.Response(202, json={"status": "success", "message": "Event processed"})

    http = httpx.Client(transport=httpx.MockTransport(pagerduty))
    now = datetime.now(UTC)
    _workflows(client, options, "st-marys", 40, 20, now)
    sink = PagerDutySink(routing_key="R" * 32, http=http)
    evaluator = Evaluator(client, pack, Outbox([sink], []), options.database)
    evaluator.evaluate(now)
    _workflows(client, options, "st-marys", 160, 0, now)
    evaluator.evaluate(now + timedelta(seconds=60))
    evaluator.close()
    http.close()
    [(url, trigger), (_, resolve)] = events
    assert url == "https://events.pagerduty.com/v2/enqueue"
    assert trigger["routing_key"] == "R" * 32
    assert trigger["event_action"] == "trigger"
    assert trigger["payload"]["severity"] in ("critical", "error", "warning", "info")
    assert trigger["payload"]["summary"] == "Decisions fall back"
    assert trigger["payload"]["source"] == "st-marys"
    assert trigger["links"][0]["href"].endswith("model_fallback.md")
    assert resolve == {"routing_key": "R" * 32, "event_action": "resolve", "dedup_key": trigger["dedup_key"]}
    assert ("notify_ok", "pagerduty") in _events(client, options, "model_fallback")


def test_a_trail_with_rows_dated_after_the_clock_does_not_repeat_transitions(
    client: Any, options: schema.SchemaOptions, pack: RulePack, sink: Sink
) -> None:
    """The demo's replay of its simulated hours wrote audit rows an hour past the clock (a clock
    stepped back does the same): the state was read as the latest row, which was always one of
    those, so a live evaluator made the same transition and sent the same ticket at every pass."""
    now = datetime.now(UTC)
    _workflows(client, options, "st-marys", 40, 20, now)  # falling back: model_fallback breaches
    future = now + timedelta(hours=1)
    labels = {"tenant": "st-marys", "kind": "triage"}
    columns = ["Timestamp", "TenantId", "Rule", "Labels", "Event", "Severity", "Value", "Sample", "Threshold"]
    client.insert(options.name(schema.ALERT_EVENTS), [(future, "st-marys", "model_fallback", labels, "resolved",
                                                       "page", 0.0, 40, 0.2)], column_names=columns)  # fmt: skip
    evaluator = Evaluator(client, pack, Outbox([WebhookSink(f"{sink.url}/page")], []), options.database)
    try:
        passes = [evaluator.evaluate(now + timedelta(seconds=s)) for s in (0, 60, 120, 180)]
    finally:
        evaluator.close()
    moves = [(rule, state) for p in passes for rule, _, state in p.transitions if rule == "model_fallback"]
    assert moves.count(("model_fallback", "firing")) <= 1, moves
    assert len(moves) == len(set(moves)), f"the same transition again and again: {moves}"


def test_a_failed_delivery_is_recorded_and_retried_not_dropped_even_by_another_process(
    client: Any, options: schema.SchemaOptions, pack: RulePack
) -> None:
    flaky = Sink(fail_first=4)
    try:
        now = datetime.now(UTC)
        _workflows(client, options, "st-marys", 40, 20, now)
        outbox = Outbox([WebhookSink(f"{flaky.url}/hook")], [], sleep=lambda s: None)
        first_run = Evaluator(client, pack, outbox, options.database)
        first = first_run.evaluate(now)
        first_run.close()  # a cron run ends: what it could not deliver is owed in the store, not in memory
        assert [a.ok for a in first.attempts] == [False, False, False]
        assert [a.attempt for a in first.undelivered] == [3]
        second_run = Evaluator(client, pack, Outbox([WebhookSink(f"{flaky.url}/hook")], [], sleep=lambda s: None),
                               options.database)  # fmt: skip
        second = second_run.evaluate(now + timedelta(seconds=30))
        assert [(a.ok, a.attempt) for a in second.attempts] == [(False, 4), (True, 5)]
        assert second.undelivered == []
        third = second_run.evaluate(now + timedelta(seconds=60))
        assert third.attempts == [], "delivered once: not again"
        assert len(flaky.wait_for(1, "/hook")) == 1
        events = _events(client, options, "model_fallback")
        assert events.count(("notify_failed", "webhook")) == 4
        assert events.count(("notify_ok", "webhook")) == 1
    finally:
        flaky.close()


def test_a_rule_whose_query_fails_is_recorded_and_the_others_still_run(
    client: Any, options: schema.SchemaOptions, pack: RulePack, sink: Sink
) -> None:
    now = datetime.now(UTC)
    _workflows(client, options, "st-marys", 40, 20, now)
    client.command(f"RENAME TABLE {options.name(schema.COLLECTOR_METRICS)} TO {options.database}.moved_away")
    from clinotel.alerts import default_rules_path

    default = load(default_rules_path())
    evaluator = Evaluator(client, default, Outbox([WebhookSink(f"{sink.url}/p")], []), options.database)
    summary = evaluator.evaluate(now)
    collector_rules = {r.name for r in default.rules if r.kind == "collector"}
    assert {r for r, _ in summary.errors} == collector_rules
    assert ("model_fallback", {"tenant": "st-marys", "kind": "triage"}, "pending") in summary.transitions
    assert ("error", "") in _events(client, options, "ingestion_stalled")


def test_every_default_rule_evaluates_on_demo_data(collector: Any, sink: Sink) -> None:
    from clinotel.alerts import default_rules_path
    from collector.tests.fixtures import WRITE_TOKEN
    from dashboards.tests.demo_data import load_demo

    load_demo(collector, WRITE_TOKEN, workflows=2000)
    pack = load(default_rules_path())
    outbox = Outbox([WebhookSink(f"{sink.url}/page")], [WebhookSink(f"{sink.url}/ticket")])
    evaluator = Evaluator(collector.client, pack, outbox, collector.options.database)
    summary = evaluator.evaluate(datetime.now(UTC) + timedelta(minutes=1))
    assert summary.errors == []
    assert summary.instances > 5


def test_a_service_exporting_phi_opens_a_ticket_naming_the_service(collector: Any, sink: Sink) -> None:
    import clinotel.instrumentation as ct
    from clinotel.alerts import default_rules_path
    from clinotel.demo.hospital import SimClock
    from collector.tests.fixtures import WRITE_TOKEN
    from dashboards.tests.demo_data import exporting_to

    clock = SimClock(time.time_ns() - 60 * 10**9)
    with exporting_to(collector, WRITE_TOKEN, clock, 1000), ct.workflow("triage", site="MRN 12345678"):
        clock.advance(5)  # the site is a code; this one is a record number: the gate drops it as PHI
    db = collector.options.database
    assert collector.client.command(f"SELECT sum(Phi) FROM {db}.{schema.SDK_TELEMETRY}") == 1
    default = load(default_rules_path())
    pack = default.model_copy(update={"rules": tuple(r for r in default.rules if r.name == "sdk_phi_dropped")})
    evaluator = Evaluator(collector.client, pack, Outbox([], [WebhookSink(f"{sink.url}/ticket")]), db)
    summary = evaluator.evaluate(datetime.now(UTC) + timedelta(minutes=1))
    assert summary.errors == []
    [(rule, labels, state)] = summary.transitions
    assert (rule, state) == ("sdk_phi_dropped", "firing")
    assert labels["tenant"] == "st-marys"
    assert labels["service"] == "clinotel-demo-hospital"
    assert "MRN" not in json.dumps(sink.received), "the ticket names the service, never the value"


def test_the_local_alertmanager_ends_with_the_process_that_started_it_however_it_ends(tmp_path: Path) -> None:
    """A process that ends without stopping it (`os._exit`, as a demo whose engine failed does, or
    SIGKILL) left its Alertmanager running, holding its port, until somebody killed it."""
    import os
    import subprocess
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("a child ending with its parent's thread is Linux's PR_SET_PDEATHSIG")
    binary = find_binary()
    if binary is None:
        pytest.skip("Prometheus Alertmanager is not installed (make test installs it where apt-get is available)")
    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from clinotel.alerts.local_alertmanager import LocalAlertmanager\n"
        f"am = LocalAlertmanager({binary!r}, 'http://127.0.0.1:9/sink', Path({str(tmp_path / 'am')!r}))\n"
        "am.start()\n"
        "print(am._process.pid, am.url, flush=True)\n"
        "os._exit(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 3, done.stderr[-2000:]
    pid, url = done.stdout.split()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    if alive:
        os.kill(int(pid), 9)
    assert not alive, f"the Alertmanager at {url} outlived the process that started it"


def test_a_firing_page_keeps_firing_through_a_dip_in_volume_and_pages_once(
    client: Any, options: schema.SchemaOptions, pack: RulePack
) -> None:
    """The default `no_data: ok` resolved a firing page when the night's volume fell under
    min_sample, and paged the same outage again when the volume came back."""
    events: list[dict[str, Any]] = []

    def pagerduty(request: httpx.Request) -> httpx.Response:
        events.append(json.loads(request.content))
        return httpx.Response(202)

    now = datetime.now(UTC)
    tenant = f"night-{uuid.uuid4().hex[:6]}"
    _workflows(client, options, tenant, 40, 40, now)  # every decision a fallback, from now-10m
    http = httpx.Client(transport=httpx.MockTransport(pagerduty))
    evaluator = Evaluator(client, pack, Outbox([PagerDutySink(routing_key="R" * 32, http=http)], []),
                          options.database, lease_s=None)  # fmt: skip
    try:
        first = evaluator.evaluate(now)
        instance = ("model_fallback", {"tenant": tenant, "kind": "triage"})
        assert instance in first.firing
        # 13 minutes on: the 15-minute window holds the outage's last few minutes only, under 20 rows
        dip = evaluator.evaluate(now + timedelta(minutes=13))
        assert [t for t in dip.transitions if t[0] == "model_fallback"] == [], "too few rows: no evidence of recovery"
        _workflows(client, options, tenant, 40, 40, now + timedelta(minutes=20))  # the volume returns
        back = evaluator.evaluate(now + timedelta(minutes=20))
        assert [t for t in back.transitions if t[0] == "model_fallback"] == []
        _workflows(client, options, tenant, 200, 0, now + timedelta(minutes=30))  # recovered, with rows to show it
        done = evaluator.evaluate(now + timedelta(minutes=30))
        assert (*instance, "resolved") in done.transitions
    finally:
        evaluator.close()
        http.close()
    assert [e["event_action"] for e in events] == ["trigger", "resolve"], "one page, one resolution"
