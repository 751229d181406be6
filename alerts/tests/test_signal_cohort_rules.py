"""Issue 17's signals in the rules that compare workflows: a canary kill criterion on the share of
decisions made from stale demographics and on rework, and a per-group disparity of a data-quality
rate, against known workflows; their counts and intervals equal `clinotel.model.stats` by hand."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clinotel.alerts import rules as R
from clinotel.alerts.queries import observe
from clinotel.alerts.rules import Rule
from clinotel.collector.store import schema
from clinotel.model import clinical
from clinotel.model.stats import kill_sequence, ratio_interval
from clinotel.semconv import attributes as A

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
WORKFLOW_COLUMNS = [clinical.stored_column(c) for c in (
    "TenantId", "WorkflowKind", "TraceId", "WorkflowId", "StartTime", "RolloutMode", "RolloutCohort", "ModelVersion",
    "Language")]  # fmt: skip
SPAN_COLUMNS = ["Timestamp", "TraceId", "SpanId", "SpanName", "ResourceAttributes", "SpanAttributes"]


class Planted:
    """Workflows (in the workflows view) and their spans (in `otel_traces`)."""

    def __init__(self) -> None:
        self.workflows: list[tuple[Any, ...]] = []
        self.spans: list[tuple[Any, ...]] = []

    def workflow(self, cohort: str, language: str = "en", *, at: datetime = NOW - timedelta(minutes=30)) -> str:
        n = len(self.workflows) + 1
        trace, wid = f"{n:032x}", f"w{n:031x}"
        version = "4.0.0" if cohort == "canary" else "3.2.0"
        self.workflows.append(("st-marys", "triage", trace, wid, at, "recommend", cohort, version, language))
        return trace

    def span(self, trace: str, name: str, attrs: dict[str, str], at: datetime = NOW - timedelta(minutes=29)) -> None:
        n = len(self.spans) + 1
        self.spans.append((at, trace, f"{n:016x}", name, {A.TENANT_ID.key: "st-marys"}, attrs))

    def rework(self, trace: str, at: datetime = NOW - timedelta(minutes=10)) -> None:
        wid = next(w[3] for w in self.workflows if w[2] == trace)
        self.span(f"f{trace[1:]}", A.REWORK_SPAN_NAME, {A.ABOUT_KIND.key: "triage", A.WORKFLOW_ID.key: wid,
                                                         A.REWORK_KIND.key: "retriaged"}, at)  # fmt: skip

    def insert(self, client: Any, o: schema.SchemaOptions) -> None:
        client.insert(o.name(clinical.WORKFLOWS), self.workflows, column_names=WORKFLOW_COLUMNS)
        client.insert(o.name(schema.TRACES), self.spans, column_names=SPAN_COLUMNS)


def _rule(**kw: Any) -> Rule:
    return Rule.model_validate({"name": "x_rule", "window": "1h", "severity": "page", "summary": "planted", **kw})


def _age(hours: float) -> dict[str, str]:
    return {A.DATA_DEMOGRAPHICS_AGE_H.key: repr(hours)}


def test_canary_kill_criterion_on_stale_demographics(client: Any, options: schema.SchemaOptions) -> None:
    p = Planted()
    for i in range(200):  # canary: 150 report their age, 45 of them stale (one of two spans suffices)
        t = p.workflow("canary")
        if i < 150:
            p.span(t, "decide", _age(30.0 if i < 45 else 3.0))
            p.span(t, "review", _age(2.0))
    for i in range(400):  # baseline: 40 stale of 400
        p.span(p.workflow("baseline"), "decide", _age(48.0 if i < 40 else 1.0))
    for _ in range(100):  # two hours ago: outside the window
        p.span(p.workflow("canary", at=NOW - timedelta(hours=2)), "decide", _age(99.0), NOW - timedelta(hours=2))
    p.insert(client, options)
    rule = _rule(kind="canary", metric="stale_demographics_rate", threshold=1.5, min_sample=50)
    assert rule.decided_by is R.Test.SEQUENTIAL
    (o,) = observe(client, rule, options.database, NOW)
    assert (o.tenant, o.kind, o.counts, o.sample) == ("st-marys", "triage", (45, 150, 40, 400), 150)
    assert o.value == pytest.approx((45 / 150) / (40 / 400))
    want = kill_sequence(45, 150, 40, 400, 0.95, abs(math.log(1.5)))
    assert want is not None
    assert want.low > 1
    assert (o.low, o.high) == (pytest.approx(want.low, rel=1e-9), pytest.approx(want.high, rel=1e-9))
    assert o.decide == pytest.approx(3.0)


def test_a_canary_against_a_baseline_without_a_single_hit_pages(client: Any, options: schema.SchemaOptions) -> None:
    """20 of 100 canary workflows against 0 of 200 in the baseline: the ratio was NULL (a division
    by zero), so the kill criterion was skipped, and the log-ratio sequence alone could not exclude
    1 either. Filled at the cap and decided by the kill sequence, it pages."""
    p = Planted()
    for i in range(100):
        p.span(p.workflow("canary"), "decide", _age(30.0 if i < 20 else 3.0))
    for _ in range(200):
        p.span(p.workflow("baseline"), "decide", _age(1.0))
    p.insert(client, options)
    rule = _rule(kind="canary", metric="stale_demographics_rate", threshold=1.5, min_sample=50)
    (o,) = observe(client, rule, options.database, NOW)
    assert o.counts == (20, 100, 0, 200)
    assert o.value == 10.0
    want = kill_sequence(20, 100, 0, 200, 0.95, abs(math.log(1.5)))
    assert want is not None
    assert want.low > 1
    assert o.low == pytest.approx(want.low, rel=1e-9)
    assert o.decide == 10.0


def _context_missing_by_language(
    client: Any, options: schema.SchemaOptions, groups: tuple[tuple[str, int, int], ...]
) -> dict[str, Any]:
    """(language, workflows, missing context among them) planted; the disparity rule's
    observations by group."""
    p = Planted()
    missing = {A.DATA_CONTEXT_MISSING.key: "true"}
    present = {A.DATA_CONTEXT_MISSING.key: "false"}
    for language, n, hits in groups:
        for i in range(n):
            p.span(p.workflow("baseline", language), "decide", missing if i < hits else present)
    p.insert(client, options)
    rule = _rule(kind="disparity", metric="context_missing_rate", dimension="Language", threshold=1.25, min_sample=30)
    return {o.group: o for o in observe(client, rule, options.database, NOW)}


def test_a_group_against_a_reference_without_a_single_hit_pages(client: Any, options: schema.SchemaOptions) -> None:
    got = _context_missing_by_language(client, options, (("en", 150, 0), ("es", 60, 15), ("zh", 40, 0)))
    assert got["es"].value == 10.0  # 25 % against 0 %: Aequitas fills the division, capped at 10
    assert got["es"].low is not None
    assert got["es"].low > 1
    assert got["es"].decide == 10.0
    assert (got["zh"].value, got["zh"].decide) == (1.0, 1.0)  # 0 against 0: no difference


def test_canary_on_rework_counts_workflows_reworked(client: Any, options: schema.SchemaOptions) -> None:
    p = Planted()
    canary = [p.workflow("canary") for _ in range(100)]
    baseline = [p.workflow("baseline") for _ in range(300)]
    for t in canary[:20]:
        p.rework(t)
    p.rework(canary[0])  # reworked twice: still one workflow reworked
    for t in baseline[:15]:
        p.rework(t)
    p.span("e" * 32, A.REWORK_SPAN_NAME, {A.ABOUT_KIND.key: "triage", A.WORKFLOW_ID.key: "unknown"})
    p.insert(client, options)
    rule = _rule(kind="canary", metric="rework_rate", threshold=2.0, test="score")
    (o,) = observe(client, rule, options.database, NOW)
    assert o.counts == (20, 100, 15, 300)
    assert o.value == pytest.approx(0.20 / 0.05)
    want = ratio_interval(20, 100, 15, 300, 0.95)
    assert want is not None
    assert (o.low, o.high) == (pytest.approx(want.low, rel=1e-9), pytest.approx(want.high, rel=1e-9))
    assert o.decide == pytest.approx(4.0)


def test_disparity_of_a_data_quality_rate_by_language(client: Any, options: schema.SchemaOptions) -> None:
    got = _context_missing_by_language(client, options, (("en", 300, 15), ("es", 100, 20), ("zh", 60, 3)))
    assert set(got) == {"es", "zh"}  # en, the largest group, is the reference
    es = got["es"]
    assert (es.counts, es.sample, es.cohort, es.version) == ((20, 100, 15, 300), 100, "baseline", "3.2.0")
    want = ratio_interval(20, 100, 15, 300, 0.95)
    assert want is not None
    assert want.low > 1
    assert es.value == pytest.approx(4.0)
    assert (es.low, es.high) == (pytest.approx(want.low, rel=1e-9), pytest.approx(want.high, rel=1e-9))
    assert es.decide == pytest.approx(4.0)
    assert got["zh"].value == pytest.approx(1.0)
    assert got["zh"].decide == 1.0  # no difference: not past the band


def test_cohort_rules_take_rates_per_workflow_only() -> None:
    with pytest.raises(ValueError, match="threshold or baseline rules only"):
        _rule(kind="canary", metric="feedback_too_slow", threshold=2)
    with pytest.raises(ValueError, match="threshold or baseline rules only"):
        _rule(kind="disparity", metric="feedback_wrong_priority", dimension="Language", threshold=2)
    with pytest.raises(ValueError, match="psi, js"):
        _rule(kind="drift", metric="rework_rate", threshold=2, baseline_window="1h")
    with pytest.raises(ValueError, match="past 1"):
        _rule(kind="canary", metric="late_lab_rate", threshold=0.5)
    assert _rule(kind="canary", metric="late_lab_rate", threshold=1.5).decided_by is R.Test.SEQUENTIAL
    assert _rule(kind="disparity", metric="mapping_error_rate", dimension="PayerClass", threshold=1).harm_is_higher
    # a span-level signal rule keeps its plain figure (no test: records per workflow are not a rate)
    assert _rule(kind="baseline", metric="rework_rate", threshold=1.5, baseline_window="6h").decided_by is R.Test.NONE
