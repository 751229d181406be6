"""The hourly signal rollup holds, for the demo hospital's spans, exactly what the signals' own SQL
gives span by span from `otel_traces`: each data-quality check's rows and failures, the rework
rate's records and workflows, rework by kind and role with its minutes, feedback by category and
severity, and every drift feature's bins (live and shadow apart), hour by hour."""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Any

import clickhouse_connect
import pytest

from clinotel.collector.service import Collector
from clinotel.dashboards import build_all
from clinotel.dashboards._panels import FILTERS, variables
from clinotel.dashboards.check import data_range, panel_queries, panel_range
from clinotel.dashboards.macros import TimeRange, expand
from clinotel.model import rollups
from clinotel.model.drift import FEATURES
from clinotel.model.feedback import feedback_decisions_sql
from clinotel.model.signals import IS_FEEDBACK, IS_REWORK, IS_WORKFLOW, KIND, SIGNALS, attr
from clinotel.model.sql import identifier, literal
from clinotel.model.tables import STAGE_SPANS, TRACES, WORKFLOWS
from clinotel.semconv import attributes as A
from collector.tests.fixtures import OTHER_TOKEN, READ_TOKEN, WRITE_TOKEN
from dashboards.tests.demo_data import load_demo

_HOUR = "toStartOfHour(toDateTime(Timestamp, 'UTC'))"
_SHADOW = f"toUInt8({attr(A.ROLLOUT_MODE.key)} = 'shadow')"


def _rounded(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 6)
    return tuple(_rounded(x) for x in v) if isinstance(v, list) else v


def _row(r: Any) -> tuple[Any, ...]:
    return tuple(_rounded(v) for v in r)


def _set(client: Any, sql: str) -> set[tuple[Any, ...]]:
    return {_row(r) for r in client.query(sql).result_rows}


def test_the_signal_rollup_is_the_signals_span_by_span(collector: Collector) -> None:
    load_demo(collector, WRITE_TOKEN, workflows=1500)  # refreshes the rollups once everything is stored
    client, o = collector.client, collector.options
    hours, traces = o.name(rollups.SIGNAL_HOURS), o.name(TRACES)
    place = f"TenantId, {KIND}, {_HOUR}, {attr(A.SITE.key)}, {attr(A.DEPARTMENT.key)}"
    rolled = "TenantId, WorkflowKind, Hour, Site, Department"
    checked = 0
    for name in rollups.QUALITY:
        s = SIGNALS[name]
        assert s.hit is not None
        want = _set(client, f"SELECT {place}, count(), countIf({s.hit}) FROM {traces} WHERE {s.where} GROUP BY {place}")
        got = _set(client, f"SELECT {rolled}, sum(Rows), sum(Hits) FROM {hours} WHERE Signal = {literal(name)} "
                           f"GROUP BY {rolled}")  # fmt: skip
        assert got == want, name
        checked += len(want)
    for signal, where in ((rollups.WORKFLOW, IS_WORKFLOW), (rollups.REWORK, IS_REWORK)):
        want = _set(client, f"SELECT {place}, count() FROM {traces} WHERE {where} GROUP BY {place}")
        got = _set(
            client, f"SELECT {rolled}, sum(Rows) FROM {hours} WHERE Signal = {literal(signal)} GROUP BY {rolled}"
        )
        assert got == want, signal
        checked += len(want)
    rework = f"{attr(A.REWORK_KIND.key)}, {attr(A.EFFORT_ACTOR_ROLE.key)}"
    want = _set(client, f"SELECT {rework}, count(), sum(toFloat64OrZero({attr(A.EFFORT_MINUTES.key)})) "
                        f"FROM {traces} WHERE {IS_REWORK} GROUP BY {rework}")  # fmt: skip
    got = _set(client, f"SELECT Bin, Detail, sum(Rows), sum(Total) FROM {hours} WHERE Signal = 'rework' GROUP BY 1, 2")
    assert got == want
    assert want, "the demo records rework"
    feedback = f"{attr(A.FEEDBACK_CATEGORY.key)}, {attr(A.FEEDBACK_SEVERITY.key)}"
    want = _set(client, f"SELECT {place}, {feedback}, count() FROM {traces} WHERE {IS_FEEDBACK} GROUP BY {place}, "
                        f"{feedback}")  # fmt: skip
    got = _set(client, f"SELECT {rolled}, Bin, Detail, sum(Rows) FROM {hours} WHERE Signal = 'feedback' "
                       f"GROUP BY {rolled}, Bin, Detail")  # fmt: skip
    assert got == want
    assert want, "the demo records feedback"
    for f in FEATURES:
        want = _set(client, f"SELECT {place}, {_SHADOW}, {f.bin} AS bin, count() FROM {traces} WHERE bin != '' "
                            f"GROUP BY {place}, {_SHADOW}, bin")  # fmt: skip
        got = _set(client, f"SELECT {rolled}, Shadow, Bin, sum(Rows) FROM {hours} WHERE Signal = {literal(f.name)} "
                           f"GROUP BY {rolled}, Shadow, Bin")  # fmt: skip
        assert got == want, f.name
        checked += len(want)
    assert checked > 500


def test_the_feedback_rollup_is_each_report_joined_to_its_decision(collector: Collector) -> None:
    load_demo(collector, WRITE_TOKEN, workflows=1500)
    client, o = collector.client, collector.options
    rows = feedback_decisions_sql(o.name(TRACES), o.name(WORKFLOWS))
    key = "TenantId, kind, toStartOfHour(toDateTime(Timestamp, 'UTC')), site, department, category, severity"
    want = _set(client, f"SELECT {key}, model_version, decision, joined, count() FROM ({rows}) "
                        f"GROUP BY {key}, model_version, decision, joined")  # fmt: skip
    rolled = "TenantId, WorkflowKind, Hour, Site, Department, Category, Severity, ModelVersion, Decision, Joined"
    got = _set(client, f"SELECT {rolled}, sum(Reports) FROM {o.name(rollups.FEEDBACK_HOURS)} GROUP BY {rolled}")
    assert got == want
    assert any(r[-2] == 1 for r in want), "the demo's feedback joins its decisions"


def test_the_centile_values_are_the_spans_centiles(collector: Collector) -> None:
    """The rollup's values give each site's 95th centile as `quantile` gives it over the spans (the
    same interpolation, exact: up to 8,192 values the same figure)."""
    load_demo(collector, WRITE_TOKEN, workflows=1500)
    client, o = collector.client, collector.options
    site = attr(A.SITE.key)
    centile = f"{rollups.quantile_of_values(0.95)}({rollups.MEASURED})"
    for name, expr in rollups.CENTILES.items():
        want = _set(client, f"SELECT {site}, count(), quantile(0.95)({expr}) FROM {o.name(TRACES)} "
                            f"WHERE {expr} IS NOT NULL GROUP BY {site}")  # fmt: skip
        got = _set(client, f"SELECT Site, sum(Rows), {centile} FROM {o.name(rollups.SIGNAL_HOURS)} "
                           f"WHERE Signal = {literal(name)} GROUP BY Site")  # fmt: skip
        assert got == want, name
        assert want, f"the demo records {name}"


def test_the_stage_rollup_is_the_stage_spans_hour_by_hour(collector: Collector) -> None:
    load_demo(collector, WRITE_TOKEN, workflows=1500)
    client, o = collector.client, collector.options
    place = "TenantId, WorkflowKind, toStartOfHour(toDateTime(Timestamp, 'UTC')), Site, Department, ModelVersion, "
    place += "RolloutCohort, Stage, QueueName, toUInt8(ifNull(Shadow, 0))"
    rolled = "TenantId, WorkflowKind, Hour, Site, Department, ModelVersion, RolloutCohort, Stage, QueueName, Shadow"
    # the sketch of the spans themselves, as the rollup's `stage_centiles` reads it merged
    sketch = rollups.stage_centiles("DurationMs").replace("quantilesDDMerge", "quantilesDD")
    want = _set(
        client, f"SELECT {place}, count(), {sketch}, max(QueueDepth) FROM {o.name(STAGE_SPANS)} GROUP BY {place}"
    )
    got = _set(client, f"SELECT {rolled}, sum(Spans), {rollups.stage_centiles()}, max(MaxQueueDepth) "
                       f"FROM {o.name(rollups.STAGE_HOURS)} GROUP BY {rolled}")  # fmt: skip
    assert got == want
    assert any(r[8] != "" and r[-1] is not None for r in want), "the demo's queues report their depth"
    # merged over every hour, the same as over the spans at once: the sketch merges exactly, where
    # quantile's sample drifted over a long range
    whole = _set(client, f"SELECT Stage, {sketch} FROM {o.name(STAGE_SPANS)} GROUP BY Stage")
    merged = f"SELECT Stage, {rollups.stage_centiles()} FROM {o.name(rollups.STAGE_HOURS)} GROUP BY Stage"
    assert _set(client, merged) == whole
    # each centile within 1 % of the duration of its rank, the ⌊q·(n−1)⌋th of the stage's spans
    ranked = dict(client.query(f"SELECT Stage, arraySort(groupArray(DurationMs)) FROM {o.name(STAGE_SPANS)} "
                               "GROUP BY Stage").result_rows)  # fmt: skip
    a = rollups.STAGE_SKETCH_ACCURACY
    for stage, centiles in whole:
        durations = ranked[stage]
        for q, got in zip(rollups.STAGE_CENTILES, centiles, strict=True):
            want = durations[int(q * (len(durations) - 1))]
            assert got == pytest.approx(want, rel=a, abs=1e-9), (stage, q, got, want)


def test_the_stage_panels_read_the_unfiltered_projection_unless_a_filter_is_chosen(collector: Collector) -> None:
    """With no site, department, model or cohort chosen, a stage panel reads the rollup's projection
    (one sketch per hour and stage, migration 15) and shows what the table's rows show; with one
    chosen it reads the rows. A tenant's reader, through the read port, gets its own tenant's
    figures from the projection, the other tenant's rows left out."""
    load_demo(collector, OTHER_TOKEN, workflows=300, seed=11)
    load_demo(collector, WRITE_TOKEN, workflows=600)
    client, o = collector.client, collector.options
    span = data_range(client, o.database)
    assert span is not None
    stage_hours = f"{identifier(o.database)}.{identifier(rollups.STAGE_HOURS)}"
    assert client.command(f"SELECT uniqExact(TenantId) FROM {stage_hours}") == 2
    sketch = rollups.stage_centiles()
    queries = [q for q in panel_queries(build_all(o.database)) if stage_hours in q.sql and sketch in q.sql]
    assert len(queries) == 3, [q.panel for q in queries]
    site = client.command(f"SELECT any(Site) FROM {stage_hours} WHERE Site != ''")
    assert collector.admin is not None
    reader = clickhouse_connect.get_client(
        host="127.0.0.1", port=collector.admin.port, username="reader", password=READ_TOKEN, database=o.database
    )
    tenant = "st-marys"  # READ_TOKEN's
    for q in queries:
        for chosen in ({}, {"site": [site]}):
            sql = expand(q.sql, panel_range(q.grid, q.variables, TimeRange(*span, variables=chosen)))
            plan = "\n".join(r[0] for r in client.query(f"EXPLAIN {sql}").result_rows)
            assert ("ReadFromMergeTree (unfiltered)" in plan) == (not chosen), (q.panel, chosen, plan)
            rows = client.query(sql).result_rows
            assert rows, (q.panel, chosen)
            assert _same(rows, client.query(sql, settings={"optimize_use_projections": 0}).result_rows), q.panel
        # the tenant's reader, All selected: the projection, filtered to its tenant by the read port
        whole = panel_range(q.grid, q.variables, TimeRange(*span))
        own = panel_range(q.grid, q.variables, TimeRange(*span, variables={"tenant": [tenant]}))
        want = client.query(expand(q.sql, own), settings={"optimize_use_projections": 0}).result_rows
        got = reader.query(expand(q.sql, whole)).result_rows
        assert _same(got, want), q.panel
        assert not _same(got, client.query(expand(q.sql, whole)).result_rows), "the other tenant's spans differ"
    reader.close()


def _same(a: list[Any], b: list[Any]) -> bool:
    """The same rows, in any order (a panel orders by time only)."""

    return sorted(map(repr, map(_row, a))) == sorted(map(repr, map(_row, b)))


def test_the_template_variables_list_the_workflows_values(collector: Collector) -> None:
    load_demo(collector, WRITE_TOKEN, workflows=600)
    client, o = collector.client, collector.options
    start, end = client.query(f"SELECT min(StartTime), max(StartTime) FROM {o.name(WORKFLOWS)}").result_rows[0]
    tr = TimeRange(start.replace(tzinfo=UTC), end.replace(tzinfo=UTC) + timedelta(minutes=1))
    for v in variables(o.database):
        column = next(c for name, _, c in FILTERS if name == v.name)
        want = [r[0] for r in client.query(f"SELECT DISTINCT {column} FROM {o.name(WORKFLOWS)} WHERE {column} != '' "
                                           "ORDER BY 1").result_rows]  # fmt: skip
        assert [r[0] for r in client.query(expand(v.sql, tr)).result_rows] == want, v.name


def test_the_service_rollup_is_each_services_spans_and_last_span(collector: Collector) -> None:
    load_demo(collector, WRITE_TOKEN, workflows=600)
    client, o = collector.client, collector.options
    key = "TenantId, ServiceName, toStartOfHour(toDateTime(Timestamp, 'UTC'))"
    want = _set(client, f"SELECT {key}, count(), max(Timestamp) FROM {o.name(TRACES)} GROUP BY {key}")
    got = _set(client, f"SELECT TenantId, ServiceName, Hour, sum(Spans), max(LastSpan) "
                       f"FROM {o.name(rollups.SERVICE_HOURS)} GROUP BY TenantId, ServiceName, Hour")  # fmt: skip
    assert got == want
    assert want, "the demo hospital sends spans"
    # the health dashboard's services table reads it: each service's spans and its latest one
    (panel,) = [p for p in build_all(o.database)["health"]["panels"] if p.get("title", "").startswith("Services and")]
    first, last = client.query(f"SELECT min(Timestamp), max(Timestamp) FROM {o.name(TRACES)}").result_rows[0]
    tr = TimeRange(first.replace(tzinfo=UTC), last.replace(tzinfo=UTC) + timedelta(minutes=1))
    names = tuple(v["name"] for v in build_all(o.database)["health"]["templating"]["list"])
    rows = client.query(expand(panel["targets"][0]["rawSql"], panel_range(panel, names, tr))).named_results()
    shown = {(r["tenant"], r["service"]): (r["spans"], r["last_span"]) for r in rows}
    raw = f"SELECT TenantId, ServiceName, count(), max(Timestamp) FROM {o.name(TRACES)} GROUP BY TenantId, ServiceName"
    assert shown == {(t, s): (n, at) for t, s, n, at in client.query(raw).result_rows}


def test_the_time_to_schedule_panel_is_the_workflows_median_lead_time_hour_by_hour(collector: Collector) -> None:
    load_demo(collector, WRITE_TOKEN, workflows=1500)
    client, o = collector.client, collector.options
    board = build_all(o.database)["operations"]
    [panel] = [p for p in board["panels"] if p.get("title") == "Time to schedule p50 (days)"]
    start, end = client.query(f"SELECT min(StartTime), max(StartTime) FROM {o.name(WORKFLOWS)}").result_rows[0]
    names = tuple(v["name"] for v in board["templating"]["list"])
    tr = panel_range(panel, names, TimeRange(start.replace(tzinfo=UTC), end.replace(tzinfo=UTC) + timedelta(hours=1)))
    assert tr.interval_ms == 3_600_000, "an hour a point, as the rollup holds it"
    got = _set(client, expand(panel["targets"][0]["rawSql"], tr))
    want = _set(client, f"SELECT toStartOfHour(toDateTime(StartTime, 'UTC')) AS time, quantile(0.5)(LeadTimeDays) "
                        f"FROM {o.name(WORKFLOWS)} FINAL WHERE WorkflowKind = 'scheduling' "
                        "AND LeadTimeDays IS NOT NULL GROUP BY time")  # fmt: skip
    assert got == want
    assert len(want) > 3, "the demo books appointments every hour"
    # and the latest start each rollup row keeps (the flags panel's "last evaluated")
    key = "TenantId, WorkflowKind, FlagKey, FlagVariant"
    want_last = _set(client, f"SELECT {key}, max(StartTime) FROM {o.name(WORKFLOWS)} FINAL GROUP BY {key}")
    got_last = _set(client, f"SELECT {key}, max({rollups.LAST_START}) FROM {o.name(rollups.WORKFLOW_HOURS)} "
                            f"GROUP BY {key}")  # fmt: skip
    assert got_last == want_last
    assert any(r[2] != "" for r in want_last), "the demo's canary is behind a flag"


def test_the_truth_rollup_is_the_workflows_late_outcomes_by_hour_of_arrival(collector: Collector) -> None:
    load_demo(collector, WRITE_TOKEN, workflows=1500)
    client, o = collector.client, collector.options
    hour = "toStartOfHour(toDateTime(TruthTime, 'UTC'))"
    want = _set(client, f"SELECT TenantId, WorkflowKind, {hour}, toUInt8(Spans > 0), count() "
                        f"FROM {o.name(WORKFLOWS)} FINAL WHERE TruthTime IS NOT NULL "
                        f"GROUP BY TenantId, WorkflowKind, {hour}, Spans > 0")  # fmt: skip
    got = _set(client, f"SELECT TenantId, WorkflowKind, Hour, Joined, sum(Outcomes) FROM {o.name(rollups.TRUTH_HOURS)} "
                       "GROUP BY TenantId, WorkflowKind, Hour, Joined")  # fmt: skip
    assert got == want
    assert len(want) > 10, "the demo's truth arrives over days"
    # a window counts the truth that arrived in it, whenever its workflow started
    [(start, arrived)] = client.query(
        f"SELECT StartTime, TruthTime FROM {o.name(WORKFLOWS)} FINAL WHERE TruthTime IS NOT NULL "
        "ORDER BY dateDiff('second', StartTime, TruthTime) DESC LIMIT 1"
    ).result_rows
    since = f"toDateTime64({literal(arrived.strftime('%Y-%m-%d %H:%M:%S.%f'))}, 9, 'UTC')"
    assert start < arrived
    hour = arrived.replace(minute=0, second=0, microsecond=0)
    window = _set(client, rollups.truth_refresh_select(o.name(WORKFLOWS), since))
    assert all(r[2] >= hour for r in window)
    assert {r for r in window if r[2] > hour} == {r for r in want if r[2] > hour}
    assert any(r[2] == hour for r in window), "the truth of a workflow that started long before the window"
