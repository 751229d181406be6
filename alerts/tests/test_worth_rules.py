"""Issue 17's default rules against known rows in `otel_traces`: drift (PSI), data quality, rework
against its baseline, and clinician feedback routed as tickets to the owning team by category."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from alerts.tests.test_paging import Sink
from clinotel.alerts import default_rules_path
from clinotel.alerts.evaluator import Evaluator
from clinotel.alerts.paging import Outbox
from clinotel.alerts.queries import observe
from clinotel.alerts.rules import Kind, Rule, RulePack, load
from clinotel.alerts.sinks import WebhookSink
from clinotel.collector.store import schema
from clinotel.model.signals import FEEDBACK_OWNERS
from clinotel.semconv import FeedbackCategory
from clinotel.semconv import attributes as A

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
DEFAULT = load(default_rules_path())


def _rule(name: str) -> Rule:
    return next(r for r in DEFAULT.rules if r.name == name)


class Rows:
    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []

    def add(
        self, at: datetime, name: str, attrs: dict[str, str], *, parent: str = "p", tenant: str = "st-marys"
    ) -> None:
        n = len(self.rows) + 1
        self.rows.append((at, f"{n:032x}", f"{n:016x}", parent, name, "svc", {A.TENANT_ID.key: tenant}, attrs))

    def insert(self, client: Any, o: schema.SchemaOptions) -> None:
        columns = ["Timestamp", "TraceId", "SpanId", "ParentSpanId", "SpanName", "ServiceName", "ResourceAttributes",
                   "SpanAttributes"]  # fmt: skip
        client.insert(o.name(schema.TRACES), self.rows, column_names=columns)


@pytest.fixture
def rows() -> Rows:
    return Rows()


def _observe(client: Any, o: schema.SchemaOptions, name: str) -> dict[tuple[str, str, str], tuple[float | None, int]]:
    return {(x.tenant, x.kind, x.group): (x.value, x.sample) for x in observe(client, _rule(name), o.database, NOW)}


def test_data_quality_rates_are_the_known_shares(client: Any, options: schema.SchemaOptions, rows: Rows) -> None:
    decide = {A.WORKFLOW_KIND.key: "triage", A.WORKFLOW_STAGE.key: "decide"}
    for i in range(100):  # the last hour: 30 stale, 20 late, 12 missing context, 7 mapping errors
        rows.add(NOW - timedelta(minutes=30), "decide", {
            **decide,
            A.DATA_DEMOGRAPHICS_AGE_H.key: "30.0" if i < 30 else "2.5",
            A.DATA_LAB_DELAY_MIN.key: "61" if i < 20 else "60",
            A.DATA_CONTEXT_MISSING.key: "true" if i < 12 else "false",
            A.DATA_MAPPING_ERRORS.key: "2" if i < 7 else "0",
        })  # fmt: skip
    for _ in range(50):  # two hours ago: outside the window
        rows.add(NOW - timedelta(hours=2), "decide", {**decide, A.DATA_DEMOGRAPHICS_AGE_H.key: "99"})
    rows.insert(client, options)
    key = ("st-marys", "triage", "")
    assert _observe(client, options, "stale_demographics")[key] == (pytest.approx(0.30), 100)
    assert _observe(client, options, "late_lab_data")[key] == (pytest.approx(0.20), 100)
    assert _observe(client, options, "context_missing")[key] == (pytest.approx(0.12), 100)
    assert _observe(client, options, "ehr_mapping_errors")[key] == (pytest.approx(0.07), 100)


def test_rework_against_its_baseline(client: Any, options: schema.SchemaOptions, rows: Rows) -> None:
    root = {A.WORKFLOW_KIND.key: "triage"}
    for at, workflows, rework in ((NOW - timedelta(hours=1), 200, 30), (NOW - timedelta(hours=4), 400, 20)):
        for _ in range(workflows):
            rows.add(at, "workflow triage", root, parent="")
        for _ in range(rework):
            rows.add(at, A.REWORK_SPAN_NAME, {A.ABOUT_KIND.key: "triage", A.REWORK_KIND.key: "retriaged"})
    rows.insert(client, options)
    value, n = _observe(client, options, "rework_rising")[("st-marys", "triage", "")]
    assert value == pytest.approx((30 / 200) / (20 / 400))  # 3x the baseline
    assert n == 200
    assert value is not None
    assert value > _rule("rework_rising").threshold


def test_drift_rule_reads_psi_per_feature(client: Any, options: schema.SchemaOptions, rows: Rows) -> None:
    decide = {A.WORKFLOW_KIND.key: "triage", A.WORKFLOW_STAGE.key: "decide"}
    for at, modes in ((NOW - timedelta(hours=4), {"walk_in": 300, "ambulance": 100}),
                      (NOW - timedelta(hours=1), {"walk_in": 200, "ambulance": 100, "telehealth": 100})):  # fmt: skip
        for mode, c in modes.items():
            for _ in range(c):
                rows.add(at, "decide", {**decide, A.INPUT_ARRIVAL_MODE.key: mode})
    rows.insert(client, options)
    got = _observe(client, options, "decision_drift")
    value, n = got[("st-marys", "triage", "input.arrival_mode")]
    # the smoothed PSI by hand: bins walk_in, ambulance, telehealth; half a row per bin
    r = [(300 + 0.5) / 401.5, (100 + 0.5) / 401.5, 0.5 / 401.5]
    w = [(200 + 0.5) / 401.5, (100 + 0.5) / 401.5, (100 + 0.5) / 401.5]
    assert value == pytest.approx(sum((b - a) * math.log(b / a) for a, b in zip(r, w, strict=True)), rel=1e-9)
    assert n == 400
    assert _rule("decision_drift").kind is Kind.DRIFT


def test_feedback_goes_to_the_owning_team_as_a_ticket(client: Any, options: schema.SchemaOptions, rows: Rows) -> None:
    for category, count in (("wrong_priority", 6), ("missing_context", 5), ("too_slow", 2)):
        for _ in range(count):
            rows.add(NOW - timedelta(hours=1), A.FEEDBACK_SPAN_NAME, {
                A.ABOUT_KIND.key: "triage", A.FEEDBACK_CATEGORY.key: category, A.FEEDBACK_SEVERITY.key: "major",
            })  # fmt: skip
    rows.insert(client, options)
    sink = Sink()
    try:
        feedback_rules = tuple(r for r in DEFAULT.rules if r.name.startswith("feedback_"))
        evaluator = Evaluator(client, RulePack(rules=feedback_rules), Outbox([], [WebhookSink(f"{sink.url}/t")]),
                              database=options.database, lease_s=None)  # fmt: skip
        summary = evaluator.evaluate(NOW)
        assert not summary.errors
        assert sorted(r for r, _ in summary.firing) == ["feedback_missing_context", "feedback_wrong_priority"]
        bodies = sink.wait_for(2, "/t")
    finally:
        sink.close()
    teams = {a["rule"]: a["labels"]["team"] for body in bodies for a in body["alerts"]}
    assert teams == {"feedback_wrong_priority": "clinical-ml", "feedback_missing_context": "ehr-integration"}


def test_every_feedback_category_has_a_ticket_rule_for_its_owner() -> None:
    for c in FeedbackCategory:
        rule = _rule(f"feedback_{c.value}")
        assert rule.severity == "ticket"
        assert rule.labels["team"] == FEEDBACK_OWNERS[c]


def test_a_signal_is_refused_by_rule_kinds_it_cannot_serve() -> None:
    with pytest.raises(ValueError, match="threshold or baseline"):
        Rule.model_validate({"name": "x_rule", "kind": "canary", "metric": "feedback_other", "threshold": 2,
                             "window": "1h", "severity": "ticket", "summary": "nope"})  # fmt: skip
    with pytest.raises(ValueError, match="baseline_window"):
        Rule.model_validate({"name": "x_rule", "kind": "drift", "metric": "psi", "threshold": 0.2,
                             "window": "1h", "severity": "ticket", "summary": "nope"})  # fmt: skip
    with pytest.raises(ValueError, match="psi, js"):
        Rule.model_validate({"name": "x_rule", "kind": "drift", "metric": "kl", "threshold": 0.2, "window": "1h",
                             "baseline_window": "1h", "severity": "ticket", "summary": "nope"})  # fmt: skip
