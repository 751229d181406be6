"""Each rule as one ClickHouse query over the window ending at `now`, built from the indicators the
dashboards use. Every query returns rows of (TenantId, WorkflowKind, grp, value, sample): one
alert instance per row; `grp` is the cohort group of a disparity rule and empty otherwise."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from clinotel.alerts.rules import Kind, Rule
from clinotel.alerts.worth_queries import drift_rule_sql, signal_rule_sql
from clinotel.model import tables
from clinotel.model.collector_metrics import METRICS
from clinotel.model.indicators import INDICATORS
from clinotel.model.signals import SIGNALS
from clinotel.model.sql import identifier, literal
from clinotel.semconv import RolloutCohort

__all__ = ["Bounds", "Observation", "observe", "rule_sql"]


@dataclass(frozen=True)
class Observation:
    tenant: str
    kind: str
    group: str
    value: float | None
    sample: int


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
    """The query evaluating `rule` over the window ending at `now`: rows of
    (tenant, kind, grp, value, n)."""
    bounds = now if isinstance(now, Bounds) else Bounds.at(now)
    w = rule.window
    if rule.kind is Kind.COLLECTOR:
        table = f"{identifier(database)}.{identifier(tables.COLLECTOR_METRICS)}"
        aggregate = METRICS[rule.metric].over_rows
        return (
            f"SELECT '' AS tenant, '' AS kind, '' AS grp, {aggregate} AS value, count() AS n FROM {table} "
            f"WHERE Metric = {literal(rule.metric)} AND {bounds.between('Timestamp', w)} HAVING n > 0"
        )
    if rule.kind is Kind.SDK:
        table = f"{identifier(database)}.{identifier(tables.SDK_TELEMETRY)}"
        column = identifier(tables.SDK_TELEMETRY_COLUMNS[rule.metric])
        return (
            f"SELECT TenantId AS tenant, '' AS kind, ServiceName AS grp, sum({column}) AS value, count() AS n "
            f"FROM {table} WHERE {bounds.between('Timestamp', w)} GROUP BY tenant, grp"
        )
    if rule.kind is Kind.DRIFT:
        return drift_rule_sql(rule, database, bounds)
    if rule.metric in SIGNALS:
        return signal_rule_sql(rule, database, bounds)
    i = INDICATORS[rule.metric]
    table = f"{identifier(database)}.{identifier(i.table)}{i.final}"
    window = bounds.between(i.time_column, w)
    keys = "TenantId AS tenant, WorkflowKind AS kind"
    if rule.kind is Kind.THRESHOLD:
        return (
            f"SELECT {keys}, '' AS grp, {i.value} AS value, {i.sample} AS n FROM {table} "
            f"WHERE {window} AND ({i.where}) GROUP BY tenant, kind"
        )
    if rule.kind is Kind.BASELINE:
        assert rule.baseline_window is not None
        b = rule.baseline_window
        now_v, now_n = i.conditional(window)
        base_v, base_n = i.conditional(bounds.between(i.time_column, w + b, w))
        return (
            f"SELECT {keys}, '' AS grp, ({now_v}) / nullIf({base_v}, 0) AS value, least({now_n}, {base_n}) AS n "
            f"FROM {table} WHERE {bounds.between(i.time_column, w + b)} GROUP BY tenant, kind"
        )
    if rule.kind is Kind.CANARY:
        canary_v, canary_n = i.conditional(f"RolloutCohort = {literal(RolloutCohort.CANARY.value)}")
        base_v, base_n = i.conditional(f"RolloutCohort = {literal(RolloutCohort.BASELINE.value)}")
        return (
            f"SELECT {keys}, '' AS grp, ({canary_v}) / nullIf({base_v}, 0) AS value, "
            f"least({canary_n}, {base_n}) AS n FROM {table} WHERE {window} GROUP BY tenant, kind"
        )
    assert rule.kind is Kind.DISPARITY
    assert rule.dimension is not None
    value, sample = i.conditional()
    return (
        "SELECT tenant, kind, grp, if(ref_value > 0, v / ref_value, NULL) AS value, least(n, ref_n) AS n FROM (\n"
        "  SELECT *, argMax(v, n) OVER w AS ref_value, argMax(n, n) OVER w AS ref_n, argMax(grp, n) OVER w AS ref\n"
        f"  FROM (SELECT {keys}, toString({rule.dimension}) AS grp, {value} AS v, {sample} AS n FROM {table}\n"
        f"        WHERE {window} AND {rule.dimension} != '' GROUP BY tenant, kind, grp)\n"
        "  WINDOW w AS (PARTITION BY tenant, kind)\n) WHERE grp != ref"
    )


def observe(client: object, rule: Rule, database: str, now: datetime) -> list[Observation]:
    """Run the rule's query; raises what the database raised."""
    rows = client.query(rule_sql(rule, database, now)).result_rows  # type: ignore[attr-defined]
    return [Observation(str(t), str(k), str(g), None if v is None else float(v), int(n or 0)) for t, k, g, v, n in rows]
