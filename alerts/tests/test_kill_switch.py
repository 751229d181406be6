"""The kill switch: a rule's `disable_flag` action rewrites a flagd flag-definition file, and the
real OpenFeature SDK with the flagd provider (file mode) follows it without a restart; the action is
audited, recorded as a change event through OTLP, and named on the page. Dry run changes nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from openfeature import api
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import ResolverType
from openfeature.evaluation_context import EvaluationContext
from pydantic import ValidationError

from alerts.tests.test_paging import Sink
from clinotel.alerts import default_rules_path
from clinotel.alerts.actions import DisableFlag, FlagdFile
from clinotel.alerts.config import AlertingConfig
from clinotel.alerts.paging import Outbox
from clinotel.alerts.rules import load
from clinotel.alerts.sinks import WebhookSink
from clinotel.alerts.wiring import build_evaluator, receiver_recorder
from clinotel.collector.store import schema
from clinotel.model import tables
from clinotel.model.changes import recent_changes
from clinotel.model.sql import literal
from clinotel.semconv import attributes as A

FLAGS = {
    "$schema": "https://flagd.dev/schema/v0/flags.json",
    "flags": {
        "triage-model-v4": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "targeting": {"if": [{"in": [{"var": "site"}, ["north", "south"]]}, "on", None]},
        }
    },
}
KILL = DisableFlag(key="triage-model-v4", scope={"site": "north"})


@pytest.fixture
def flag_file(tmp_path: Path) -> Path:
    path = tmp_path / "flags.flagd.json"
    path.write_text(json.dumps(FLAGS), encoding="utf-8")
    return path


@pytest.fixture
def flagd(flag_file: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The real flagd provider watching `flag_file`, as a service in file mode would."""
    monkeypatch.setenv("FLAGD_OFFLINE_POLL_MS", "50")
    provider = FlagdProvider(resolver_type=ResolverType.FILE, offline_flag_source_path=str(flag_file))
    api.set_provider(provider)
    yield api.get_client()
    api.shutdown()


def _value(client: Any, site: str) -> bool:
    return bool(client.get_boolean_value("triage-model-v4", False, EvaluationContext(attributes={"site": site})))


def _follows(client: Any, site: str, want: bool, timeout_s: float = 10.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if _value(client, site) is want:
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"the flagd provider did not follow: site {site} still {not want}")


def test_the_switch_turns_the_flag_off_at_one_site_and_the_provider_follows(flag_file: Path, flagd: Any) -> None:
    _follows(flagd, "north", True)
    assert _value(flagd, "south") is True
    outcome = FlagdFile(flag_file).disable(KILL, "canary_kill_under_triage", dry_run=False)
    assert outcome.result == "applied", outcome
    _follows(flagd, "north", False)
    assert _value(flagd, "south") is True  # the rest of the rollout keeps its variant
    assert _value(flagd, "east") is False  # and the default stays the default
    flag = json.loads(flag_file.read_text())["flags"]["triage-model-v4"]
    assert flag["metadata"] == {"clinotelKilledBy": "canary_kill_under_triage"}
    # again: nothing to do, the file is not rewritten
    before = flag_file.stat().st_mtime_ns
    assert FlagdFile(flag_file).disable(KILL, "canary_kill_under_triage", dry_run=False).result == "unchanged"
    assert flag_file.stat().st_mtime_ns == before


def _for(client: Any, site: str, tenant: str | None) -> bool:  # tenant None: not passed
    context = {"site": site} if tenant is None else {"site": site, "tenant": tenant}
    return bool(client.get_boolean_value("triage-model-v4", False, EvaluationContext(attributes=context)))


def test_a_switch_made_for_one_tenants_alert_leaves_the_other_tenants_services_alone(
    flag_file: Path, flagd: Any
) -> None:
    """One collector's tenants share its rules: tenant A's spans (a single fallback decision at site
    north) switched the flag off at site north for every tenant. A switch is now made for the
    tenant whose alert fired: services passing another `tenant` keep their variant; services
    passing none follow it (a kill switch that cannot tell must not fail to kill)."""
    switch = KILL.for_tenant("tenant-a")
    assert switch is not None
    assert FlagdFile(flag_file).disable(switch, "fallback_kill", dry_run=False).result == "applied"
    deadline = time.monotonic() + 10
    while _for(flagd, "north", "tenant-a") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _for(flagd, "north", "tenant-a") is False
    assert _for(flagd, "north", None) is False
    assert _for(flagd, "north", "") is False  # an empty tenant is no tenant
    assert _for(flagd, "north", "tenant-b") is True
    assert _for(flagd, "north", "TENANT-A") is True  # tenants are exact names
    assert _for(flagd, "south", "tenant-a") is True
    context = {"site": "north", "tenant": 0}
    assert flagd.get_boolean_value("triage-model-v4", False, EvaluationContext(attributes=context)) is True
    assert switch.describe() == "flag triage-model-v4 -> off (site=north; tenant tenant-a)"
    # an action limited to one tenant is not made for another's alert
    mine = DisableFlag(key="triage-model-v4", scope={"site": "north"}, tenant="tenant-b")
    assert mine.for_tenant("tenant-a") is None
    assert mine.for_tenant("tenant-b") == mine


def test_a_dry_run_changes_nothing(flag_file: Path) -> None:
    before = flag_file.read_bytes()
    outcome = FlagdFile(flag_file).disable(KILL, "r", dry_run=True)
    assert outcome.result == "dry_run"
    assert "would set flag triage-model-v4 -> off (site=north)" in outcome.detail
    assert flag_file.read_bytes() == before


@pytest.mark.parametrize(
    ("action", "says"),
    [
        (DisableFlag(key="no-such-flag"), "has no flag 'no-such-flag'"),
        (DisableFlag(key="triage-model-v4", variant="maybe"), "has no variant 'maybe'"),
    ],
)
def test_a_switch_that_cannot_apply_says_why_and_leaves_the_file(
    flag_file: Path, action: DisableFlag, says: str
) -> None:
    before = flag_file.read_bytes()
    outcome = FlagdFile(flag_file).disable(action, "r", dry_run=False)
    assert (outcome.result, says in outcome.detail) == ("failed", True)
    assert flag_file.read_bytes() == before


def test_a_missing_or_broken_flag_file_fails_in_one_line(tmp_path: Path) -> None:
    assert FlagdFile(tmp_path / "none.json").disable(KILL, "r", False).result == "failed"
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    outcome = FlagdFile(tmp_path / "bad.json").disable(KILL, "r", False)
    assert outcome.result == "failed"
    assert "\n" not in outcome.detail


@pytest.mark.parametrize(
    "fields",
    [
        {"key": "../../etc/passwd"},
        {"key": "x", "scope": {"site": 'north"}, {"==": [1, 1]'}},
        {"key": "x", "scope": {"Site; DROP": "north"}},
        {"key": "x", "variant": ""},
        {"key": "x", "extra": 1},
    ],
)
def test_an_action_that_could_inject_is_refused_when_the_rules_load(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        DisableFlag.model_validate(fields)


@pytest.mark.parametrize("recorded", ["over OTLP", "into its own collector"])
def test_the_canary_kill_switches_the_flag_off_records_it_and_says_so_on_the_page(
    recorded: str, collector: Any, flag_file: Path, flagd: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over OTLP: `alerts evaluate` with a changes endpoint and a write token. Into its own
    collector: `serve --rules`, which records the event through its receiver (no token, no hop)."""
    from collector.tests.fixtures import WRITE_TOKEN
    from dashboards.tests.demo_data import load_demo

    load_demo(collector, WRITE_TOKEN, workflows=2000)
    rules = tmp_path / "rules.yaml"
    text = default_rules_path().read_text(encoding="utf-8")
    # the action is under test here, not the statistics (alerts/tests/test_statistics.py): the kill
    # criterion decides on its observed ratio, which 2,000 workflows carry past 1.5
    sequential = "    test: sequential  # a confidence sequence: valid at every 30 s look\n"
    assert sequential in text
    rules.write_text(text.replace(sequential, "    test: none\n", 1), encoding="utf-8")
    pack = load(rules)
    kill = next(r for r in pack.rules if r.name == "canary_kill_under_triage")
    assert kill.action is not None
    assert kill.action.disable_flag == KILL
    if recorded == "over OTLP":
        monkeypatch.setenv("CLINOTEL_WRITE_TOKEN", WRITE_TOKEN)
        config = AlertingConfig(
            rules=rules, flagd_file=flag_file, changes_endpoint=f"http://127.0.0.1:{collector.http.port}"
        )
        own = None
    else:
        config = AlertingConfig(rules=rules, flagd_file=flag_file)
        own = receiver_recorder(collector.receiver, collector.config.insecure_tenant)
    sink = Sink()
    try:
        outbox = Outbox([WebhookSink(f"{sink.url}/page")], [WebhookSink(f"{sink.url}/ticket")])
        evaluator = build_evaluator(
            config, collector.client, collector.options.database, outbox=outbox, alone=True, on_change=own
        )
        recorder = evaluator.on_change
        assert recorder is not None
        tenants: list[str] = []

        def record(*args: Any) -> None:
            tenants.append(args[4])
            recorder(*args)

        evaluator.on_change = record
        _follows(flagd, "north", True)
        summary = evaluator.evaluate(datetime.now(UTC) + timedelta(minutes=1))
        assert summary.errors == []
        [(rule, what, outcome)] = summary.actions
        switched = "flag triage-model-v4 -> off (site=north; tenant st-marys)"
        assert (rule, what, outcome.result) == ("canary_kill_under_triage", switched, "applied")
        _follows(flagd, "north", False)
        pages = [alert for path, body in sink.received if path == "/page" for alert in body["alerts"]]
        page = next(p for p in pages if p["rule"] == "canary_kill_under_triage")
        assert page["annotations"]["action"] == "switched flag triage-model-v4 -> off (site=north; tenant st-marys)"
        assert "flag triage-model-v4 -> on by pipeline:flag-rollout" in page["annotations"]["changes"]
    finally:
        sink.close()
    db = collector.options.database
    [audit] = collector.client.query(
        f"SELECT Value, Sample, Threshold, Receiver, Detail, TenantId FROM {db}.{tables.ALERT_EVENTS} "
        "WHERE Rule = 'canary_kill_under_triage' AND Event = 'action'"
    ).result_rows
    assert audit[0] > 1.5
    assert audit[1] >= 30
    assert audit[3] == "flagd:flags.flagd.json"
    assert audit[4].startswith("applied: flag triage-model-v4 -> off (site=north; tenant st-marys)")
    collector.writer.drain()
    now = datetime.now(UTC)
    changes = recent_changes(collector.client, db, now - timedelta(minutes=5), now + timedelta(minutes=1))
    [change] = [c for c in changes if c.actor == "rule:canary_kill_under_triage"]
    assert (change.kind, change.name, change.version, change.site, change.result) == (
        "flag", "triage-model-v4", "off", "north", "applied",
    )  # fmt: skip
    # the event names the firing alert's tenant and the action's scope
    [(sent, stored, site)] = collector.client.query(
        f"SELECT ResourceAttributes[{literal(A.TENANT_ID.key)}], TenantId, SpanAttributes[{literal(A.SITE.key)}] "
        f"FROM {collector.options.name(schema.TRACES)} WHERE SpanName = {literal(A.CHANGE_SPAN_NAME)} "
        f"AND SpanAttributes[{literal(A.CHANGE_ACTOR.key)}] = 'rule:canary_kill_under_triage'"
    ).result_rows
    assert tenants == [audit[5]], "the recorder is given the firing alert's tenant"
    assert sent == stored == audit[5]
    assert site == "north"


def _fallback_kill(tmp_path: Path, scope_more: str = "") -> Path:
    """A rules file of one rule, `fallback_kill`, whose action turns triage-model-v4 off at north."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n  - name: fallback_kill\n    metric: fallback_rate\n    threshold: 0.2\n    window: 15m\n"
        "    min_sample: 20\n    severity: page\n    summary: Decisions fall back\n"
        f"    action:\n      disable_flag: {{key: triage-model-v4, scope: {{site: north}}{scope_more}}}\n",
        encoding="utf-8",
    )
    return rules


def test_an_action_limited_to_one_tenant_skips_another_tenants_alert(
    client: Any, options: schema.SchemaOptions, flag_file: Path, tmp_path: Path
) -> None:
    """Another tenant's firing pages as before, and its switch is audited as skipped: the flag file
    is not touched."""
    from alerts.tests.test_paging import _workflows

    rules = _fallback_kill(tmp_path, ", tenant: general")
    now = datetime.now(UTC)
    _workflows(client, options, "st-marys", 40, 20, now)
    before = flag_file.read_bytes()
    evaluator = build_evaluator(AlertingConfig(rules=rules, flagd_file=flag_file), client, options.database,
                                outbox=Outbox([], []), alone=True)  # fmt: skip
    try:
        summary = evaluator.evaluate(now + timedelta(minutes=1))
    finally:
        evaluator.close()
    [(rule, what, outcome)] = summary.actions
    assert (rule, outcome.result) == ("fallback_kill", "skipped")
    assert "the switch is tenant general's; this alert is st-marys tenant's" in outcome.detail
    assert what == "flag triage-model-v4 -> off (site=north; tenant general)"
    assert flag_file.read_bytes() == before
    [detail] = client.query(
        f"SELECT Detail FROM {options.database}.{tables.ALERT_EVENTS} WHERE Rule = 'fallback_kill' AND Event = 'action'"
    ).result_rows[0]
    assert detail.startswith("skipped: ")


def test_a_dry_run_without_a_switch_says_what_it_would_do_not_that_it_failed(
    client: Any, options: schema.SchemaOptions, tmp_path: Path
) -> None:
    """`--dry-run` with no flagd file or flag webhook: the page read "FAILED to switch" (a 2026-12-07
    review) where `--dry-run` promises what would be done; a real run without a switch still fails."""
    from alerts.tests.test_paging import _workflows

    rules = _fallback_kill(tmp_path)
    now = datetime.now(UTC)
    _workflows(client, options, "st-marys", 40, 20, now)
    results = []
    for dry_run in (True, False):
        evaluator = build_evaluator(AlertingConfig(rules=rules, dry_run=dry_run), client, options.database,
                                    outbox=Outbox([], []), alone=True)  # fmt: skip
        try:
            summary = evaluator.evaluate(now + timedelta(minutes=1))
            [(_, _, outcome)] = summary.actions
            results.append((outcome.result, next(iter(evaluator._notes.values()))))
        finally:
            evaluator.close()
        client.command(f"TRUNCATE TABLE {options.database}.{tables.ALERT_EVENTS}")  # fires again
    (dry, dry_note), (real, real_note) = results
    assert dry == "dry_run"
    assert dry_note.startswith("dry run: would switch flag triage-model-v4 -> off (site=north")
    assert "no flag switch is configured" in dry_note
    assert real == "failed"
    assert real_note.startswith("FAILED to switch flag triage-model-v4")
