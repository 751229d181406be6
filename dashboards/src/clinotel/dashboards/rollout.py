"""Rollout and canary: the kill criteria per workflow kind (canary against baseline, with the
sequential test the canary alert uses), canary against baseline per kind, flag variant and model
version, rollout-mode mix, shadow agreement, and the flags: exposure per variant and scope, and
the inventory's expired-but-live and stale flags."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import date
from typing import Any, Final

from clinotel.dashboards._panels import Board, where_filters
from clinotel.model import rollups
from clinotel.model.indicators import INDICATORS
from clinotel.model.sql import identifier, literal
from clinotel.model.stats import filled_ratio_sql, kill_sequence_columns, proportion_grid_sql, stacked
from clinotel.semconv import RolloutCohort

UID = "clinotel-rollout"
KILL_CRITERIA: Final = (("under_triage_rate", 1.5), ("override_rate", 1.5), ("decision_latency_p95_ms", 1.5))
"""(indicator, the canary-to-baseline ratio past which the canary is to be stopped). Model
under-triage is the model's own decision against the truth, before any review."""
CONFIDENCE: Final = 0.95
"""The coverage of the kill criteria's confidence sequence (the canary alert's default)."""

KILL: Final = "KILL"
ABOVE_NOT_SIGNIFICANT: Final = "above limit, not significant yet"
ABOVE_NO_TEST: Final = "KILL (no test)"
OK: Final = "ok"
TOO_FEW: Final = "too few"
NO_INVENTORY: Final = "no inventory given (clinotel dashboards build --flags)"
UNLISTED: Final = "not in the inventory"
EXPIRED: Final = "EXPIRED, still evaluated"
STALE: Final = "STALE: listed, not evaluated in the range"
LISTED: Final = "listed"


def kill_criteria_sql(database: str) -> str:
    """One row per tenant, workflow kind and kill criterion: canary, baseline, their ratio with
    its confidence sequence (for a rate; `clinotel.model.stats.ratio_sequence`, tuned to the
    limit), the limit, sample sizes and a status: KILL when the ratio is past its limit and the
    sequence excludes 1 (the canary is worse than its baseline at every look), as the canary
    alert decides. One pass over the hourly rollup per kind computes every criterion for both
    cohorts; an ARRAY JOIN turns them into rows."""
    hours = f"{identifier(database)}.{identifier(rollups.WORKFLOW_HOURS)}"
    cohorts = {c: f"RolloutCohort = {literal(c.value)}" for c in (RolloutCohort.CANARY, RolloutCohort.BASELINE)}
    rows = []
    for name, limit in KILL_CRITERIA:
        i = INDICATORS[name]
        canary, n_canary = rollups.conditional(i, cohorts[RolloutCohort.CANARY])
        baseline, n_baseline = rollups.conditional(i, cohorts[RolloutCohort.BASELINE])
        if i.kind == "rate":
            x_canary, x_baseline = (
                rollups.counts(i, cohorts[RolloutCohort.CANARY])[0],
                rollups.counts(i, cohorts[RolloutCohort.BASELINE])[0],
            )
        else:
            x_canary = x_baseline = "0"
        rows.append(
            f"({literal(i.title)}, {limit!r}, toFloat64({canary}), toFloat64({baseline}), toUInt64({n_canary}), "
            f"toUInt64({n_baseline}), toUInt64({x_canary}), toUInt64({x_baseline}), {int(i.kind == 'rate')}, "
            f"{math.log(limit)!r})"
        )
    least = min(INDICATORS[n].min_sample for n, _ in KILL_CRITERIA)
    # the mixture's scale: each criterion's own limit, as a log ratio (c.10)
    sequence = kill_sequence_columns("ks", "c.7", "c.5", "c.8", "c.6", CONFIDENCE, "c.10", "pgrid")
    # one row per criterion; the sequence's parts each computed once, in a layer of its own
    criteria = (
        f"SELECT *, c, {filled_ratio_sql('c.3', 'c.4')} AS ratio_value\n"
        f"FROM (\n  SELECT TenantId AS tenant, WorkflowKind AS kind, [{', '.join(rows)}] AS criteria, "
        f"{proportion_grid_sql()} AS pgrid\n"
        f"  FROM {hours}\n"
        f"  WHERE {rollups.time_filter()} AND RolloutCohort != '' AND {where_filters()}\n"
        "  GROUP BY tenant, kind\n)\nARRAY JOIN criteria AS c"
    )
    ratio = "ratio_value"
    pct = round(CONFIDENCE * 100)
    return (
        "SELECT tenant AS `Tenant`, kind AS `Workflow kind`, c.1 AS `Criterion`, round(c.3, 4) AS `Canary`, "
        f"round(c.4, 4) AS `Baseline`, round({ratio}, 2) AS `Ratio`, "
        f"if(c.9 = 1, round(ks_low, 2), NULL) AS `Ratio {pct}% low (sequential)`, "
        f"if(c.9 = 1 AND isFinite(ks_high), round(ks_high, 2), NULL) AS `Ratio {pct}% high (sequential)`, "
        "c.2 AS `Limit`, c.5 AS `Canary rows`, c.6 AS `Baseline rows`,\n"
        f"  multiIf(c.5 < {least} OR c.6 < {least} OR {ratio} IS NULL, {literal(TOO_FEW)}, "
        f"{ratio} <= c.2, {literal(OK)}, "
        f"c.9 = 0, {literal(ABOVE_NO_TEST)}, ks_low > 1, {literal(KILL)}, {literal(ABOVE_NOT_SIGNIFICANT)}) "
        "AS `Status`\n"
        f"FROM (\n{stacked(criteria, sequence)}\n)\nORDER BY `Tenant`, `Workflow kind`, `Criterion`"
    )


def flags_sql(database: str, inventory: Iterable[tuple[str, date]] = ()) -> str:
    """One row per flag, variant, tenant, site and workflow kind evaluated in the range (the
    decide stages' `feature_flag.*`, one evaluation a workflow): evaluations, the variant's share
    of the flag's evaluations there, the last one, and a status against `inventory` ((key, expiry)
    of flags.yaml): expired yet evaluated, not in the inventory, or listed (with its expiry);
    and a row for each listed flag not evaluated in the range (stale). Read from the hourly
    rollup (the range's first hour whole)."""
    hours = f"{identifier(database)}.{identifier(rollups.WORKFLOW_HOURS)}"
    evaluations = rollups.sample(INDICATORS["workflows"])
    evaluated = f"{rollups.time_filter()} AND FlagKey != '' AND {where_filters()}"
    listed = sorted(dict(inventory).items())
    keys = f"[{', '.join(literal(k) for k, _ in listed)}]"
    expiries = f"[{', '.join(f'toDate({literal(d.isoformat())})' for _, d in listed)}]"
    expiry = f"transform(FlagKey, {keys}, {expiries}, toDate('1970-01-01'))"
    status = (
        f"multiIf(NOT has({keys}, FlagKey), {literal(UNLISTED)}, {expiry} < today(), {literal(EXPIRED)}, "
        f"{literal(LISTED)})"
        if listed
        else literal(NO_INVENTORY)
    )
    shown = f"if(has({keys}, FlagKey), toNullable({expiry}), NULL)" if listed else "CAST(NULL AS Nullable(Date))"
    sql = (
        "SELECT FlagKey AS `Flag`, FlagVariant AS `Variant`, TenantId AS `Tenant`, Site AS `Site`, "
        f"WorkflowKind AS `Workflow kind`, toUInt64({evaluations}) AS `Evaluations`, "
        f"toNullable(round({evaluations} / sum({evaluations}) OVER (PARTITION BY FlagKey, TenantId, Site, "
        f"WorkflowKind), 4)) AS `Share of the flag there`, toNullable(max({rollups.LAST_START})) AS `Last evaluated`, "
        f"{shown} AS `Expiry`, {status} AS `Status`\n"
        f"FROM {hours}\nWHERE {evaluated}\nGROUP BY FlagKey, FlagVariant, TenantId, Site, WorkflowKind"
    )
    if listed:
        sql += (
            "\nUNION ALL\n"
            "SELECT key AS `Flag`, '' AS `Variant`, '' AS `Tenant`, '' AS `Site`, '' AS `Workflow kind`, "
            "toUInt64(0) AS `Evaluations`, CAST(NULL AS Nullable(Float64)) AS `Share of the flag there`, "
            "CAST(NULL AS Nullable(DateTime64(9))) AS `Last evaluated`, "
            f"toNullable(transform(key, {keys}, {expiries}, toDate('1970-01-01'))) AS `Expiry`, "
            f"{literal(STALE)} AS `Status`\n"
            f"FROM (SELECT arrayJoin({keys}) AS key)\n"
            f"WHERE key NOT IN (SELECT DISTINCT FlagKey FROM {hours} WHERE {evaluated})"
        )
    return f"SELECT * FROM (\n{sql}\n)\nORDER BY `Flag`, `Tenant`, `Site`, `Workflow kind`, `Variant`"


def build(database: str, flags: Iterable[tuple[str, date]] = ()) -> dict[str, Any]:
    """The dashboard; `flags`: the inventory's (key, expiry) for the flags panel's status."""
    b = Board(UID, "clinotel / Rollout and canary", "Canary against baseline, kill criteria, shadow agreement.",
              database, tags=["rollout"])  # fmt: skip
    f = where_filters()
    b.row("Kill criteria")
    about = (
        "Per workflow kind, each criterion's canary-to-baseline ratio, its limit and its confidence sequence (valid "
        "at every look); KILL when the ratio is past the limit and the sequence excludes 1. Decision latency has no "
        "test."
    )
    b.table("Kill criteria: canary against baseline", about, kill_criteria_sql(database), w=24, h=6)
    b.row("Canary against baseline")
    cohort = ("WorkflowKind", "RolloutCohort")
    b.series("under_triage_rate", by=cohort, w=8, title="Model under-triage: canary vs baseline")
    b.series("override_rate", by=cohort, w=8, title="Override rate: canary vs baseline")
    b.series("decision_latency_p95_ms", by=cohort, w=8, title="Decision latency p95: canary vs baseline")
    b.series("override_rate", by=("WorkflowKind", "FlagVariant"), title="Override rate by flag variant")
    b.series("under_triage_rate", by=("WorkflowKind", "ModelVersion"), title="Model under-triage by model version")
    b.row("Rollout")
    started = rollups.sample(INDICATORS["workflows"])
    b.timeseries(
        "Rollout-mode mix", "Workflows per rollout mode.",
        f"SELECT $__timeInterval({rollups.TIME_COLUMN}) AS time, RolloutMode, {started} AS workflows\n"
        f"FROM {identifier(database)}.{identifier(rollups.WORKFLOW_HOURS)}\n"
        f"WHERE {rollups.time_filter()} AND RolloutMode != '' AND {f}\n"
        "GROUP BY time, RolloutMode ORDER BY time", interval="1h",
    )  # fmt: skip
    shadow = INDICATORS["shadow_disagreement_rate"]
    paired, disagreed = rollups.sample(shadow), rollups.hits(shadow)
    b.timeseries(
        "Shadow agreement by shadow model", "Share of workflows where the shadow model agreed with the live decision.",
        f"SELECT $__timeInterval({rollups.TIME_COLUMN}) AS time, ShadowModelVersion, "
        f"({paired} - {disagreed}) / {paired} AS agreement\n"
        f"FROM {identifier(database)}.{identifier(rollups.WORKFLOW_HOURS)}\n"
        f"WHERE {rollups.time_filter()} AND ShadowModelVersion != '' AND {f}\n"
        f"GROUP BY time, ShadowModelVersion HAVING {paired} > 0 ORDER BY time", "percentunit", interval="1h",
    )  # fmt: skip
    b.row("Flags")
    about = (
        "Each flag's evaluations per variant and scope (tenant, site, workflow kind) in the range, from the decide "
        "stages' feature_flag.* attributes; against the inventory (flags.yaml): EXPIRED flags still evaluated, flags "
        "not in the inventory, and STALE flags listed but not evaluated in the range."
    )
    b.table("Flags: exposure per variant and scope, expired and stale", about, flags_sql(database, flags), w=24, h=8)
    return b.build()
