"""Rollout and canary: canary against baseline per flag variant and model version, kill-criteria
status, rollout-mode mix, shadow agreement."""

from __future__ import annotations

from typing import Any, Final

from clinotel.dashboards._panels import Board, where_filters
from clinotel.model import clinical
from clinotel.model.indicators import INDICATORS
from clinotel.model.sql import identifier, literal
from clinotel.semconv import RolloutCohort

UID = "clinotel-rollout"
KILL_CRITERIA: Final = (("under_triage_rate", 1.5), ("override_rate", 1.5), ("decision_latency_p95_ms", 1.5))
"""(indicator, the canary-to-baseline ratio past which the canary is to be stopped)."""


def kill_criteria_sql(database: str) -> str:
    """One row per kill criterion: canary, baseline, their ratio, sample sizes and a status. One
    scan computes every criterion for both cohorts; an ARRAY JOIN turns them into rows."""
    workflows = f"{identifier(database)}.{identifier(clinical.WORKFLOWS)} FINAL"
    cohorts = {c: f"RolloutCohort = {literal(c.value)}" for c in (RolloutCohort.CANARY, RolloutCohort.BASELINE)}
    rows = []
    for name, limit in KILL_CRITERIA:
        i = INDICATORS[name]
        canary, n_canary = i.conditional(cohorts[RolloutCohort.CANARY])
        baseline, n_baseline = i.conditional(cohorts[RolloutCohort.BASELINE])
        rows.append(f"({literal(i.title)}, {limit}, {canary}, {baseline}, {n_canary}, {n_baseline})")
    least = min(INDICATORS[n].min_sample for n, _ in KILL_CRITERIA)
    return (
        "SELECT c.1 AS criterion, round(c.3, 4) AS canary, round(c.4, 4) AS baseline, "
        "round(c.3 / nullIf(c.4, 0), 2) AS ratio, c.2 AS max_ratio, c.5 AS n_canary, c.6 AS n_baseline,\n"
        f"  multiIf(c.5 < {least} OR c.6 = 0, 'too few', ratio > max_ratio, 'KILL', 'ok') AS status\n"
        f"FROM (\n  SELECT [{', '.join(rows)}] AS criteria\n  FROM {workflows}\n"
        f"  WHERE $__timeFilter(StartTime) AND {where_filters()}\n)\nARRAY JOIN criteria AS c\nORDER BY criterion"
    )


def build(database: str) -> dict[str, Any]:
    b = Board(UID, "clinotel / Rollout and canary", "Canary against baseline, kill criteria, shadow agreement.",
              database, tags=["rollout"])  # fmt: skip
    workflows = f"{identifier(database)}.{identifier(clinical.WORKFLOWS)} FINAL"
    f = where_filters()
    b.row("Kill criteria")
    b.table("Kill criteria: canary against baseline", "Each criterion's canary-to-baseline ratio and its limit.",
            kill_criteria_sql(database), w=24, h=6)  # fmt: skip
    b.row("Canary against baseline")
    b.series("under_triage_rate", by="RolloutCohort", w=8, title="Under-triage: canary vs baseline")
    b.series("override_rate", by="RolloutCohort", w=8, title="Override rate: canary vs baseline")
    b.series("decision_latency_p95_ms", by="RolloutCohort", w=8, title="Decision latency p95: canary vs baseline")
    b.series("override_rate", by="FlagVariant", title="Override rate by flag variant")
    b.series("under_triage_rate", by="ModelVersion", title="Under-triage by model version")
    b.row("Rollout")
    b.timeseries(
        "Rollout-mode mix", "Workflows per rollout mode.",
        f"SELECT $__timeInterval(StartTime) AS time, RolloutMode, count() AS workflows\n"
        f"FROM {workflows}\nWHERE $__timeFilter(StartTime) AND RolloutMode != '' AND {f}\n"
        "GROUP BY time, RolloutMode ORDER BY time",
    )  # fmt: skip
    b.timeseries(
        "Shadow agreement by shadow model", "Share of workflows where the shadow model agreed with the live decision.",
        f"SELECT $__timeInterval(StartTime) AS time, ShadowModelVersion, "
        f"countIf(ShadowValue = DecisionValue) / count() AS agreement\n"
        f"FROM {workflows}\nWHERE $__timeFilter(StartTime) AND ShadowValue != '' AND DecisionValue != '' AND {f}\n"
        "GROUP BY time, ShadowModelVersion ORDER BY time", "percentunit",
    )  # fmt: skip
    return b.build()
