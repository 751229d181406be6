"""Each rule as one ClickHouse query over the window ending at `now`, built from the indicators the
dashboards use. Every query returns rows of `COLUMNS`: one alert instance per row.

- `tenant`, `kind`, `cohort`, `version`, `grp`: the instance (`cohort` and `version` are the rollout
  cohort and model version of a disparity rule's stratum, `grp` its group or an sdk rule's service;
  empty otherwise);
- `value`: the figure (a rate, a quantile, a ratio) and `n` its sample;
- `x1`, `n1`, `x2`, `n2`: a rate's hits and rows (the group, the last window or the canary; then the
  reference, the trailing window or the baseline), what the test is computed from;
- `lo`, `hi`: the test's interval (NULL without a test);
- `decide`: what is compared with the threshold (or band), here and in Grafana alike: the value
  without a test; a threshold rule's interval bound on the threshold's side; for a ratio, the value
  when the interval excludes 1 on the harmful side, else 1 (no difference)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from clinotel.alerts.rules import Kind, Rule, Test
from clinotel.alerts.worth_queries import drift_rule_sql, signal_rule_sql
from clinotel.model import tables
from clinotel.model.collector_metrics import METRICS
from clinotel.model.indicators import INDICATORS, STRATUM, Indicator, reference_group
from clinotel.model.signals import SIGNALS
from clinotel.model.sql import identifier, literal
from clinotel.model.stats import (
    filled_ratio_sql,
    kill_sequence_columns,
    proportion_grid_sql,
    ratio_interval_columns,
    stacked,
    wilson_sql,
)
from clinotel.model.workflow_signals import workflow_rate, workflow_signal_sql
from clinotel.semconv import RolloutCohort

__all__ = ["COLUMNS", "MAX_INSTANCES_PER_TENANT", "Bounds", "Observation", "observe", "rule_sql"]

MAX_INSTANCES_PER_TENANT: Final = 200
"""The most services one `sdk` rule evaluates for one tenant in a pass, those with the most export
batches first: a tenant's spans name its services at will, and 5,000 services of one span each (an
attack review) made 5,000 firing alerts, a pass of a minute in which no other tenant's rule ran,
and a 2.6 MB ticket. Only `sdk` rules: the others' instances are workflow kinds, cohorts and a
registered dimension's groups, and a cap ordered by sample left out the canary and the smallest
groups first, which the rollout gate then passed unjudged (a review)."""

COLUMNS: Final = ("tenant", "kind", "cohort", "version", "grp", "value", "n", "x1", "n1", "x2", "n2", "lo", "hi",
                  "decide")  # fmt: skip


@dataclass(frozen=True)
class Observation:
    tenant: str
    kind: str
    group: str
    value: float | None
    sample: int
    decide: float | None = None
    """What the rule compares with its threshold (`value` without a test)."""
    low: float | None = None
    high: float | None = None
    counts: tuple[int, int, int, int] = (0, 0, 0, 0)
    """(x1, n1, x2, n2)."""
    cohort: str = ""
    version: str = ""


def _at(t: datetime) -> str:
    return f"toDateTime64({literal(t.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S.%f'))}, 6, 'UTC')"


@dataclass(frozen=True)
class Bounds:
    """Where a rule's window ends, as SQL: a fixed instant for the evaluator, or Grafana's
    `$__toTime` for the exported rules, so both evaluate the same rows."""

    end: str

    @classmethod
    def at(cls, now: datetime) -> Bounds:
        return cls(_at(now))

    def between(self, column: str, start_s: int, end_s: int = 0) -> str:
        """`column` in [end - start_s, end - end_s) seconds."""
        lower = f"{column} >= {self.end} - toIntervalSecond({start_s})"
        upper = f"{column} < {self.end}" if end_s == 0 else f"{column} < {self.end} - toIntervalSecond({end_s})"
        return f"{lower} AND {upper}"


def rule_sql(rule: Rule, database: str, now: datetime | Bounds) -> str:
    """The query evaluating `rule` over the window ending at `now`: rows of `COLUMNS`."""
    bounds = now if isinstance(now, Bounds) else Bounds.at(now)
    w = rule.window
    if rule.kind is Kind.COLLECTOR:
        table = f"{identifier(database)}.{identifier(tables.COLLECTOR_METRICS)}"
        aggregate = METRICS[rule.metric].over_rows
        # per collector: two collectors' figures summed, or one stalled beside one that ran,
        # were one alert, and a second stall was merged into the first (an on-call review)
        return _plain(
            f"SELECT '' AS tenant, '' AS kind, Instance AS grp, {aggregate} AS value, count() AS n FROM {table} "
            f"WHERE Metric = {literal(rule.metric)} AND {bounds.between('Timestamp', w)} GROUP BY grp HAVING n > 0"
        )
    if rule.kind is Kind.SDK:
        table = f"{identifier(database)}.{identifier(tables.SDK_TELEMETRY)}"
        column = identifier(tables.SDK_TELEMETRY_COLUMNS[rule.metric])
        return _plain(
            f"SELECT TenantId AS tenant, '' AS kind, ServiceName AS grp, sum({column}) AS value, count() AS n "
            f"FROM {table} WHERE {bounds.between('Timestamp', w)} GROUP BY tenant, grp"
        )
    if rule.kind is Kind.DRIFT:
        return _plain(drift_rule_sql(rule, database, bounds))
    if rule.metric in SIGNALS and rule.kind in (Kind.THRESHOLD, Kind.BASELINE):
        return _plain(signal_rule_sql(rule, database, bounds))
    if rule.metric in SIGNALS:  # a canary or disparity rule: the signal per workflow
        i = workflow_rate(rule.metric)
        table = f"(\n{workflow_signal_sql(rule.metric, database, f'{bounds.end} - toIntervalSecond({w})')}\n)"
    else:
        i = INDICATORS[rule.metric]
        table = f"{identifier(database)}.{identifier(i.table)}{i.final}"
    window = bounds.between(i.time_column, w)
    keys = "TenantId AS tenant, WorkflowKind AS kind"
    rate = i.kind == "rate"

    def counts(also: str | None = None) -> tuple[str, str]:
        return i.counts(also) if rate else ("0", i.conditional(also)[1])

    if rule.kind is Kind.THRESHOLD:
        x, n = counts()
        inner = (
            f"SELECT {keys}, '' AS cohort, '' AS version, '' AS grp, {i.value} AS value, {i.sample} AS n, "
            f"{x} AS x1, {n} AS n1, 0 AS x2, 0 AS n2 FROM {table} WHERE {window} AND ({i.where}) GROUP BY tenant, kind"
        )
    elif rule.kind is Kind.BASELINE:
        assert rule.baseline_window is not None
        b = rule.baseline_window
        earlier = bounds.between(i.time_column, w + b, w)
        now_v, now_n = i.conditional(window)
        base_v, base_n = i.conditional(earlier)
        x1, n1 = counts(window)
        x2, n2 = counts(earlier)
        inner = _compared(
            f"SELECT {keys}, {now_v} AS v1, {base_v} AS v2, {now_n} AS s1, {base_n} AS s2, "
            f"{x1} AS x1, {n1} AS n1, {x2} AS x2, {n2} AS n2 "
            f"FROM {table} WHERE {bounds.between(i.time_column, w + b)} GROUP BY tenant, kind"
        )
    elif rule.kind is Kind.CANARY:
        canary = f"RolloutCohort = {literal(RolloutCohort.CANARY.value)}"
        baseline = f"RolloutCohort = {literal(RolloutCohort.BASELINE.value)}"
        canary_v, canary_n = i.conditional(canary)
        base_v, base_n = i.conditional(baseline)
        x1, n1 = counts(canary)
        x2, n2 = counts(baseline)
        inner = _compared(
            f"SELECT {keys}, {canary_v} AS v1, {base_v} AS v2, {canary_n} AS s1, {base_n} AS s2, "
            f"{x1} AS x1, {n1} AS n1, {x2} AS x2, {n2} AS n2 FROM {table} WHERE {window} GROUP BY tenant, kind"
        )
    else:
        assert rule.kind is Kind.DISPARITY
        assert rule.dimension is not None
        inner = _disparity(rule, i, table, window, counts)
    return _tested(rule, inner)


def _compared(counts: str) -> str:
    """A baseline or canary rule's rows from `counts` (per tenant and kind: the two sides' values
    `v1`, `v2`, samples `s1`, `s2` and the rate's counts): the value their ratio, in a layer of its
    own, so that each side's aggregate is written once, not once per use in the ratio."""
    return (
        f"SELECT tenant, kind, '' AS cohort, '' AS version, '' AS grp, {filled_ratio_sql('v1', 'v2')} AS value, "
        f"least(s1, s2) AS n, x1, n1, x2, n2 FROM (\n{counts}\n)"
    )


def _disparity(rule: Rule, i: Indicator, table: str, window: str, counts: Callable[[], tuple[str, str]]) -> str:
    """Each group against its stratum's reference group (the one with the most workflows: the
    dashboards' rule), the reference left out."""
    value, sample = i.conditional()
    x, n = counts()
    stratum = ", ".join(c for c, _ in STRATUM)
    key = "(members, grp)"
    over = f"OVER (PARTITION BY {stratum})"
    return (
        "SELECT TenantId AS tenant, WorkflowKind AS kind, toString(RolloutCohort) AS cohort, "
        "toString(ModelVersion) AS version, grp, "
        f"{filled_ratio_sql('v', 'ref_v')} AS value, least(s, ref_s) AS n, x AS x1, c AS n1, ref_x AS x2, ref_c AS n2 "
        "FROM (\n"
        f"  SELECT *, {reference_group('grp', 'members', stratum)} AS ref, argMax(v, {key}) {over} AS ref_v,\n"
        f"    argMax(s, {key}) {over} AS ref_s, argMax(x, {key}) {over} AS ref_x, argMax(c, {key}) {over} AS ref_c\n"
        f"  FROM (SELECT {stratum}, toString({rule.dimension}) AS grp, count() AS members, {value} AS v, "
        f"{sample} AS s, {x} AS x, {n} AS c FROM {table}\n"
        f"        WHERE {window} AND {rule.dimension} != '' GROUP BY {stratum}, grp)\n) WHERE grp != ref"
    )


def _plain(inner: str) -> str:
    """A rule without a test (collector, sdk, drift, signal): no cohort, no counts."""
    return (
        "SELECT tenant, kind, '' AS cohort, '' AS version, grp, value, n, 0 AS x1, 0 AS n1, 0 AS x2, 0 AS n2, "
        "CAST(NULL, 'Nullable(Float64)') AS lo, CAST(NULL, 'Nullable(Float64)') AS hi, value AS decide\n"
        f"FROM (\n{inner}\n)"
    )


def _tested(rule: Rule, inner: str) -> str:
    """`inner`'s rows with the test's interval and the figure the rule decides on."""
    test = rule.decided_by
    nothing = "CAST(NULL, 'Nullable(Float64)')"
    if test is Test.NONE:
        lo, hi, decide = nothing, nothing, "toNullable(toFloat64(value))"
    else:
        if rule.kind is Kind.THRESHOLD:
            lo, hi = wilson_sql("x1", "n1", rule.confidence)
        elif test is Test.SEQUENTIAL:
            # the grid and each part of the interval computed once, in a layer of its own: written
            # out in one expression, planning it took most of the query's time
            tau = abs(math.log(rule.threshold))
            layers = kill_sequence_columns("ks", "x1", "n1", "x2", "n2", rule.confidence, tau, "pgrid")
            inner = stacked(f"SELECT *, {proportion_grid_sql()} AS pgrid FROM (\n{inner}\n)", layers)
            lo, hi = "ks_low", "ks_high"
        else:
            inner = stacked(inner, ratio_interval_columns("ri", "x1", "n1", "x2", "n2", rule.confidence))
            lo, hi = "ri_low", "ri_high"
        decide = _decision(rule)
    return (
        f"SELECT tenant, kind, cohort, version, grp, value, n, x1, n1, x2, n2, {lo} AS lo, {hi} AS hi, "
        f"{decide} AS decide\nFROM (\n{inner}\n)"
    )


def _decision(rule: Rule) -> str:
    """The figure a tested rule decides on, from `value`, `lo` and `hi`."""
    if rule.kind is Kind.THRESHOLD:
        return "lo" if rule.harm_is_higher else "hi"
    if rule.kind is Kind.DISPARITY and rule.page_reference_worse:
        significant = "(lo > 1 OR hi < 1)"
    else:
        significant = "lo > 1" if rule.harm_is_higher else "hi < 1"
    return f"if(value IS NULL, NULL, if(ifNull({significant}, 0), toFloat64(value), 1.))"


def observe(client: object, rule: Rule, database: str, now: datetime, *, capped: bool = False) -> list[Observation]:
    """Run the rule's query; raises what the database raised. `capped`: at most
    `MAX_INSTANCES_PER_TENANT` instances of a tenant, the largest samples first, and one more (the
    evaluator's paging of an `sdk` rule's services; the rollout gate judges every one)."""
    sql = rule_sql(rule, database, now)
    if capped:  # one row past the cap tells the evaluator that a tenant had more
        sql = f"SELECT * FROM (\n{sql}\n)\nORDER BY tenant, n DESC, grp LIMIT {MAX_INSTANCES_PER_TENANT + 1} BY tenant"
    rows = client.query(sql).result_rows  # type: ignore[attr-defined]
    return [
        Observation(
            str(t), str(k), str(g), _float(v), int(n or 0), _float(d), _float(lo), _float(hi),
            (int(x1 or 0), int(n1 or 0), int(x2 or 0), int(n2 or 0)), str(c), str(ver),
        )
        for t, k, c, ver, g, v, n, x1, n1, x2, n2, lo, hi, d in rows
    ]  # fmt: skip


def _float(v: object) -> float | None:
    if v is None:
        return None
    f = float(v)  # type: ignore[arg-type]
    return None if math.isnan(f) else f
