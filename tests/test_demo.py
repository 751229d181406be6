"""`clinotel demo`: the simulated hospital over real OTLP into the embedded collector, the
dashboards run panel by panel, the report, and the incident alerts fired and paged."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from clinotel.alerts.actions import scope_condition
from clinotel.alerts.local_alertmanager import find_binary
from clinotel.collector.cli import EXIT_FAILED
from clinotel.collector.store import schema
from clinotel.demo.scenario import BASELINE_MODEL, CANARY_MODEL, CANARY_SITE, FLAG_KEY, TENANT, Scenario, plan
from clinotel.model.indicators import INDICATORS
from clinotel.model.sql import literal
from clinotel.semconv import attributes as A
from collector.tests.test_side_by_side import _engine_thread, _tgkill, needs_tgkill
from dashboards.tests.report_checks import charts, empty_charts, missing_shown, sql_names_shown, visible_text

WORKFLOWS = 6000
HOURS = 6  # six simulated hours: enough per hour for every hourly panel, and enough Spanish-speaking
# patients with ground truth in the canary (about 65) for the disparity to be shown, not guessed


def _demo(tmp_path: Path, name: str, *extra: str, seed: int = 7) -> subprocess.CompletedProcess[str]:
    # a process of its own: the demo opens its own embedded engine (chDB allows one per process)
    return subprocess.run(
        [sys.executable, "-m", "clinotel.cli", "demo", "--workflows", str(WORKFLOWS), "--hours", str(HOURS),
         "--seed", str(seed), "--out", str(tmp_path / name), *extra],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,
    )  # fmt: skip


def _run(tmp_path: Path, name: str, *extra: str, seed: int = 7) -> dict[str, object]:
    out = tmp_path / name
    done = _demo(tmp_path, name, *extra, seed=seed)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != name) == [], "nothing written outside --out"
    assert "workflows" in done.stdout
    assert (out / "report.html").is_file()
    assert (out / "grafana" / "dashboards" / "clinotel" / "safety.json").is_file()
    summary: dict[str, object] = json.loads((out / "summary.json").read_text())
    return summary


@pytest.mark.timeout(600)
def test_a_clean_hospital_pages_nobody_and_switches_nothing(tmp_path: Path) -> None:
    """`clinotel demo --no-incidents`: the same rollout (shadow, recommendation, a canary behind
    its flag) without the outage, the EHR timeouts and the biased canary. The rules page nobody
    and no kill switch turns; what opens tickets is the clinicians' feedback and the rollout's
    own changes of mode, not an incident."""
    summary = _run(tmp_path, "clean", "--no-incidents")
    deliveries, started = summary["alert_deliveries"], summary["alerts_started"]
    assert isinstance(deliveries, dict)
    assert isinstance(started, dict)
    assert started["page"] == 0, summary["alerts_fired"]
    assert "page" not in deliveries, deliveries
    fired = summary["alerts_fired"]
    assert isinstance(fired, list)
    for rule in ("model_fallback", "canary_kill_under_triage", "canary_kill_override_rate",
                 "fairness_under_triage_language", "high_risk_under_triage", "escalation_missed"):  # fmt: skip
        assert rule not in fired, f"{rule} fired on a clean hospital"
    assert summary["kill_switch"] in (None, [], {}), summary["kill_switch"]


@pytest.mark.timeout(900)  # three demo runs; a hang guard sized for a loaded two-core machine
def test_demo_tells_the_story_and_twice_with_one_seed_gives_one_summary(tmp_path: Path) -> None:
    first = _run(tmp_path, "a")
    # a rerun into the same --out never adds to the earlier store: refused, untouched ...
    again = _demo(tmp_path, "a")
    assert again.returncode == 1
    assert "Traceback" not in again.stderr
    assert "already holds a store" in again.stderr
    assert "--force" in again.stderr
    assert json.loads((tmp_path / "a" / "summary.json").read_text()) == first
    # ... or, with --force, starts from an empty one: the same figures
    second = _run(tmp_path, "a", "--force")
    first.pop("elapsed_s")
    second.pop("elapsed_s")
    assert first == second, "the same seed must give the same figures"
    assert first["workflows_stored"] == WORKFLOWS, "the store holds this run's workflows, no earlier run's"

    workflows = first["workflows"]
    assert isinstance(workflows, dict)
    assert sum(workflows.values()) == WORKFLOWS
    panels = first["panels"]
    assert isinstance(panels, dict)
    assert panels["failed"] == 0
    assert panels["queries"] > 80
    assert panels["empty"] == 0, "every dashboard panel returns rows (dashboards check --require-rows)"
    fired = first["alerts_fired"]
    assert isinstance(fired, list)
    for incident in ("model_fallback", "canary_kill_under_triage", "fairness_under_triage_language"):
        assert incident in fired, f"the {incident} incident must fire"
    # issue 17: the planted arrival shift, the stale demographics feed, clinicians' coded feedback
    for incident in ("decision_drift", "stale_demographics", "feedback_wrong_priority"):
        assert incident in fired, f"the {incident} incident must fire"
    _efficiency_tells_the_story(tmp_path / "a" / "data")
    _each_ticket_told_once_an_episode(tmp_path / "a" / "data")
    # issue 16: the canary kill switches triage-model-v4 off at the canary site, in the demo's flagd file
    switched = first["kill_switch"]
    assert isinstance(switched, list)
    [kill] = switched
    assert kill["rule"] == "canary_kill_under_triage"
    assert kill["switched"] == "flag triage-model-v4 -> off (site=north; tenant demo-health)"
    assert kill["result"] == "applied"
    assert kill["at"] >= f"+{int(HOURS * 0.55)}h"  # during the canary phase, not before it
    flag = json.loads((tmp_path / "a" / "flags.flagd.json").read_text())["flags"]["triage-model-v4"]
    assert flag["targeting"]["if"][:2] == [scope_condition({"site": "north"}, "demo-health"), "off"]
    assert flag["metadata"] == {"clinotelKilledBy": "canary_kill_under_triage"}
    _canary_site_follows_the_switch(tmp_path / "a" / "data")
    recovery = first["recovery"]
    assert isinstance(recovery, dict)
    assert list(recovery["after_switch"]) == [BASELINE_MODEL]
    started, told = first["alerts_started"], first["alert_deliveries"]
    assert isinstance(started, dict)
    assert isinstance(told, dict)
    assert started["page"] >= 3
    # counted from what the webhook sink received: each ticket that started firing reached it once
    # (a re-send while firing would count twice), and some were told resolved
    assert told["ticket"]["firing"] == started["ticket"] > 0
    assert 0 < told["ticket"]["resolved"] <= started["ticket"]
    # the disparity pages for Spanish speakers in the canary, and nothing else: not in the recommend
    # phase before the bias, not for a group under-triaged less than the reference (labelled)
    fairness = subprocess.run(
        [sys.executable, "-m", "clinotel.cli", "query", "--data-dir", str(tmp_path / "a" / "data"), "--format",
         "JSONEachRow", "SELECT Labels, Event FROM clinotel_alert_events WHERE Rule = 'fairness_under_triage_language' "
         "AND Event IN ('firing', 'labelled')"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    paged = [json.loads(line)["Labels"] for line in fairness.splitlines() if json.loads(line)["Event"] == "firing"]
    assert paged, "the canary bias pages"
    assert all(labels["cohort"] == "canary" and labels["Language"] == "es" for labels in paged), paged
    if find_binary() is not None:
        assert first["paged_through"] == "alertmanager"
    assert set(workflows) == {"triage", "scheduling"}
    services = first["services"]
    assert isinstance(services, dict)
    assert set(services) == {"ed-triage-north", "ed-triage-south", "ed-triage-east", "scheduling-1"}
    assert {s["service"] for s in services.values()} == {"ed-triage", "appointment-scheduling"}
    stored = sum(s["spans_stored"] for s in services.values())
    assert stored == first["spans"], "every span a service process exported is stored, once"
    assert first["fallbacks"] == {"model_unavailable": first["fallbacks"]["model_unavailable"]}  # type: ignore[index]
    assert first["fallbacks"]["model_unavailable"] > 0  # type: ignore[index]
    assert first["errors"].get("ingest", 0) > 0, "the EHR timeout incident shows as ingest errors"  # type: ignore[attr-defined]
    assert first["redacted_exception_messages"] > 0, "PHI in EHR error messages is redacted"  # type: ignore[operator]
    assert first["outcomes_joined"] > 0, "late ground truth joins its workflow by pseudonym"  # type: ignore[operator]
    _check_report((tmp_path / "a" / "report.html").read_text(encoding="utf-8"), fired)


def _check_report(page: str, fired: list[str]) -> None:
    """The demo's report as a safety committee reads it: its findings first (every alert that
    fired, with its runbook; the canary's kill criteria), no None, no SQL name, no empty chart."""
    assert missing_shown(page) == []
    assert sql_names_shown(page) == []
    assert charts(page) > 25
    assert empty_charts(page) == []
    findings = page[page.index('id="findings"') : page.index('class="dashboard"')]
    for rule in fired:
        assert f"<code>{rule}</code>" in findings, f"{rule} fired: the findings list it"
        assert f"docs/runbooks/{rule}.md" in findings
    text = visible_text(findings)
    assert INDICATORS["under_triage_rate"].title in text
    # issue 17: after the findings, the efficiency section in words
    effort = page[page.index('id="efficiency"') : page.index('class="dashboard"')]
    words = " ".join(visible_text(effort).split())
    assert re.search(r"Triage, recommendation mode: [\d.]+ min saved per workflow against shadow mode", words), words
    rework = re.search(
        r"Triage, rework created by the canary \(recommendation mode\): ([\d.]+)% of its workflows reworked .*? "
        r"against ([\d.]+)% in the baseline cohort",
        words,
    )
    assert rework is not None, words
    assert float(rework.group(1)) > float(rework.group(2)), "the biased canary creates rework"
    assert "too few" not in words.split("Minutes, touches")[0], "the demo has enough workflows for every statement"
    assert "Canary over the report's range:" in " ".join(text.split())
    assert re.search(r"canary_kill_under_triage over its [\d.]+ h window to \d\d:\d\d", " ".join(text.split()))


def _each_ticket_told_once_an_episode(data: Path) -> None:
    """The webhook hears of each ticket episode once: the audit trail's deliveries of a ticket
    rule's trigger are no more than its firings, per rule whatever labels the deliveries carry (a
    rule's static labels in the delivery rows once made every pass send the ticket again)."""
    rows = _query(
        data,
        "SELECT Rule, countIf(Event = 'firing') AS fired, "
        "countIf(Event = 'notify_ok' AND startsWith(Detail, 'trigger')) AS told FROM clinotel_alert_events "
        "WHERE Severity = 'ticket' GROUP BY Rule HAVING fired > 0 OR told > 0",
    )
    assert rows, "the demo opens tickets"
    over = [r for r in rows if int(r["told"]) > int(r["fired"])]
    assert over == [], over


def _query(data: Path, sql: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "clinotel.cli", "query", "--data-dir", str(data), "--format", "JSONEachRow", sql],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return [json.loads(line) for line in done.stdout.splitlines()]


def _canary_site_follows_the_switch(data: Path) -> None:
    """Issue 16's loop closed: the kill switch's change event (the tenant, the scope) is stored, and
    the canary site's triage workflows that arrive after it evaluated the flag from the flagd file
    (OpenFeature's flagd provider: served `off` by the file's targeting, not a default) and were
    decided by the baseline model; before it, the canary model decided there."""
    traces = schema.TRACES
    [switch] = _query(
        data,
        f"SELECT toUnixTimestamp64Nano(Timestamp) AS t, TenantId AS tenant, SpanAttributes[{literal(A.SITE.key)}] "
        f"AS site, SpanAttributes[{literal(A.CHANGE_VERSION.key)}] AS version FROM {traces} "
        f"WHERE SpanName = {literal(A.CHANGE_SPAN_NAME)} "
        f"AND SpanAttributes[{literal(A.CHANGE_ACTOR.key)}] = 'rule:canary_kill_under_triage'",
    )
    assert (switch["tenant"], switch["site"], switch["version"]) == (TENANT, CANARY_SITE, "off")
    rows = _query(
        data,
        f"SELECT TraceId IN (SELECT TraceId FROM {traces} WHERE SpanName = 'workflow triage' "
        f"AND toUnixTimestamp64Nano(Timestamp) > {int(switch['t'])}) AS after, "
        f"SpanAttributes[{literal(A.DECISION_MODEL_VERSION.key)}] AS version, "
        f"SpanAttributes[{literal(A.FEATURE_FLAG_VARIANT.key)}] AS variant, "
        f"SpanAttributes[{literal(A.FEATURE_FLAG_REASON.key)}] AS reason, "
        f"SpanAttributes[{literal(A.FEATURE_FLAG_PROVIDER.key)}] AS provider, count() AS n FROM {traces} "
        f"WHERE SpanAttributes[{literal(A.FEATURE_FLAG_KEY.key)}] = {literal(FLAG_KEY)} "
        f"AND SpanAttributes[{literal(A.SITE.key)}] = {literal(CANARY_SITE)} "
        "GROUP BY after, version, variant, reason, provider",
    )
    after = {(r["version"], r["variant"], r["reason"], r["provider"]): int(r["n"]) for r in rows if r["after"]}
    before = {(r["version"], r["variant"], r["reason"], r["provider"]): int(r["n"]) for r in rows if not r["after"]}
    assert list(after) == [(BASELINE_MODEL, "off", "targeting_match", "flagd")], after
    assert sum(after.values()) > 20
    assert before.get((CANARY_MODEL, "on", "targeting_match", "flagd"), 0) > 20, before
    assert all(version == CANARY_MODEL for version, variant, _, _ in before if variant == "on")


_EFFICIENCY = """
import json, sys
from pathlib import Path
from clinotel.collector.readport.client import open_embedded
from clinotel.model.efficiency import phases_sql
from clinotel.model.tables import DEFAULT_DATABASE
result = open_embedded(Path(sys.argv[1]), DEFAULT_DATABASE).query(phases_sql(DEFAULT_DATABASE, "1"))
print(json.dumps([dict(zip(result.column_names, r)) for r in result.result_rows]))
"""


def _efficiency_tells_the_story(data: Path) -> None:
    """Recommendation mode saves minutes against shadow; the biased canary creates rework. (Read in a
    process of its own: chDB allows one engine per process, and this one's belongs to the fixtures.)"""
    done = subprocess.run(
        [sys.executable, "-c", _EFFICIENCY, str(data)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = {(r["kind"], r["phase"]): r for r in json.loads(done.stdout)}
    shadow, recommend, canary = (rows[("triage", p)] for p in ("shadow", "recommend", "recommend canary"))
    assert recommend["minutes_high"] < shadow["minutes_low"], "recommendation mode saves minutes"
    assert canary["rework_minutes_per_workflow"] > recommend["rework_minutes_per_workflow"] > 0


def test_plans_are_sliceable_and_deterministic() -> None:
    scenario = Scenario(workflows=200, seed=11)
    whole = [p.identifier for p in plan(scenario)]
    parts = [p.identifier for p in plan(scenario, start=0, stop=120)] + [
        p.identifier for p in plan(scenario, start=120)
    ]
    assert whole == parts
    again = list(plan(scenario))
    assert [(p.kind, p.site, p.decision) for p in again] == [(p.kind, p.site, p.decision) for p in plan(scenario)]


def test_force_never_deletes_a_store_a_demo_did_not_create(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "precious.txt").write_text("keep me", encoding="utf-8")
    done = _demo(tmp_path, "out", "--data-dir", str(mine), "--force")
    assert done.returncode == 1
    assert "was not created by a demo run" in done.stderr
    assert (mine / "precious.txt").read_text() == "keep me"


def test_bad_demo_options_are_refused_before_anything_is_created(tmp_path: Path) -> None:
    for option in (["--workflows", "-5"], ["--workflows", "0"], ["--hours", "0"], ["--alert-step-min", "0"]):
        done = _demo(tmp_path, "out", *option)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        assert done.stderr.startswith("Error: Invalid value"), done.stderr
    assert list(tmp_path.iterdir()) == []


@needs_tgkill
def test_a_demo_whose_engine_crashes_exits_75_instead_of_hanging(tmp_path: Path) -> None:
    """A crash in one of the embedded engine's threads left the demo's drain in an insert that never
    ends, and its exit in the engine's close: the demo hung. It ends as `clinotel serve` does: exit
    1 within the grace period after the failure is learnt, saying why."""
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "clinotel.cli", "demo", "--workflows", "2000", "--hours", "1",
             "--out", str(tmp_path / "d")],
            stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while "phase" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)  # the collector (and its engine) started: the demo printed its plan
        assert proc.poll() is None, log.read_text()[-3000:]
        assert _tgkill(proc.pid, _engine_thread(proc.pid), signal.SIGSEGV) == 0
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    text = log.read_text()
    assert code == EXIT_FAILED, text[-3000:]
    assert "the embedded engine failed" in text, text[-3000:]


def test_the_summary_counts_what_the_sink_received_of_both_senders() -> None:
    """The demo's delivery figures come from the sink's own log: clinotel's webhook batches (one
    status a batch, the severity on each alert) and Alertmanager's notifications (a status and
    the severity label on each alert, every alert of the group repeated), other paths apart."""
    from clinotel.demo.pipeline import delivered

    log: list[dict[str, Any]] = [
        {"path": "/ticket", "status": "firing", "alerts": [{"rule": "a", "severity": "ticket"}] * 2},
        {"path": "/ticket", "status": "resolved", "alerts": [{"rule": "a", "severity": "ticket"}]},
        {"path": "/ticket", "status": "firing", "alerts": [{"rule": "p", "severity": "page"}]},
        {"path": "/am", "status": "firing", "alerts": [{"status": "firing", "labels": {"severity": "page"}}]},
        {
            "path": "/am",
            "status": "resolved",
            "alerts": [
                {"status": "resolved", "labels": {"severity": "page"}},
                {"status": "firing", "labels": {"severity": "page"}},
            ],
        },
        {"path": "/am", "status": "firing", "alerts": None},
    ]
    webhook, am = delivered(log, "/ticket"), delivered(log, "/am")
    assert (webhook.notifications, webhook.firing, webhook.resolved) == (3, {"ticket": 2, "page": 1}, {"ticket": 1})
    assert (am.notifications, am.firing, am.resolved) == (3, {"page": 2}, {"page": 1})
    assert delivered(log, "/elsewhere").notifications == 0
