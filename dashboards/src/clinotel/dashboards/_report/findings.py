"""The report's own queries for its first page, over the indicators as the model defines them
(their `where`, `hit`, `value` and `sample`; nothing is redefined here):

- **disparities**: each cohort group's rate against its reference group's, never pooled across
  tenants, workflow kinds or rollout cohorts; the reference is the largest group with enough rows
  for that rate; a Wilson interval for each rate and a MOVER-R interval for their ratio
  (`stats`), computed here because the model does not give intervals yet;
- **kill criteria**: the canary against the baseline over the hours the canary ran, per criterion
  of the rollout dashboard, with an interval for rates;
- **changes**: when a rollout mode, model version, flag variant or rollout cohort began or
  stopped being seen, per tenant and workflow kind;
- **activity**: the stretch of the range where workflows ran (their stages, not the late outcomes
  that arrive days after) and the collectors reported, which every chart's time axis covers;
- **before and during**: an alert's indicator over the window the rule read when it fired, and
  over the same length just before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from clinotel.dashboards._report.stats import Interval, ratio_interval
from clinotel.dashboards.fairness import FAIR_BAND
from clinotel.dashboards.macros import TimeRange
from clinotel.dashboards.rollout import KILL_CRITERIA
from clinotel.model import clinical, tables
from clinotel.model.indicators import COHORT_DIMENSIONS, INDICATORS, Indicator
from clinotel.model.sql import identifier, literal
from clinotel.semconv import RolloutCohort, Stage

__all__ = [
    "CHANGE_COLUMNS",
    "DISPARITY_MEASURES",
    "Change",
    "Criterion",
    "Disparity",
    "activity",
    "before_and_during",
    "changes",
    "disparities",
    "kill_criteria",
]

DISPARITY_MEASURES: Final = tuple(
    name for name in ("under_triage_rate", "high_risk_miss_rate", "override_rate", "high_priority_rate")
    if INDICATORS[name].kind == "rate"
)  # fmt: skip
"""The rates compared across cohort groups (a quantile has no group ratio interval here)."""
CHANGE_COLUMNS: Final = ("RolloutMode", "ModelVersion", "FlagVariant", "RolloutCohort")
"""Workflow columns whose values beginning or ending are changes worth showing beside incidents."""


def _at(t: datetime) -> str:
    return f"toDateTime64({t.astimezone(UTC).timestamp():.3f}, 3)"


def _range(tr: TimeRange, column: str = "StartTime") -> str:
    return f"{column} >= {_at(tr.start)} AND {column} < {_at(tr.end)}"


def _workflows(database: str) -> str:
    return f"{identifier(database)}.{identifier(clinical.WORKFLOWS)} FINAL"


@dataclass(frozen=True)
class Disparity:
    """One group's rate against its reference group's, within one tenant, kind and cohort."""

    tenant: str
    kind: str
    cohort: str
    dimension: str
    group: str
    reference: str
    measure: str
    n: int
    hits: int
    ref_n: int
    ref_hits: int
    ratio: Interval | None
    band: tuple[float, float] = FAIR_BAND

    @property
    def indicator(self) -> Indicator:
        return INDICATORS[self.measure]

    @property
    def harm_above(self) -> bool:
        """Whether a ratio above 1 means the group is worse off."""
        return self.indicator.higher_is_worse

    @property
    def verdict(self) -> str:
        """`worse` (the interval wholly outside the band on the side of harm), `maybe worse`
        (the estimate outside, the interval not), `reference worse` (outside on the other
        side), `within`, or `no ratio` (the reference rate is 0)."""
        if self.ratio is None:
            return "no ratio"
        low, high = self.band
        r = self.ratio
        above, below = r.estimate > high, r.estimate < low
        harm, benefit = (above, below) if self.harm_above else (below, above)
        if harm:
            clear = r.low > high if self.harm_above else r.high < low
            return "worse" if clear else "maybe worse"
        return "reference worse" if benefit else "within"

    @property
    def severity(self) -> float:
        """How far on the side of harm the interval's near end lies (for ranking; larger is worse)."""
        if self.ratio is None:
            return -1.0
        near = self.ratio.low if self.harm_above else 1 / self.ratio.high if self.ratio.high > 0 else 0.0
        point = self.ratio.estimate if self.harm_above else 1 / self.ratio.estimate if self.ratio.estimate else 0.0
        return near + point / 1000


def _disparity_sql(database: str, tr: TimeRange) -> str:
    columns = []
    for k, name in enumerate(DISPARITY_MEASURES):
        i = INDICATORS[name]
        columns += [f"countIf({i.where}) AS n{k}", f"countIf(({i.hit}) AND ({i.where})) AS x{k}"]
    which = ", ".join(f"toString({dim}) != '', {literal(dim)}" for dim in COHORT_DIMENSIONS)
    value = ", ".join(f"toString({dim})" for dim in COHORT_DIMENSIONS)
    sets = ", ".join(f"(TenantId, WorkflowKind, RolloutCohort, {dim})" for dim in COHORT_DIMENSIONS)
    return (
        f"SELECT TenantId, WorkflowKind, RolloutCohort, multiIf({which}, '') AS dimension, concat({value}) AS grp, "
        f"{', '.join(columns)}\nFROM {_workflows(database)}\nWHERE {_range(tr)}\n"
        f"GROUP BY GROUPING SETS ({sets})\nHAVING grp != ''"
    )


def disparities(client: Any, database: str, tr: TimeRange, min_sample: dict[str, int] | None = None) -> list[Disparity]:
    """Every eligible group against its reference, for every measure; most harmful first.
    `min_sample`: per measure, the rows a group needs (default: the indicator's)."""
    rows = client.query(_disparity_sql(database, tr)).result_rows
    # (tenant, kind, cohort, dimension) -> group -> [n0, x0, n1, x1, ...]
    found: dict[tuple[str, str, str, str], dict[str, list[int]]] = {}
    for tenant, kind, cohort, dimension, grp, *counts in rows:
        found.setdefault((str(tenant), str(kind), str(cohort), str(dimension)), {})[str(grp)] = [int(c) for c in counts]
    out: list[Disparity] = []
    for (tenant, kind, cohort, dimension), groups in found.items():
        for k, name in enumerate(DISPARITY_MEASURES):
            least = (min_sample or {}).get(name, INDICATORS[name].min_sample)
            eligible = {g: (c[2 * k], c[2 * k + 1]) for g, c in groups.items() if c[2 * k] >= least}
            if len(eligible) < 2:
                continue
            reference = max(eligible, key=lambda g: (eligible[g][0], g))
            ref_n, ref_x = eligible[reference]
            for g, (n, x) in eligible.items():
                if g == reference:
                    continue
                out.append(Disparity(tenant, kind, cohort, dimension, g, reference, name, n, x, ref_n, ref_x,
                                     ratio_interval(x, n, ref_x, ref_n)))  # fmt: skip
    out.sort(key=lambda d: d.severity, reverse=True)
    return out


@dataclass(frozen=True)
class Criterion:
    """One kill criterion in one tenant and kind: the canary against the baseline."""

    tenant: str
    kind: str
    measure: str
    limit: float
    since: datetime
    until: datetime
    canary: float | None
    baseline: float | None
    n_canary: int
    n_baseline: int
    ratio: Interval | None
    """With an interval for a rate; a quantile's ratio has low = high = the estimate."""
    min_sample: int

    @property
    def verdict(self) -> str:
        if self.n_canary < self.min_sample or self.n_baseline < self.min_sample:
            return "too few"
        if self.ratio is None:
            return "no ratio"
        if self.ratio.estimate > self.limit:
            return "stop the canary"
        return "within the limit"

    @property
    def has_interval(self) -> bool:
        return INDICATORS[self.measure].kind == "rate"


def kill_criteria(
    client: Any, database: str, tr: TimeRange, min_sample: dict[str, int] | None = None
) -> list[Criterion]:
    """Each kill criterion wherever a canary ran, canary against baseline over the canary's hours."""
    workflows = _workflows(database)
    canary, baseline = literal(RolloutCohort.CANARY.value), literal(RolloutCohort.BASELINE.value)
    windows = client.query(
        f"SELECT TenantId, WorkflowKind, min(StartTime), max(StartTime) FROM {workflows} "
        f"WHERE {_range(tr)} AND RolloutCohort = {canary} GROUP BY TenantId, WorkflowKind ORDER BY 1, 2"
    ).result_rows
    out: list[Criterion] = []
    for tenant, kind, first, last in windows:
        since, until = first.replace(tzinfo=UTC), last.replace(tzinfo=UTC)
        columns = []
        for k, (name, _) in enumerate(KILL_CRITERIA):
            i = INDICATORS[name]
            value, sample = i.conditional()
            hits = f"countIf(({i.hit}) AND ({i.where}))" if i.kind == "rate" else "0"
            columns += [f"{value} AS v{k}", f"{sample} AS n{k}", f"{hits} AS x{k}"]
        rows = {
            str(row[0]): row[1:]
            for row in client.query(
                f"SELECT RolloutCohort, {', '.join(columns)} FROM {workflows} "
                f"WHERE TenantId = {literal(str(tenant))} AND WorkflowKind = {literal(str(kind))} "
                f"AND StartTime >= {_at(since)} AND StartTime <= {_at(until)} "
                f"AND RolloutCohort IN ({canary}, {baseline}) "
                "GROUP BY RolloutCohort"
            ).result_rows
        }
        c_row, b_row = rows.get(RolloutCohort.CANARY.value), rows.get(RolloutCohort.BASELINE.value)
        for k, (name, limit) in enumerate(KILL_CRITERIA):
            i = INDICATORS[name]
            cv, cn, cx = (c_row[3 * k], int(c_row[3 * k + 1]), int(c_row[3 * k + 2])) if c_row else (None, 0, 0)
            bv, bn, bx = (b_row[3 * k], int(b_row[3 * k + 1]), int(b_row[3 * k + 2])) if b_row else (None, 0, 0)
            if i.kind == "rate":
                ratio = ratio_interval(cx, cn, bx, bn) if cn and bn else None
            elif cv is not None and bv:
                ratio = Interval(float(cv) / float(bv), float(cv) / float(bv), float(cv) / float(bv))
            else:
                ratio = None
            least = (min_sample or {}).get(name, i.min_sample)
            out.append(Criterion(str(tenant), str(kind), name, limit, since, until,
                                 None if cv is None else float(cv), None if bv is None else float(bv),
                                 cn, bn, ratio, least))  # fmt: skip
    return out


@dataclass(frozen=True)
class Change:
    """A value of a rollout column that began (or stopped) being seen inside the range."""

    tenant: str
    kind: str
    column: str
    value: str
    at: datetime
    began: bool


def changes(client: Any, database: str, tr: TimeRange) -> list[Change]:
    """Values of `CHANGE_COLUMNS` first seen after, or last seen before, the kind's own first and
    last workflow (by more than 2 % of the range): rollouts begun and ended."""
    # the pair ('', '*') stands for every workflow: the kind's own first and last, in the same scan
    pairs = ", ".join(["('', '*')", *(f"({literal(c)}, toString({c}))" for c in CHANGE_COLUMNS)])
    rows = client.query(
        f"SELECT TenantId, WorkflowKind, c.1, c.2, min(StartTime), max(StartTime) FROM {_workflows(database)} "
        f"ARRAY JOIN [{pairs}] AS c WHERE {_range(tr)} AND c.2 != '' GROUP BY TenantId, WorkflowKind, c.1, c.2"
    ).result_rows
    spans = {(str(t), str(k)): (a.replace(tzinfo=UTC), b.replace(tzinfo=UTC)) for t, k, c, _, a, b in rows if c == ""}
    margin = max(timedelta(minutes=10), (tr.end - tr.start) * 0.02)
    out = []
    for tenant, kind, column, value, first_seen, last_seen in rows:
        if column == "":
            continue
        first, last = first_seen.replace(tzinfo=UTC), last_seen.replace(tzinfo=UTC)
        begin, end = spans.get((str(tenant), str(kind)), (first, last))
        if first - begin > margin:
            out.append(Change(str(tenant), str(kind), str(column), str(value), first, True))
        if end - last > margin:
            out.append(Change(str(tenant), str(kind), str(column), str(value), last, False))
    out.sort(key=lambda c: (c.at, c.kind, c.column))
    return out


def before_and_during(
    client: Any, database: str, measure: str, labels: dict[str, str], fired: datetime, window_s: int
) -> tuple[tuple[float | None, int], tuple[float | None, int]]:
    """((value, n) over the window before the one the rule read, (value, n) over the window it
    read when it fired), within the alert's tenant and kind."""
    i = INDICATORS[measure]
    column = i.time_column
    start, mid = fired - timedelta(seconds=2 * window_s), fired - timedelta(seconds=window_s)
    scope = " AND ".join(
        f"{c} = {literal(labels[k])}" for k, c in (("tenant", "TenantId"), ("kind", "WorkflowKind")) if labels.get(k)
    )
    before, n_before = i.conditional(f"{column} >= {_at(start)} AND {column} < {_at(mid)}")
    during, n_during = i.conditional(f"{column} >= {_at(mid)} AND {column} < {_at(fired)}")
    table = f"{identifier(database)}.{identifier(i.table)}{i.final}"
    row = client.query(
        f"SELECT {before}, {n_before}, {during}, {n_during} FROM {table} "
        f"WHERE {column} >= {_at(start)} AND {column} < {_at(fired)}" + (f" AND {scope}" if scope else "")
    ).result_rows[0]
    least = i.min_sample

    def value(v: Any, n: Any) -> tuple[float | None, int]:
        return (None if v is None or int(n) < least else float(v)), int(n)

    return value(row[0], row[1]), value(row[2], row[3])


def activity(client: Any, database: str, tr: TimeRange) -> tuple[datetime, datetime] | None:
    """First and last instant of the workflows' stages (a late outcome is not a stage: it comes
    days later, and the series are drawn by when the workflow started) and of the collectors' and
    SDKs' reports, within `tr`; None when the range holds none."""
    db = identifier(database)
    stage = f"Stage NOT IN ('', {literal(Stage.OUTCOME.value)})"
    parts = [
        f"SELECT min(Timestamp) AS a, max(Timestamp + toIntervalMillisecond(toInt64(DurationMs))) AS b "
        f"FROM {db}.{identifier(clinical.STAGE_SPANS)} WHERE {_range(tr, 'Timestamp')} AND {stage}",
        *(
            f"SELECT min(Timestamp), max(Timestamp) FROM {db}.{identifier(table)} WHERE {_range(tr, 'Timestamp')}"
            for table in (tables.COLLECTOR_METRICS, tables.SDK_TELEMETRY)
        ),
    ]
    rows = client.query(
        f"SELECT min(a), max(b) FROM ({' UNION ALL '.join(parts)}) WHERE a > toDateTime64(0, 3)"
    ).result_rows
    first, last = rows[0] if rows else (None, None)
    if first is None or last is None or first.year < 2000:
        return None
    start = max(first.replace(tzinfo=UTC), tr.start.astimezone(UTC))
    end = min(last.replace(tzinfo=UTC), tr.end.astimezone(UTC))
    return (start, end) if end > start else None
