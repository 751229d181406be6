"""Known answers of the efficiency figures: minutes, touches and rework per workflow by phase, and
the net minutes saved against the shadow phase, against numpy and scipy on planted workflows; the
same from the workflows view and from the hourly rollup the dashboards read."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from scipy.stats import norm

from clinotel.collector.store import rollups as refresher
from clinotel.collector.store import schema
from clinotel.model import clinical, rollups
from clinotel.model.efficiency import net_saved_sql, phases_sql
from clinotel.semconv import attributes as A

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
WHEN = "StartTime >= toDateTime64('2026-03-02 00:00:00', 6, 'UTC')"
HOURS = "Hour >= toDateTime('2026-03-02 00:00:00', 'UTC')"
# (phase, cohort, stage minutes, touches, rework minutes or None)
PLANTED = [
    ("shadow", "", 6.0, 6, None), ("shadow", "", 6.0, 5, None), ("shadow", "", 8.0, 7, None),
    ("shadow", "", 8.0, 6, 4.0),
    ("recommend", "baseline", 2.0, 2, None), ("recommend", "baseline", 2.0, 1, None),
    ("recommend", "baseline", 4.0, 3, None), ("recommend", "baseline", 4.0, 2, None),
    ("recommend", "canary", 2.0, 1, 10.0), ("recommend", "canary", 3.0, 2, 12.0), ("recommend", "canary", 2.0, 2, None),
]  # fmt: skip


def _plant(client: Any, o: schema.SchemaOptions) -> None:
    workflows, spans = [], []
    for i, (mode, cohort, minutes, touches, rework) in enumerate(PLANTED):
        trace, wid = f"{i + 1:032x}", f"{i + 100:032x}"
        start = T0 + timedelta(minutes=i)
        workflows.append(("st-marys", "triage", trace, wid, "north", "ed", start, start, mode, cohort))
        tenant = {A.TENANT_ID.key: "st-marys"}
        spans.append((start, trace, f"{i + 1:016x}", "review", tenant, {
            A.WORKFLOW_KIND.key: "triage", A.EFFORT_MINUTES.key: repr(minutes), A.EFFORT_TOUCHES.key: str(touches),
        }))  # fmt: skip
        if rework is not None:
            spans.append((start + timedelta(hours=1), f"{i + 50:032x}", f"{i + 50:016x}", A.REWORK_SPAN_NAME, tenant, {
                A.ABOUT_KIND.key: "triage", A.WORKFLOW_ID.key: wid, A.REWORK_KIND.key: "retriaged",
                A.EFFORT_MINUTES.key: repr(rework), A.EFFORT_TOUCHES.key: "3",
            }))  # fmt: skip
    client.insert(
        o.name(clinical.WORKFLOWS), workflows,
        column_names=["TenantId", "WorkflowKind", "TraceId", "WorkflowId", "Site", "Department", "StartTime",
                      "EndTime", "RolloutMode", "RolloutCohort"],
    )  # fmt: skip
    client.insert(o.name(schema.TRACES), spans, column_names=[
        "Timestamp", "TraceId", "SpanId", "SpanName", "ResourceAttributes", "SpanAttributes"])  # fmt: skip


@pytest.fixture(params=["workflows view", "hourly rollup"])
def source(request: pytest.FixtureRequest, client: Any, options: schema.SchemaOptions) -> dict[str, Any]:
    """Where the figures are read: the SQL's arguments (after planting, and refreshing the rollup)."""
    _plant(client, options)
    if request.param == "workflows view":
        return {"when": WHEN}
    refresher.refresh(client, options)
    return {"when": HOURS, "rollup": options.name(rollups.WORKFLOW_HOURS)}


def _query(client: Any, sql: Any, database: str, source: dict[str, Any]) -> dict[str, dict[str, Any]]:
    when = source["when"]
    result = client.query(sql(database, when, rollup=source.get("rollup")))
    return {r["phase"]: r for r in (dict(zip(result.column_names, row, strict=True)) for row in result.result_rows)}


def _totals(phase: str, cohort: str | None = None) -> np.ndarray:
    return np.array([m + (r or 0.0) for p, c, m, _, r in PLANTED if p == phase and (cohort is None or c == cohort)])


def _wilson(x: int, n: int) -> tuple[float, float]:
    z = norm.ppf(0.975)
    centre = (x + z * z / 2) / (n + z * z)
    half = z * math.sqrt(x * (n - x) / n + z * z / 4) / (n + z * z)
    return centre - half, centre + half


def test_minutes_touches_and_rework_by_phase(
    client: Any, options: schema.SchemaOptions, source: dict[str, Any]
) -> None:
    rows = _query(client, phases_sql, options.database, source)
    assert set(rows) == {"shadow", "recommend", "recommend canary"}
    for phase, cohort in (("shadow", None), ("recommend", "baseline"), ("recommend canary", "canary")):
        totals = _totals(phase.split()[0], cohort)
        r = rows[phase]
        assert r["workflows"] == len(totals)
        assert r["minutes_per_workflow"] == pytest.approx(round(totals.mean(), 2))
        half = norm.ppf(0.975) * totals.std(ddof=1) / math.sqrt(len(totals))
        assert r["minutes_low"] == pytest.approx(round(totals.mean() - half, 2))
        assert r["minutes_high"] == pytest.approx(round(totals.mean() + half, 2))
    canary = rows["recommend canary"]
    assert canary["rework_rate"] == pytest.approx(round(2 / 3, 4))
    low, high = _wilson(2, 3)
    assert (canary["rework_low"], canary["rework_high"]) == (
        pytest.approx(round(low, 4)),
        pytest.approx(round(high, 4)),
    )
    assert canary["rework_minutes_per_workflow"] == pytest.approx(round(22 / 3, 2))
    assert rows["shadow"]["touches_per_workflow"] == pytest.approx(round((6 + 5 + 7 + 6 + 3) / 4, 2))
    assert rows["recommend"]["rework_rate"] == 0


def test_net_minutes_saved_against_shadow_with_welch_interval(
    client: Any, options: schema.SchemaOptions, source: dict[str, Any]
) -> None:
    rows = _query(client, net_saved_sql, options.database, source)
    base = _totals("shadow")
    for phase, cohort in (("recommend", "baseline"), ("recommend canary", "canary")):
        now = _totals("recommend", cohort)
        diff = base.mean() - now.mean()
        se = math.sqrt(base.var(ddof=1) / len(base) + now.var(ddof=1) / len(now))
        r = rows[phase]
        assert (r["site"], r["department"], r["workflows"]) == ("north", "ed", len(now))
        assert r["saved_per_workflow"] == pytest.approx(round(diff, 2))
        assert r["saved_low"] == pytest.approx(round(diff - norm.ppf(0.975) * se, 2))
        assert r["saved_high"] == pytest.approx(round(diff + norm.ppf(0.975) * se, 2))
        assert r["net_minutes_saved"] == pytest.approx(round(diff * len(now), 1))
    # the biased canary's rework eats most of what its stages saved
    assert rows["recommend canary"]["saved_per_workflow"] < rows["recommend"]["saved_per_workflow"]


def test_another_tenants_effort_on_the_same_trace_id_is_not_counted(
    client: Any, options: schema.SchemaOptions, source: dict[str, Any]
) -> None:
    """Trace ids are chosen by the sender: a tenant that reuses another's cannot add minutes to it."""
    intruder = {A.TENANT_ID.key: "intruder"}
    client.insert(options.name(schema.TRACES), [
        (T0, f"{1:032x}", "ff" * 8, "review", intruder, {
            A.WORKFLOW_KIND.key: "triage", A.EFFORT_MINUTES.key: "999.0", A.EFFORT_TOUCHES.key: "99"}),
    ], column_names=["Timestamp", "TraceId", "SpanId", "SpanName", "ResourceAttributes", "SpanAttributes"])  # fmt: skip
    if "rollup" in source:
        refresher.refresh(client, options)
    rows = _query(client, phases_sql, options.database, source)
    assert rows["shadow"]["minutes_per_workflow"] == pytest.approx(round(_totals("shadow").mean(), 2))
