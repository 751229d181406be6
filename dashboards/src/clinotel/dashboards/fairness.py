"""Fairness: for each cohort dimension, per-group rates beside their disparity against the
reference group (the largest), the 0.8–1.25 band, and the group size; a group under the
minimum sample shows as too few, not as numbers.

Rates and ratios follow metrics-definitions: under-triage is a false-negative-style rate whose
gap is the equal-opportunity gap; high-priority assignment is the selection rate of demographic
parity (difference and ratio); disparity = group ÷ reference, fair when 0.8 ≤ disparity ≤ 1.25.
"""

from __future__ import annotations

from typing import Any, Final

from clinotel.dashboards._panels import Board, where_filters
from clinotel.model import clinical
from clinotel.model.indicators import COHORT_DIMENSIONS, INDICATORS
from clinotel.model.sql import identifier, literal

UID = "clinotel-fairness"
MEASURES: Final = ("under_triage_rate", "override_rate", "high_priority_rate", "queue_wait_p95_ms")
FAIR_BAND: Final = (0.8, 1.25)
MIN_GROUP: Final = 30


def group_table_sql(database: str, dimension: str) -> str:
    """Per group of `dimension`: size, each measure, its disparity to the largest group, and flags.
    One scan: the reference group's figures come from window functions over the groups."""
    workflows = f"{identifier(database)}.{identifier(clinical.WORKFLOWS)} FINAL"
    aggregates, refs, columns = [], [], []
    for name in MEASURES:
        value, sample = INDICATORS[name].conditional()
        aggregates += [f"{value} AS {name}", f"{sample} AS n_{name}"]
        refs.append(f"argMax({name}, n) OVER () AS ref_{name}")
        ok = f"n_{name} >= {MIN_GROUP}"
        columns += [
            f"if({ok}, round({name}, 4), NULL) AS {identifier(INDICATORS[name].title)}",
            f"if({ok} AND ref_{name} > 0, round({name} / ref_{name}, 2), NULL) AS {identifier(name + ' disparity')}",
        ]
    low, high = FAIR_BAND
    outside = " OR ".join(
        f"(n_{n} >= {MIN_GROUP} AND ref_{n} > 0 AND ({n} / ref_{n} < {low} OR {n} / ref_{n} > {high}))"
        for n in MEASURES
    )
    return (
        f"SELECT grp AS {identifier(COHORT_DIMENSIONS[dimension])}, n AS workflows, "
        f"if(n < {MIN_GROUP}, 'too few', if(grp = ref_group, 'reference', if({outside}, 'outside 0.8–1.25', 'within')))"
        f" AS fairness, {', '.join(columns)}\n"
        f"FROM (\n  SELECT *, argMax(grp, n) OVER () AS ref_group, {', '.join(refs)}\n"
        f"  FROM (SELECT {dimension} AS grp, count() AS n, {', '.join(aggregates)}\n"
        f"        FROM {workflows}\n"
        f"        WHERE $__timeFilter(StartTime) AND {dimension} != '' AND {where_filters()}\n"
        f"        GROUP BY grp)\n)\nORDER BY n DESC"
    )


def parity_summary_sql(database: str) -> str:
    """Per dimension, over groups with enough rows: the demographic parity difference and ratio of
    high-priority assignment (Fairlearn's between-groups max − min and min ÷ max of the selection
    rate) and the equal-opportunity gap of under-triage (max − min across groups). One scan, a
    grouping set per dimension: in a set's rows the other dimensions hold '' (no settings needed,
    so a readonly=1 reader can run it), which names the dimension and leaves its value alone."""
    workflows = f"{identifier(database)}.{identifier(clinical.WORKFLOWS)} FINAL"
    hp, n_hp = INDICATORS["high_priority_rate"].conditional()
    ut, n_ut = INDICATORS["under_triage_rate"].conditional()
    ok_hp, ok_ut = f"n_hp >= {MIN_GROUP}", f"n_ut >= {MIN_GROUP}"
    which = ", ".join(f"toString({dim}) != '', {literal(title)}" for dim, title in COHORT_DIMENSIONS.items())
    value = ", ".join(f"toString({dim})" for dim in COHORT_DIMENSIONS)
    sets = ", ".join(f"({dim})" for dim in COHORT_DIMENSIONS)
    return (
        f"SELECT dimension, countIf({ok_hp}) AS groups, "
        f"round(maxIf(hp, {ok_hp}) - minIf(hp, {ok_hp}), 4) AS dp_difference, "
        f"round(minIf(hp, {ok_hp}) / nullIf(maxIf(hp, {ok_hp}), 0), 4) AS dp_ratio, "
        f"round(maxIf(ut, {ok_ut}) - minIf(ut, {ok_ut}), 4) AS eo_gap_under_triage\n"
        f"FROM (\n  SELECT multiIf({which}, '') AS dimension, concat({value}) AS grp, "
        f"{hp} AS hp, {n_hp} AS n_hp, {ut} AS ut, {n_ut} AS n_ut\n"
        f"  FROM {workflows}\n  WHERE $__timeFilter(StartTime) AND {where_filters()}\n"
        f"  GROUP BY GROUPING SETS ({sets})\n  HAVING grp != ''\n)\n"
        "GROUP BY dimension ORDER BY dimension"
    )


def build(database: str) -> dict[str, Any]:
    b = Board(UID, "clinotel / Fairness", "Per-group rates and disparities against the largest group (0.8–1.25).",
              database, tags=["fairness"])  # fmt: skip
    b.row("Parity")
    about = (
        f"Demographic parity of high-priority assignment, equal-opportunity gap of under-triage; groups >= {MIN_GROUP}."
    )
    b.table("Parity by dimension", about, parity_summary_sql(database), w=24, h=7)
    for dimension, title in COHORT_DIMENSIONS.items():
        b.row(title)
        b.table(f"{title}: rates and disparities", f"Groups of {title.lower()}; reference = the largest group; "
                f"groups under {MIN_GROUP} workflows show as too few.", group_table_sql(database, dimension),
                w=24, h=7)  # fmt: skip
    b.row("Over time")
    b.series("under_triage_rate", by="Language", title="Under-triage by language")
    b.series("override_rate", by="AgeBand", title="Override rate by age band")
    return b.build()
