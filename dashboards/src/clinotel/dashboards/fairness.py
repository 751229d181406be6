"""Fairness: for each cohort dimension, per group, each measure's rate beside its disparity to the
reference group with a 95 % interval and a verdict; the parity figures by Fairlearn's names.

Groups are compared within one stratum (`STRATUM`: tenant, workflow kind, rollout cohort, model
version), never pooled across them: pooled, a canary's bias against one group is diluted by the
baseline's rows, and one kind's queue waits by another's. The reference group is the group with
the most workflows in the stratum (`REFERENCE_RULE`), as in the alerts.

Disparity = group ÷ reference (Aequitas), fair when 0.8 ≤ disparity ≤ 1.25. The verdict of a rate
uses its MOVER-R Wilson interval (`clinotel.model.stats`): a group is **worse off** when its
disparity is outside the band on the harmful side (the indicator's direction) *and* the interval
excludes 1 there; **reference worse off** the same on the other side; **outside band, not
significant** when the estimate alone is outside. A quantile's disparity has no test. A group
under 30 rows is `too few`, its figures left out.
"""

from __future__ import annotations

from typing import Any, Final

from clinotel.dashboards._panels import Board, where_filters
from clinotel.model import clinical, rollups
from clinotel.model.indicators import COHORT_DIMENSIONS, INDICATORS, PARITY, STRATUM, reference_group
from clinotel.model.sql import identifier, literal
from clinotel.model.stats import filled_ratio_sql, ratio_interval_columns, stacked

UID = "clinotel-fairness"
MEASURES: Final = ("under_triage_rate", "override_rate", "high_priority_rate", "queue_wait_p95_ms")
FAIR_BAND: Final = (0.8, 1.25)
MIN_GROUP: Final = 30
CONFIDENCE: Final = 0.95
"""The two-sided coverage of the disparity intervals in the tables."""

WORSE_OFF: Final = "worse off"
REFERENCE_WORSE_OFF: Final = "reference worse off"
NOT_SIGNIFICANT: Final = "outside band, not significant"
NO_TEST: Final = "outside band (no test)"
WITHIN: Final = "within band"
REFERENCE: Final = "reference"
TOO_FEW: Final = "too few"
REFERENCE_TOO_FEW: Final = "reference too few"

_STRATUM_COLUMNS: Final = tuple(c for c, _ in STRATUM)


def _stratum_select() -> str:
    return ", ".join(f"{c} AS {identifier(t)}" for c, t in STRATUM)


def _per_group(name: str, rollup: bool) -> tuple[str, str, str]:
    """(value, rows, hits) of an indicator per group, from the workflows view or the cohort rollup."""
    i = INDICATORS[name]
    if rollup:
        hits = f"sum({rollups.columns(i)[1]})" if i.kind == "rate" else "0"
        return rollups.value(i), rollups.sample(i), hits
    value, sample = i.conditional()
    return value, sample, i.counts()[0] if i.kind == "rate" else "0"


def _groups_from(database: str, rollup: bool, dimension: str | None) -> tuple[str, str, str]:
    """(FROM and WHERE, the group's column, the group's size) for one `dimension` (None: the
    parity summary's grouping sets, from the view only)."""
    if not rollup:
        return f"{identifier(database)}.{identifier(clinical.WORKFLOWS)} FINAL", "$__timeFilter(StartTime)", "count()"
    table = f"{identifier(database)}.{identifier(rollups.COHORT_HOURS)}"
    where = rollups.time_filter() + ("" if dimension is None else f" AND Dimension = {literal(dimension)}")
    return table, where, "sum(members)"


def group_table_sql(database: str, dimension: str, *, rollup: bool = True) -> str:
    """One row per stratum, group of `dimension` and measure: the group's size, the measure's rows
    and value, the reference group's value, the disparity with its interval, and the verdict;
    from the hourly cohort rollup (`clinotel.model.rollups`) unless `rollup` is false.

    One scan: per group, the measures' values, rows and hits as three arrays; the reference group
    of each stratum with its three arrays (one window function keyed on the group's size, as
    `reference_group`); an ARRAY JOIN turns the measures into rows, on which the intervals and
    verdicts are computed. (Thirteen window functions and a tuple per measure planned 9 ms slower.)"""
    table, when, size = _groups_from(database, rollup, dimension)
    group = "Grp" if rollup else dimension
    partition = ", ".join(_STRATUM_COLUMNS)
    values, rows, hits, titles, rates, worse = [], [], [], [], [], []
    for name in MEASURES:
        i = INDICATORS[name]
        value, sample, hit = _per_group(name, rollup)
        values.append(f"toFloat64({value})")
        rows.append(f"toUInt64({sample})")
        hits.append(f"toUInt64({hit})")
        titles.append(literal(i.title))
        rates.append(str(int(i.kind == "rate")))
        worse.append(str(int(i.higher_is_worse)))
    parts, interval = ratio_interval_columns("ci", "x", "n", "rx", "rn", CONFIDENCE)
    band_low, band_high = FAIR_BAND
    shown = f"n >= {MIN_GROUP} AND rn >= {MIN_GROUP} AND grp != ref_group"
    d = "d_value"  # computed once, a layer below: the expression written out at each use planned slowly
    harmful = f"if(higher_is_worse = 1, {d} > {band_high}, {d} < {band_low})"
    significant_harm = "if(higher_is_worse = 1, ci_low > 1, ci_high < 1)"
    significant_benefit = "if(higher_is_worse = 1, ci_high < 1, ci_low > 1)"
    verdict = (
        f"multiIf(n < {MIN_GROUP}, {literal(TOO_FEW)}, grp = ref_group, {literal(REFERENCE)}, "
        f"rn < {MIN_GROUP} OR {d} IS NULL, {literal(REFERENCE_TOO_FEW)}, "
        f"{d} >= {band_low} AND {d} <= {band_high}, {literal(WITHIN)}, "
        f"is_rate = 0, {literal(NO_TEST)}, "
        f"{harmful} AND {significant_harm}, {literal(WORSE_OFF)}, "
        f"NOT {harmful} AND {significant_benefit}, {literal(REFERENCE_WORSE_OFF)}, "
        f"{literal(NOT_SIGNIFICANT)})"
    )
    pct = round(CONFIDENCE * 100)
    ordered = ", ".join(identifier(t) for _, t in STRATUM)
    reference = reference_group("grp", "members", partition, carried="(grp, vs, ns, xs)")
    disparity = filled_ratio_sql("value", "rvalue")
    per_measure = (
        f"SELECT {partition}, grp, members, ref.1 AS ref_group, measure, is_rate, higher_is_worse, "
        "value, n, x, rvalue, rn, rx\n"
        f"FROM (\n  SELECT *, {reference} AS ref\n"
        f"  FROM (SELECT {partition}, {group} AS grp, {size} AS members, [{', '.join(values)}] AS vs, "
        f"[{', '.join(rows)}] AS ns, [{', '.join(hits)}] AS xs\n"
        f"        FROM {table}\n"
        f"        WHERE {when} AND {group} != '' AND {where_filters()}\n"
        f"        GROUP BY {partition}, grp)\n)\n"
        f"ARRAY JOIN [{', '.join(titles)}] AS measure, [{', '.join(rates)}] AS is_rate, "
        f"[{', '.join(worse)}] AS higher_is_worse, vs AS value, ns AS n, xs AS x, ref.2 AS rvalue, ref.3 AS rn, "
        "ref.4 AS rx"
    )
    return (
        f"SELECT {_stratum_select()}, grp AS {identifier(COHORT_DIMENSIONS[dimension])}, measure AS `Measure`, "
        f"members AS `Workflows`, n AS `Rows`, if(n >= {MIN_GROUP}, round(value, 4), NULL) AS `Value`, "
        f"ref_group AS `Reference group`, if(rn >= {MIN_GROUP}, round(rvalue, 4), NULL) AS `Reference value`, "
        f"if({shown}, round({d}, 2), NULL) AS `Disparity`, "
        f"if({shown} AND is_rate = 1, round(ci_low, 2), NULL) AS `Disparity {pct}% low`, "
        f"if({shown} AND is_rate = 1 AND isFinite(ci_high), round(ci_high, 2), NULL) AS `Disparity {pct}% high`, "
        f"{verdict} AS `Verdict`\n"
        f"FROM (\n{stacked(per_measure, (f'{parts}, {disparity} AS d_value', interval))}\n)\n"
        f"ORDER BY {ordered}, `Measure`, `Workflows` DESC"
    )


def parity_summary_sql(database: str, *, rollup: bool = True) -> str:
    """Per dimension and stratum, over the groups with enough rows (at least two of them, else
    NULL): each `PARITY` figure, the between-groups max − min (difference) or min ÷ max (ratio)
    of its rate: Fairlearn's demographic parity and equal opportunity, and the spread of model
    under-triage. From the hourly cohort rollup's groups unless `rollup` is false; from the view,
    one scan with a grouping set per dimension (each with the stratum): in a set's rows the other
    dimensions hold '' (no settings needed, so a readonly=1 reader can run it), which names the
    dimension and leaves its value alone."""
    rates = sorted({p.indicator for p in PARITY})
    per_group = []
    for k, name in enumerate(rates):
        value, sample, _ = _per_group(name, rollup)
        per_group += [f"{value} AS v{k}", f"{sample} AS n{k}"]
    figures = []
    for p in PARITY:
        k = rates.index(p.indicator)
        ok = f"n{k} >= {MIN_GROUP}"
        top, bottom = f"maxIf(v{k}, {ok})", f"minIf(v{k}, {ok})"
        figure = f"{top} - {bottom}" if p.aggregate == "difference" else f"{bottom} / nullIf({top}, 0)"
        figures.append(f"if(countIf({ok}) >= 2, round({figure}, 4), NULL) AS {identifier(p.title)}")
    k_hp = rates.index("high_priority_rate")
    titles = ", ".join(identifier(t) for _, t in STRATUM)
    stratum = ", ".join(_STRATUM_COLUMNS)
    table, when, _ = _groups_from(database, rollup, None)
    if rollup:
        names = ", ".join(literal(d) for d in COHORT_DIMENSIONS)
        shown = ", ".join(literal(t) for t in COHORT_DIMENSIONS.values())
        groups = (
            f"  SELECT transform(Dimension, [{names}], [{shown}], '') AS dimension, {stratum}, Grp AS grp, "
            f"{', '.join(per_group)}\n"
            f"  FROM {table}\n  WHERE {when} AND {where_filters()}\n"
            f"  GROUP BY dimension, {stratum}, grp\n"
        )
    else:
        which = ", ".join(f"toString({dim}) != '', {literal(title)}" for dim, title in COHORT_DIMENSIONS.items())
        value = ", ".join(f"toString({dim})" for dim in COHORT_DIMENSIONS)
        sets = ", ".join(f"({stratum}, {dim})" for dim in COHORT_DIMENSIONS)
        groups = (
            f"  SELECT multiIf({which}, '') AS dimension, {stratum}, concat({value}) AS grp, {', '.join(per_group)}\n"
            f"  FROM {table}\n  WHERE {when} AND {where_filters()}\n"
            f"  GROUP BY GROUPING SETS ({sets})\n  HAVING grp != ''\n"
        )
    return (
        f"SELECT dimension AS `Dimension`, {_stratum_select()}, countIf(n{k_hp} >= {MIN_GROUP}) AS `Groups`, "
        f"{', '.join(figures)}\n"
        f"FROM (\n{groups})\n"
        f"GROUP BY dimension, {stratum} ORDER BY `Dimension`, {titles}"
    )


def build(database: str) -> dict[str, Any]:
    b = Board(UID, "clinotel / Fairness", "Per-group rates and disparities against the reference group (0.8–1.25), "
              "per workflow kind, rollout cohort and model version.", database, tags=["fairness"])  # fmt: skip
    b.row("Parity")
    about = (
        "Per workflow kind, rollout cohort and model version, over groups with at least "
        f"{MIN_GROUP} rows: Fairlearn's demographic parity difference and ratio (selection rate: high-priority "
        "assignment) and equal opportunity difference and ratio (true-positive rate among the truly ESI-1/2), and "
        "the spread of model under-triage (max − min; not a Fairlearn metric)."
    )
    b.table("Parity by dimension", about, parity_summary_sql(database), w=24, h=7)
    for dimension, title in COHORT_DIMENSIONS.items():
        b.row(title)
        b.table(
            f"{title}: rates and disparities",
            f"Groups of {title.lower()} within each workflow kind, rollout cohort and model version; reference = "
            f"the group with the most workflows there; disparity = value ÷ reference value with its "
            f"{round(CONFIDENCE * 100)}% interval (MOVER-R Wilson); worse off = outside 0.8–1.25 on the harmful side "
            f"and the interval excludes 1; groups under {MIN_GROUP} rows show as too few.",
            group_table_sql(database, dimension), w=24, h=9,
        )  # fmt: skip
    b.row("Over time")
    b.series(
        "under_triage_rate", by=("RolloutCohort", "Language"), title="Model under-triage by rollout cohort and language"
    )
    b.series("override_rate", by=("WorkflowKind", "AgeBand"), title="Override rate by workflow kind and age band")
    return b.build()
