"""The report's own queries for its first page, over the indicators as the model defines them
(their `where`, `hit`, `value` and `sample`; nothing is redefined here), decided as the tables and
the alerts decide (the tests of `clinotel.model.stats`, the verdicts of the fairness and rollout
dashboards):

- **disparities**: each cohort group's rate against its reference group's within one stratum
  (`STRATUM`: tenant, workflow kind, rollout cohort, model version), never pooled; the reference
  is the model's rule (`REFERENCE_RULE`: the group with the most workflows in the stratum); the
  ratio's MOVER-R Wilson interval and the fairness table's verdict (worse off: outside the band on
  the side of harm and the interval excluding 1 there);
- **kill criteria**: the canary against the baseline per criterion of the rollout dashboard, over
  the report's range with its confidence sequence and status (as the rollout table), and, for
  each canary alert rule, over the rule's own window (ending when it fired, else at the canary's
  last workflow) with the rule's limit, confidence and test, so that page one says what the
  alert said;
- **changes**: when a rollout mode, model version, flag variant or rollout cohort began or
  stopped being seen, per tenant and workflow kind;
- **activity**: the stretch of the range where workflows ran (their stages, not the late outcomes
  that arrive days after) and the collectors reported, which every chart's time axis covers;
- **before and during**: an alert's indicator over the window the rule read when it fired, and
  over the same length just before.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from clinotel.dashboards import fairness, rollout
from clinotel.dashboards._report.alerts import AlertRule, Episode
from clinotel.dashboards.fairness import FAIR_BAND
from clinotel.dashboards.macros import TimeRange
from clinotel.dashboards.rollout import KILL_CRITERIA
from clinotel.model import clinical, tables
from clinotel.model.indicators import COHORT_DIMENSIONS, INDICATORS, STRATUM, Indicator
from clinotel.model.sql import identifier, literal
from clinotel.model.stats import Interval, filled_ratio, kill_sequence, ratio_interval
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
WHOLE_RANGE: Final = "range"
"""A criterion over the report's range (the rollout dashboard's table); else over a rule's window."""


def _at(t: datetime) -> str:
    return f"toDateTime64({t.astimezone(UTC).timestamp():.3f}, 3)"


def _range(tr: TimeRange, column: str = "StartTime") -> str:
    return f"{column} >= {_at(tr.start)} AND {column} < {_at(tr.end)}"


def _workflows(database: str) -> str:
    return f"{identifier(database)}.{identifier(clinical.WORKFLOWS)} FINAL"


@dataclass(frozen=True)
class Disparity:
    """One group's rate against its reference group's, within one stratum (tenant, kind, rollout
    cohort, model version)."""

    tenant: str
    kind: str
    cohort: str
    version: str
    dimension: str
    group: str
    reference: str
    measure: str
    n: int
    hits: int
    ref_n: int
    ref_hits: int
    interval: Interval | None
    """The ratio's MOVER-R Wilson interval at `confidence`."""
    least: int = fairness.MIN_GROUP
    band: tuple[float, float] = FAIR_BAND
    confidence: float = fairness.CONFIDENCE

    @property
    def indicator(self) -> Indicator:
        return INDICATORS[self.measure]

    @property
    def harm_above(self) -> bool:
        """Whether a ratio above 1 means the group is worse off."""
        return self.indicator.higher_is_worse

    @property
    def rate(self) -> float | None:
        return self.hits / self.n if self.n else None

    @property
    def ref_rate(self) -> float | None:
        return self.ref_hits / self.ref_n if self.ref_n else None

    @property
    def estimate(self) -> float | None:
        """group rate ÷ reference rate, filled where the reference's is 0 (`stats.filled_ratio`);
        None when either has no rows."""
        if not self.n or not self.ref_n:
            return None
        return filled_ratio(self.hits / self.n, self.ref_hits / self.ref_n)

    @property
    def verdict(self) -> str:
        """The fairness table's verdict (`clinotel.dashboards.fairness`), by the same rule."""
        if self.n < self.least:
            return fairness.TOO_FEW
        d = self.estimate
        if self.ref_n < self.least or d is None:
            return fairness.REFERENCE_TOO_FEW
        low, high = self.band
        if low <= d <= high:
            return fairness.WITHIN
        harmful = d > high if self.harm_above else d < low
        i = self.interval
        if i is not None and harmful and i.excludes_one(self.harm_above):
            return fairness.WORSE_OFF
        if i is not None and not harmful and i.excludes_one(not self.harm_above):
            return fairness.REFERENCE_WORSE_OFF
        return fairness.NOT_SIGNIFICANT

    @property
    def harmful(self) -> bool:
        """Outside the band on the side of harm (significant or not)."""
        d = self.estimate
        if d is None or self.verdict in (fairness.TOO_FEW, fairness.REFERENCE_TOO_FEW):
            return False
        return d > self.band[1] if self.harm_above else d < self.band[0]

    @property
    def severity(self) -> float:
        """For ranking, most harmful first: worse off, then outside on the side of harm, by how far
        the interval's near end lies on that side; what cannot be compared last."""
        d, i = self.estimate, self.interval
        if d is None or i is None or self.verdict in (fairness.TOO_FEW, fairness.REFERENCE_TOO_FEW):
            return -1.0
        near = i.low if self.harm_above else (1 / i.high if i.high > 0 else 0.0)
        point = d if self.harm_above else (1 / d if d else 0.0)
        rank = 2.0 if self.verdict == fairness.WORSE_OFF else (1.0 if self.harmful else 0.0)
        return rank * 1000 + near + point / 1000


def _disparity_sql(database: str, tr: TimeRange) -> str:
    stratum = ", ".join(c for c, _ in STRATUM)
    columns = []
    for k, name in enumerate(DISPARITY_MEASURES):
        i = INDICATORS[name]
        columns += [f"countIf({i.where}) AS n{k}", f"countIf(({i.hit}) AND ({i.where})) AS x{k}"]
    which = ", ".join(f"toString({dim}) != '', {literal(dim)}" for dim in COHORT_DIMENSIONS)
    value = ", ".join(f"toString({dim})" for dim in COHORT_DIMENSIONS)
    sets = ", ".join(f"({stratum}, {dim})" for dim in COHORT_DIMENSIONS)
    return (
        f"SELECT {', '.join(f'toString({c})' for c, _ in STRATUM)}, multiIf({which}, '') AS dimension, "
        f"concat({value}) AS grp, count() AS members, {', '.join(columns)}\nFROM {_workflows(database)}\n"
        f"WHERE {_range(tr)}\nGROUP BY GROUPING SETS ({sets})\nHAVING grp != ''"
    )


def disparities(client: Any, database: str, tr: TimeRange) -> list[Disparity]:
    """Every group against its stratum's reference group, for every measure; most harmful first."""
    rows = client.query(_disparity_sql(database, tr)).result_rows
    # (tenant, kind, cohort, version, dimension) -> group -> (members, [n0, x0, n1, x1, ...])
    found: dict[tuple[str, ...], dict[str, tuple[int, list[int]]]] = {}
    for tenant, kind, cohort, version, dimension, grp, members, *counts in rows:
        key = (str(tenant), str(kind), str(cohort), str(version), str(dimension))
        found.setdefault(key, {})[str(grp)] = (int(members), [int(c) for c in counts])
    out: list[Disparity] = []
    for (tenant, kind, cohort, version, dimension), groups in found.items():
        if len(groups) < 2:
            continue
        # REFERENCE_RULE, as `reference_group` orders it: most workflows, then the larger name
        reference = max(groups, key=lambda g: (groups[g][0], g))
        ref = groups[reference][1]
        for k, name in enumerate(DISPARITY_MEASURES):
            ref_n, ref_x = ref[2 * k], ref[2 * k + 1]
            for g, (_, c) in groups.items():
                n, x = c[2 * k], c[2 * k + 1]
                if g == reference or n == 0:
                    continue
                interval = ratio_interval(x, n, ref_x, ref_n, fairness.CONFIDENCE)
                out.append(Disparity(tenant, kind, cohort, version, dimension, g, reference, name, n, x, ref_n,
                                     ref_x, interval))  # fmt: skip
    out.sort(key=lambda d: d.severity, reverse=True)
    return out


@dataclass(frozen=True)
class Criterion:
    """One kill criterion in one tenant and kind: the canary against the baseline, over the
    report's range (`rule` empty: the rollout dashboard's table) or over a canary rule's window."""

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
    x_canary: int
    x_baseline: int
    min_sample: int
    confidence: float = rollout.CONFIDENCE
    rule: str = ""
    """The canary alert rule whose window this is ('' for the report's range)."""
    fired: bool = False
    """The rule fired, and this is the window it read when it did."""

    @property
    def has_interval(self) -> bool:
        return INDICATORS[self.measure].kind == "rate"

    @property
    def estimate(self) -> float | None:
        """canary ÷ baseline, filled where the baseline's is 0 (`stats.filled_ratio`)."""
        return filled_ratio(self.canary, self.baseline)

    @property
    def sequence(self) -> Interval | None:
        """The kill criterion's confidence sequence of the ratio (a rate's), tuned to the limit, as
        the canary rule's (`stats.kill_sequence`)."""
        if not self.has_interval:
            return None
        return kill_sequence(self.x_canary, self.n_canary, self.x_baseline, self.n_baseline, self.confidence,
                              abs(math.log(self.limit)))  # fmt: skip

    @property
    def verdict(self) -> str:
        """The rollout dashboard's status, by the same rule (the canary alert's decision)."""
        r = self.estimate
        if self.n_canary < self.min_sample or self.n_baseline < self.min_sample or r is None:
            return rollout.TOO_FEW
        if r <= self.limit:
            return rollout.OK
        seq = self.sequence
        if seq is None:
            return rollout.ABOVE_NO_TEST
        return rollout.KILL if seq.low > 1 else rollout.ABOVE_NOT_SIGNIFICANT

    @property
    def past(self) -> bool:
        """Past the limit by the test (what stops the canary, and what the canary alert pages on)."""
        return self.verdict in (rollout.KILL, rollout.ABOVE_NO_TEST)


def _criterion_sql(database: str, measures: Sequence[str], where: str) -> str:
    columns = []
    for k, name in enumerate(measures):
        i = INDICATORS[name]
        value, sample = i.conditional()
        hits = i.counts()[0] if i.kind == "rate" else "0"
        columns += [f"{value} AS v{k}", f"{sample} AS n{k}", f"{hits} AS x{k}"]
    canary, baseline = literal(RolloutCohort.CANARY.value), literal(RolloutCohort.BASELINE.value)
    return (
        f"SELECT TenantId, WorkflowKind, RolloutCohort, {', '.join(columns)} FROM {_workflows(database)} "
        f"WHERE {where} AND RolloutCohort IN ({canary}, {baseline}) GROUP BY TenantId, WorkflowKind, RolloutCohort"
    )


def _by_cohort(rows: Sequence[Sequence[Any]]) -> dict[tuple[str, str], dict[str, Sequence[Any]]]:
    out: dict[tuple[str, str], dict[str, Sequence[Any]]] = {}
    for tenant, kind, cohort, *values in rows:
        out.setdefault((str(tenant), str(kind)), {})[str(cohort)] = values
    return out


def _side(values: Sequence[Any] | None, k: int) -> tuple[float | None, int, int]:
    if values is None:
        return None, 0, 0
    v = values[3 * k]
    return (
        (None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)),
        int(values[3 * k + 1]),
        int(values[3 * k + 2]),
    )


def kill_criteria(
    client: Any,
    database: str,
    tr: TimeRange,
    rules: Sequence[AlertRule] = (),
    episodes: Sequence[Episode] = (),
) -> list[Criterion]:
    """Each kill criterion wherever a canary ran, over the report's range (as the rollout
    dashboard); then each canary rule over its own window: the one it read when it first fired
    for that tenant and kind, else the one ending at the canary's last workflow, the latter only
    when it reads above its limit (significant or not yet)."""
    workflows = _workflows(database)
    canary = literal(RolloutCohort.CANARY.value)
    windows = client.query(
        f"SELECT TenantId, WorkflowKind, min(StartTime), max(StartTime) FROM {workflows} "
        f"WHERE {_range(tr)} AND RolloutCohort = {canary} GROUP BY TenantId, WorkflowKind ORDER BY 1, 2"
    ).result_rows
    spans = {(str(t), str(k)): (a.replace(tzinfo=UTC), b.replace(tzinfo=UTC)) for t, k, a, b in windows}
    if not spans:
        return []
    names = [name for name, _ in KILL_CRITERIA]
    whole = _by_cohort(client.query(_criterion_sql(database, names, _range(tr))).result_rows)
    least = min(INDICATORS[n].min_sample for n in names)
    out: list[Criterion] = []
    for (tenant, kind), (since, until) in sorted(spans.items()):
        cohorts = whole.get((tenant, kind), {})
        for k, (name, limit) in enumerate(KILL_CRITERIA):
            cv, cn, cx = _side(cohorts.get(RolloutCohort.CANARY.value), k)
            bv, bn, bx = _side(cohorts.get(RolloutCohort.BASELINE.value), k)
            out.append(Criterion(tenant, kind, name, limit, since, until, cv, bv, cn, bn, cx, bx, least))
    for rule in rules:
        if str(rule.kind) != "canary" or rule.metric not in INDICATORS:
            continue
        i = INDICATORS[rule.metric]
        for (tenant, kind), (_, last) in sorted(spans.items()):
            fired = [e.fired for e in episodes if e.rule == rule.name and dict(e.labels).get("tenant", tenant) == tenant
                     and dict(e.labels).get("kind", kind) == kind]  # fmt: skip
            end = min(fired) if fired else last + timedelta(seconds=1)
            start = end - timedelta(seconds=rule.window)
            column = i.time_column
            where = (
                f"TenantId = {literal(tenant)} AND WorkflowKind = {literal(kind)} "
                f"AND {column} >= {_at(start)} AND {column} < {_at(end)}"
            )
            rows = _by_cohort(client.query(_criterion_sql(database, [rule.metric], where)).result_rows)
            cohorts = rows.get((tenant, kind), {})
            cv, cn, cx = _side(cohorts.get(RolloutCohort.CANARY.value), 0)
            bv, bn, bx = _side(cohorts.get(RolloutCohort.BASELINE.value), 0)
            threshold, _, _ = _limits(rule, tenant, kind)
            window = Criterion(tenant, kind, rule.metric, threshold, start, end, cv, bv, cn, bn, cx, bx,
                               _limits(rule, tenant, kind)[1], getattr(rule, "confidence", rollout.CONFIDENCE),
                               rule.name, bool(fired))  # fmt: skip
            # a rule that did not fire and reads nothing above its limit says what the range's row says
            if fired or window.verdict not in (rollout.OK, rollout.TOO_FEW):
                out.append(window)
    return out


def _limits(rule: AlertRule, tenant: str, kind: str) -> tuple[float, int, bool]:
    """The rule's (threshold, min_sample, disabled) for a tenant and kind, its overrides applied
    when it has them (`clinotel.alerts.rules.Rule.limits`)."""
    limits = getattr(rule, "limits", None)
    if callable(limits):
        threshold, least, disabled = limits(tenant, kind)
        return float(threshold), int(least), bool(disabled)
    return rule.threshold, rule.min_sample, False


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
