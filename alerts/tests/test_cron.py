"""The evaluator's state lives in the store: runs from cron (a fresh evaluator each time) behave
as one long-running evaluator does, `for` holds across runs, a page is sent once and resolved
once, a failed delivery is owed to the next run, and two evaluators on one store page once."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alerts.tests.test_paging import Sink
from clinotel.alerts.evaluator import Evaluator
from clinotel.alerts.lease import Lease
from clinotel.alerts.paging import Outbox
from clinotel.alerts.rules import RulePack, load
from clinotel.alerts.sinks import WebhookSink
from clinotel.collector.store import schema
from clinotel.model import clinical, tables
from tests.net import free_port

FLAPPING = """rules:
  - name: model_fallback
    metric: fallback_rate
    threshold: 0.2
    window: 2m
    for: 5m
    min_sample: 5
    severity: page
    summary: Decisions fall back
"""
BASE = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
BREACHED = set(range(3)) | set(range(6, 21))
"""Minutes in which half the decisions fall back: a 3-minute flap, then a 15-minute incident."""


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink()
    yield s
    s.close()


def _pack(tmp_path: Path, text: str = FLAPPING) -> RulePack:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    return load(path)


def _flapping(client: Any, options: schema.SchemaOptions) -> None:
    rows = []
    for minute in range(30):
        for i in range(10):
            start = BASE + timedelta(minutes=minute, seconds=5 * i)
            fell_back = minute in BREACHED and i % 2 == 0
            rows.append(("st-marys", "triage", uuid.uuid4().hex, start, start + timedelta(seconds=3),
                         "fallback" if fell_back else "model", "model_unavailable" if fell_back else ""))  # fmt: skip
    columns = [clinical.stored_column(c) for c in (
        "TenantId", "WorkflowKind", "TraceId", "StartTime", "EndTime", "DecisionSource", "FallbackReason")]  # fmt: skip
    client.insert(options.name(clinical.WORKFLOWS), rows, column_names=columns)


def _minutes() -> Iterator[datetime]:
    for minute in range(30):
        yield BASE + timedelta(minutes=minute + 1)  # the window [t - 2m, t) ends after the minute


def _quiet(url: str) -> Outbox:
    return Outbox([WebhookSink(url)], [], sleep=lambda s: None)


def test_cron_evaluation_over_a_flapping_metric_pages_once_and_resolves_once(
    client: Any, options: schema.SchemaOptions, tmp_path: Path, sink: Sink
) -> None:
    _flapping(client, options)
    pack = _pack(tmp_path)
    transitions = []
    for t in _minutes():  # each run a new evaluator, as each cron run is a new process
        run = Evaluator(client, pack, _quiet(f"{sink.url}/cron"), options.database)
        summary = run.evaluate(t)
        run.close()
        assert summary.errors == []
        assert summary.skipped is None
        transitions += [(t, state) for _, _, state in summary.transitions]
    assert [(t - BASE, s) for t, s in transitions] == [
        (timedelta(minutes=1), "pending"),  # the flap: held back by `for`, never fires
        (timedelta(minutes=5), "inactive"),
        (timedelta(minutes=7), "pending"),  # the incident
        (timedelta(minutes=12), "firing"),  # `for: 5m` held across five separate runs
        (timedelta(minutes=23), "resolved"),
        (timedelta(minutes=24), "inactive"),
    ]
    posts = sink.wait_for(2, "/cron")
    assert [p["status"] for p in posts] == ["firing", "resolved"], "one page, one resolution"
    assert posts[0]["alerts"][0]["dedupKey"] == posts[1]["alerts"][0]["dedupKey"]

    # one long-running evaluator (`--every`) over the same minutes does exactly the same
    other = schema.SchemaOptions(database=f"t_{uuid.uuid4().hex[:12]}")
    schema.apply(client, other)
    try:
        _flapping(client, other)
        every = Evaluator(client, pack, _quiet(f"{sink.url}/every"), other.database)
        same = [(t, state) for t in _minutes() for _, _, state in every.evaluate(t).transitions]
        every.close()
        assert same == transitions
        assert [p["status"] for p in sink.wait_for(2, "/every")] == ["firing", "resolved"]
    finally:
        client.command(f"DROP DATABASE IF EXISTS {other.database}")


def test_keep_firing_for_holds_across_cron_runs_and_pages_once(
    client: Any, options: schema.SchemaOptions, tmp_path: Path, sink: Sink
) -> None:
    """`keep_firing_for: 5m` and no `for`: the flap fires, its three clear minutes before the
    incident do not resolve it (recorded as `clearing`, then `breach`), and the incident's end
    resolves it five minutes after it cleared. Every run a new evaluator: the hold is read from
    the store. Without it, the same minutes page twice."""
    _flapping(client, options)
    pack = _pack(tmp_path, FLAPPING.replace("for: 5m", "for: 0m\n    keep_firing_for: 5m"))
    transitions = []
    for t in _minutes():
        run = Evaluator(client, pack, _quiet(f"{sink.url}/kept"), options.database)
        summary = run.evaluate(t)
        run.close()
        assert summary.errors == []
        transitions += [(t - BASE, state) for _, _, state in summary.transitions]
    assert transitions == [
        (timedelta(minutes=1), "firing"),
        (timedelta(minutes=28), "resolved"),  # read clear from minute 23 on (as `resolved` without it)
        (timedelta(minutes=29), "inactive"),
    ]
    assert [p["status"] for p in sink.wait_for(2, "/kept")] == ["firing", "resolved"], "one page, one resolution"
    held = client.query(
        f"SELECT Event, toUnixTimestamp(Timestamp) - {int(BASE.timestamp())} "
        f"FROM {options.name(tables.ALERT_EVENTS)} WHERE Event IN ('clearing', 'breach') ORDER BY Timestamp"
    ).result_rows
    assert [(e, s // 60) for e, s in held] == [("clearing", 5), ("breach", 7), ("clearing", 23)]

    other = schema.SchemaOptions(database=f"t_{uuid.uuid4().hex[:12]}")
    schema.apply(client, other)
    try:  # without keep_firing_for: the flap and the incident are two pages
        _flapping(client, other)
        plain = Evaluator(client, _pack(tmp_path, FLAPPING.replace("for: 5m", "for: 0m")), _quiet(f"{sink.url}/plain"),
                          other.database)  # fmt: skip
        states = [state for t in _minutes() for _, _, state in plain.evaluate(t).transitions]
        plain.close()
        assert states.count("firing") == 2
    finally:
        client.command(f"DROP DATABASE IF EXISTS {other.database}")


def test_an_instance_held_by_keep_firing_for_that_stops_returning_rows_resolves_once(
    client: Any, options: schema.SchemaOptions, tmp_path: Path, sink: Sink
) -> None:
    """Firing, then no rows at all (the window past the data): held for `keep_firing_for`, then
    resolved once. An instance without rows was recorded with its labels in another order than
    with rows, and the ledger read it as two: its hold was never read back, and it fired for good."""
    _flapping(client, options)
    pack = _pack(tmp_path, FLAPPING.replace("for: 5m", "for: 0m\n    keep_firing_for: 10m"))
    minutes = [BASE + timedelta(minutes=m) for m in (*range(1, 13), *range(40, 56))]
    transitions = []
    for t in minutes:
        run = Evaluator(client, pack, _quiet(f"{sink.url}/gone"), options.database)
        transitions += [(t - BASE, state) for _, _, state in run.evaluate(t).transitions]
        run.close()
    assert transitions == [
        (timedelta(minutes=1), "firing"),
        (timedelta(minutes=50), "resolved"),  # no rows from minute 40: clear, held 10 minutes
        (timedelta(minutes=51), "inactive"),
    ]
    assert [p["status"] for p in sink.wait_for(2, "/gone")] == ["firing", "resolved"]


def test_a_rule_with_labels_of_its_own_notifies_once(
    client: Any, options: schema.SchemaOptions, tmp_path: Path, sink: Sink
) -> None:
    """A rule's static labels (`team`) go with its notifications; its deliveries are recorded under
    the instance's own labels, so the next pass knows them made. Recorded with the team label, the
    delivery matched no instance and the ticket went out again at every pass."""
    _flapping(client, options)
    pack = _pack(tmp_path, FLAPPING.replace("for: 5m", "for: 0m\n    labels: {team: clinical-ml}"))
    for t in list(_minutes())[6:18]:  # the incident, firing throughout
        run = Evaluator(client, pack, _quiet(f"{sink.url}/team"), options.database)
        run.evaluate(t)
        run.close()
    sink.wait_for(1, "/team")
    posts = [p for path, p in sink.received if path == "/team"]  # every delivery ends before `evaluate` returns
    assert [p["status"] for p in posts] == ["firing"], "one ticket, not one a pass"
    assert posts[0]["alerts"][0]["labels"]["team"] == "clinical-ml"


def test_a_rule_without_instance_labels_but_labels_of_its_own_notifies_once(
    client: Any, options: schema.SchemaOptions, tmp_path: Path, sink: Sink
) -> None:
    """A collector rule's instance is labelled only with its collector (`instance`); its
    deliveries are recorded under that, not under the rule's `team` (which matched no instance,
    and the page went out at every pass)."""
    rows = [(BASE + timedelta(minutes=m), "", "c1", "clinotel_receiver_requests_refused_total", {"reason": "auth"},
             "counter", 50.0) for m in range(30)]  # fmt: skip
    columns = ["Timestamp", "TenantId", "Instance", "Metric", "Labels", "Kind", "Value"]
    client.insert(options.name(tables.COLLECTOR_METRICS), rows, column_names=columns)
    pack = _pack(
        tmp_path,
        "rules:\n  - {name: spans_refused, kind: collector, metric: clinotel_receiver_requests_refused_total,\n"
        "     threshold: 20, window: 15m, min_sample: 1, severity: page, summary: Refusing telemetry,\n"
        "     labels: {team: platform}}\n",
    )
    for t in list(_minutes())[5:15]:
        run = Evaluator(client, pack, _quiet(f"{sink.url}/platform"), options.database)
        run.evaluate(t)
        run.close()
    sink.wait_for(1, "/platform")
    posts = [p for path, p in sink.received if path == "/platform"]
    assert [p["status"] for p in posts] == ["firing"], "one page, not one a pass"
    assert posts[0]["alerts"][0]["labels"]["team"] == "platform"
    assert posts[0]["alerts"][0]["labels"]["instance"] == "c1"


def test_each_collector_pages_on_its_own(
    client: Any, options: schema.SchemaOptions, tmp_path: Path, sink: Sink
) -> None:
    """Two collectors refusing: a page for each, named by its `instance`. A collector rule summed
    every collector's figures into one unlabelled alert, and a second collector's stall was merged
    into the first's page: nobody was paged for it (an on-call review)."""
    rows = [
        (BASE + timedelta(minutes=m), "", instance, "clinotel_receiver_requests_refused_total", {"reason": "auth"},
         "counter", 50.0)
        for m in range(30) for instance in ("ward-a:4318", "ward-b:4318")
    ]  # fmt: skip
    columns = ["Timestamp", "TenantId", "Instance", "Metric", "Labels", "Kind", "Value"]
    client.insert(options.name(tables.COLLECTOR_METRICS), rows, column_names=columns)
    pack = _pack(
        tmp_path,
        "rules:\n  - {name: spans_refused, kind: collector, metric: clinotel_receiver_requests_refused_total,\n"
        "     threshold: 20, window: 15m, min_sample: 1, severity: page, summary: Refusing telemetry}\n",
    )
    run = Evaluator(client, pack, _quiet(f"{sink.url}/both"), options.database)
    summary = run.evaluate(BASE + timedelta(minutes=20))
    run.close()
    assert sorted(labels["instance"] for _, labels in summary.firing) == ["ward-a:4318", "ward-b:4318"]
    posts = sink.wait_for(2, "/both")
    assert sorted(a["labels"]["instance"] for p in posts for a in p["alerts"]) == ["ward-a:4318", "ward-b:4318"]


def test_a_restart_while_firing_pages_nobody_again(
    client: Any, options: schema.SchemaOptions, tmp_path: Path, sink: Sink
) -> None:
    _flapping(client, options)
    pack = _pack(tmp_path)
    first = Evaluator(client, pack, _quiet(f"{sink.url}/p"), options.database)
    for t in list(_minutes())[:15]:
        first.evaluate(t)
    first.close()  # the process restarts mid-incident
    again = Evaluator(client, pack, _quiet(f"{sink.url}/p"), options.database)
    summary = again.evaluate(BASE + timedelta(minutes=16))
    again.close()
    assert summary.transitions == []
    assert summary.attempts == []
    assert [p["status"] for p in sink.wait_for(1, "/p")] == ["firing"]


def test_two_evaluators_on_one_store_do_not_double_page(
    client: Any, options: schema.SchemaOptions, tmp_path: Path, sink: Sink
) -> None:
    _flapping(client, options)
    pack = _pack(tmp_path, FLAPPING.replace("for: 5m", "for: 0m"))
    a = Evaluator(client, pack, _quiet(f"{sink.url}/a"), options.database)
    b = Evaluator(client, pack, _quiet(f"{sink.url}/b"), options.database)
    t = BASE + timedelta(minutes=8)
    first = a.evaluate(t)
    second = b.evaluate(t)
    assert first.firing
    assert second.skipped is not None
    assert a.lease is not None
    assert a.lease.holder in second.skipped
    assert second.transitions == []
    assert second.attempts == []
    a.close()  # the first one stops: the second takes over, from the state in the store
    third = b.evaluate(t + timedelta(minutes=1))
    assert third.skipped is None
    assert third.transitions == []
    assert third.attempts == []
    b.close()
    assert [p["status"] for p in sink.wait_for(1, "/a")] == ["firing"]
    assert [p for p, _ in sink.received if p == "/b"] == []


def test_two_evaluators_claiming_at_the_same_moment_do_not_both_evaluate(
    client: Any, options: schema.SchemaOptions
) -> None:
    class Racing:
        """The store, read by B; after B's first look, A claims (as if on another host)."""

        def __init__(self, racer: Lease) -> None:
            self.racer = racer
            self.reads = 0

        def query(self, sql: str) -> Any:
            result = client.query(sql)
            self.reads += 1
            if self.reads == 1:
                assert self.racer.acquire() is None
            return result

    a = Lease(client, client, options.database, 60, holder="a")
    b = Lease(Racing(a), client, options.database, 60, holder="b")
    held = b.acquire()
    assert held is not None
    assert held.holder == "a"
    assert (a.held, b.held) == (True, False)
    a.release()
    assert b.acquire() is None, "free again once A lets go"
    b.release()


@pytest.fixture(scope="module")
def breached_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An embedded store whose fallback rate is breached now, made by a process of its own."""
    data = tmp_path_factory.mktemp("cron") / "data"
    code = (
        "import uuid, clickhouse_connect\n"
        "from datetime import UTC, datetime, timedelta\n"
        "from clinotel.collector.store import schema\n"
        "from clinotel.model import clinical\n"
        f"c = clickhouse_connect.get_client(dsn='chdb://{data}')\n"
        "o = schema.SchemaOptions()\n"
        "schema.apply(c, o)\n"
        "now = datetime.now(UTC)\n"
        "rows = [('st-marys', 'triage', uuid.uuid4().hex, now - timedelta(seconds=20 * i), now,\n"
        "         'fallback' if i % 2 else 'model', 'model_unavailable' if i % 2 else '') for i in range(30)]\n"
        "names = ('TenantId', 'WorkflowKind', 'TraceId', 'StartTime', 'EndTime', 'DecisionSource', 'FallbackReason')\n"
        "c.insert(o.name(clinical.WORKFLOWS), rows, column_names=[clinical.stored_column(n) for n in names])\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, capture_output=True)
    return data


def _evaluate(store: Path, rules: Path, *sinks: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clinotel.cli", "alerts", "evaluate", "--data-dir", str(store), "--rules", str(rules),
         "--once", *sinks],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.slow
def test_alerts_evaluate_once_from_cron_pages_once_and_fails_loudly_when_it_cannot(
    breached_store: Path, tmp_path: Path, sink: Sink
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(FLAPPING.replace("window: 2m", "window: 15m").replace("for: 5m", "for: 0m"), encoding="utf-8")
    for _ in range(3):
        done = _evaluate(breached_store, rules, "--webhook", f"{sink.url}/hook")
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
    assert [p["status"] for p in sink.wait_for(1, "/hook")] == ["firing"]
    assert len([p for p, _ in sink.received if p == "/hook"]) == 1, "three runs, one page"

    # Alertmanager unreachable: the reason on stderr, exit 1, the failures recorded and owed
    unreachable = f"http://127.0.0.1:{free_port()}"
    done = _evaluate(breached_store, rules, "--alertmanager", unreachable)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    [line] = [line for line in done.stderr.splitlines() if line.startswith("not delivered:")]
    assert "model_fallback" in line
    assert "to alertmanager after 3 attempt(s)" in line
    assert f"cannot reach {unreachable}/api/v2/alerts" in line
    assert "3 failed attempts" in done.stdout

    # the next run delivers what was owed
    done = _evaluate(breached_store, rules, "--alertmanager", f"{sink.url}/am")
    assert done.returncode == 0, done.stderr
    [delivered] = sink.wait_for(1, "/am/api/v2/alerts")
    assert delivered[0]["labels"]["alertname"] == "model_fallback"


def test_sigterm_releases_the_lease_so_the_next_evaluator_is_not_skipped(breached_store: Path, tmp_path: Path) -> None:
    """`docker stop` and systemd send SIGTERM: only Ctrl-C released the lease, and the evaluator
    that replaced the stopped one skipped every pass until the lease expired."""
    import os
    import signal
    import time

    rules = tmp_path / "rules.yaml"
    rules.write_text(FLAPPING.replace("window: 2m", "window: 15m"), encoding="utf-8")
    running = subprocess.Popen(
        [sys.executable, "-m", "clinotel.cli", "alerts", "evaluate", "--data-dir", str(breached_store), "--rules",
         str(rules), "--every", "5m"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert running.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "rules," not in running.stdout.readline():
            assert running.poll() is None, running.stderr.read() if running.stderr else ""
        running.send_signal(signal.SIGTERM)  # asleep until the next pass, holding its lease
        _, err = running.communicate(timeout=30)
    finally:
        if running.poll() is None:
            running.kill()
    assert running.returncode == 143, err
    assert "Traceback" not in err
    after = _evaluate(breached_store, rules)
    assert after.returncode == 0, after.stderr
    assert "skipped" not in after.stderr, after.stderr


def test_a_collector_page_raised_for_no_figures_at_all_resolves_once_figures_come(
    client: Any, options: schema.SchemaOptions, tmp_path: Path, sink: Sink
) -> None:
    """`ingestion_stalled` reads no figures at all as a stall (no_data: alerting), under no label: a
    new store's first passes, or those after a full disk. Once the collectors' figures are back each
    is judged under its `instance`, and the unlabelled page clears: it read no data at every pass
    instead and fired for good (an operator's review: a page with no instance, never resolved)."""
    pack = _pack(
        tmp_path,
        "rules:\n  - {name: ingestion_stalled, kind: collector, metric: clinotel_receiver_spans_accepted_total,\n"
        "     comparison: le, threshold: 0, window: 10m, for: 0m, min_sample: 1, no_data: alerting,\n"
        "     severity: page, summary: No spans accepted}\n",
    )
    run = Evaluator(client, pack, _quiet(f"{sink.url}/stall"), options.database)
    first = run.evaluate(BASE)  # nothing written yet
    assert [labels for _, labels in first.firing] == [{}]
    rows = [
        (BASE + timedelta(minutes=m), "", "ward-a:4318", "clinotel_receiver_spans_accepted_total", {}, "counter",
         100.0 * m)
        for m in range(1, 12)
    ]  # fmt: skip
    columns = ["Timestamp", "TenantId", "Instance", "Metric", "Labels", "Kind", "Value"]
    client.insert(options.name(tables.COLLECTOR_METRICS), rows, column_names=columns)
    later = run.evaluate(BASE + timedelta(minutes=11))
    run.close()
    assert later.firing == []
    assert ("ingestion_stalled", {}, "resolved") in later.transitions
    statuses = [(p["status"], a["labels"].get("instance")) for p in sink.wait_for(2, "/stall") for a in p["alerts"]]
    assert statuses == [("firing", None), ("resolved", None)]
