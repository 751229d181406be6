"""Is the automation worth it: human minutes and touches per workflow by rollout phase, the
rework it created, and the net minutes saved against the shadow phase (the baseline), per site
and department, with intervals. All SQL, over `clinical_workflows` (the phase, the place) joined
with the effort recorded on its spans (`clinical.effort.*`, summed per trace) and its rework
records (`record_rework`, joined by pseudonymous workflow id and kind).

A workflow's **human minutes** are its stages' effort plus its rework's. Per phase: the mean and
its normal 95 % interval; the rework rate (workflows with any rework) with its Wilson interval.
**Net minutes saved** in a phase = (shadow mean − the phase's mean) per workflow, with Welch's
interval, times the phase's workflows: minutes saved on the stages minus minutes the rework
created, in one figure.
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Final

from clinotel.model.clinical import WORKFLOWS
from clinotel.model.signals import IS_REWORK, attr
from clinotel.model.sql import identifier, literal
from clinotel.model.stats import wilson_sql
from clinotel.model.tables import TRACES
from clinotel.model.workflow_signals import rework_by_workflow_sql
from clinotel.semconv import RolloutCohort, RolloutMode
from clinotel.semconv import attributes as A

__all__ = ["PHASE", "PLACE", "net_saved_sql", "per_workflow_sql", "phases_sql"]

Z95: Final = NormalDist().inv_cdf(0.975)
PHASE: Final = f"concat(RolloutMode, if(RolloutCohort = {literal(RolloutCohort.CANARY.value)}, ' canary', ''))"
"""A workflow's rollout phase: its rollout mode, and `canary` for the canary cohort."""
SHADOW: Final = literal(RolloutMode.SHADOW.value)
PLACE: Final = ("Site", "Department")
"""The places net minutes saved are compared within by default."""


def per_workflow_sql(database: str, when: str, where: str = "1") -> str:
    """One row per workflow started where `when` holds (SQL over `StartTime`) and `where` holds:
    TenantId, WorkflowKind, Site, Department, phase, minutes (stages + rework), touches,
    rework_minutes, reworked (0/1)."""
    db = identifier(database)
    effort = f"""SELECT TenantId, TraceId, sum(toFloat64OrZero({attr(A.EFFORT_MINUTES.key)})) AS m,
            sum(toInt64OrZero({attr(A.EFFORT_TOUCHES.key)})) AS t
        FROM {db}.{identifier(TRACES)}
        WHERE mapContains(SpanAttributes, {literal(A.EFFORT_MINUTES.key)}) AND NOT ({IS_REWORK})
        GROUP BY TenantId, TraceId"""
    rework = rework_by_workflow_sql(database)
    return f"""SELECT w.TenantId AS TenantId, w.WorkflowKind AS WorkflowKind, w.Site AS Site,
    w.Department AS Department, w.phase AS phase, w.StartTime AS StartTime,
    ifNull(e.m, 0) + ifNull(r.rm, 0) AS minutes, ifNull(e.t, 0) + ifNull(r.rt, 0) AS touches,
    ifNull(r.rm, 0) AS rework_minutes, toUInt8(ifNull(r.records, 0) > 0) AS reworked
FROM (
    SELECT TenantId, WorkflowKind, TraceId, WorkflowId, Site, Department, StartTime, {PHASE} AS phase
    FROM {db}.{identifier(WORKFLOWS)} FINAL
    WHERE ({when}) AND RolloutMode != '' AND ({where})
) AS w
LEFT JOIN ({effort}) AS e ON w.TenantId = e.TenantId AND w.TraceId = e.TraceId
LEFT JOIN ({rework}) AS r ON w.TenantId = r.TenantId AND w.WorkflowKind = r.kind AND w.WorkflowId = r.wid"""


def phases_sql(database: str, when: str, where: str = "1") -> str:
    """Per workflow kind and phase: workflows, mean human minutes (and its 95 % interval), mean
    touches, rework rate (and its Wilson 95 % interval), rework minutes per workflow, and the
    workflows with any rework (the rate's count, for tests between phases)."""
    low, high = wilson_sql("sum(reworked)", "count()", 0.95)
    half = f"{Z95!r} * stddevSampOrNull(minutes) / sqrt(count())"
    return f"""SELECT WorkflowKind AS kind, phase, count() AS workflows,
    round(avg(minutes), 2) AS minutes_per_workflow, round(avg(minutes) - {half}, 2) AS minutes_low,
    round(avg(minutes) + {half}, 2) AS minutes_high, round(avg(touches), 2) AS touches_per_workflow,
    round(avg(reworked), 4) AS rework_rate, round({low}, 4) AS rework_low, round({high}, 4) AS rework_high,
    round(avg(rework_minutes), 2) AS rework_minutes_per_workflow, sum(reworked) AS reworked_workflows
FROM (
{per_workflow_sql(database, when, where)}
)
GROUP BY kind, phase
ORDER BY kind, phase"""


def net_saved_sql(database: str, when: str, where: str = "1", by: tuple[str, ...] = PLACE) -> str:
    """Per workflow kind, place (`by`: columns of `per_workflow_sql`, site and department unless
    told) and phase (shadow left out): minutes saved per workflow against the same place's shadow
    phase, its Welch 95 % interval, and the net minutes saved in total (saved on the stages minus
    created by rework). `by=()` compares each phase with the kind's whole shadow phase."""
    unknown = [c for c in by if c not in PLACE]
    if unknown:
        raise ValueError(f"net minutes saved are compared by {', '.join(PLACE)}, not {', '.join(unknown)}")
    per = per_workflow_sql(database, when, where)
    keys = ("WorkflowKind", *by)
    group = ", ".join(keys)
    on = " AND ".join(f"p.{k} = b.{k}" for k in keys)
    places = "".join(f"p.{k} AS {k.lower()}, " for k in by)
    order = ", ".join(["kind", *(k.lower() for k in by), "phase"])
    diff = "(b.mean - p.mean)"
    se = "sqrt(b.var / b.n + p.var / p.n)"
    return f"""SELECT p.WorkflowKind AS kind, {places}p.phase AS phase,
    p.n AS workflows, b.n AS shadow_workflows, round(b.mean, 2) AS shadow_minutes, round(p.mean, 2) AS minutes,
    round({diff}, 2) AS saved_per_workflow, round({diff} - {Z95!r} * {se}, 2) AS saved_low,
    round({diff} + {Z95!r} * {se}, 2) AS saved_high, round({diff} * p.n, 1) AS net_minutes_saved
FROM (
    SELECT {group}, phase, count() AS n, avg(minutes) AS mean, varSamp(minutes) AS var
    FROM ({per}) WHERE phase != {SHADOW} GROUP BY {group}, phase
) AS p
INNER JOIN (
    SELECT {group}, count() AS n, avg(minutes) AS mean, varSamp(minutes) AS var
    FROM ({per}) WHERE phase = {SHADOW} GROUP BY {group}
) AS b ON {on}
WHERE p.n >= 2 AND b.n >= 2
ORDER BY {order}"""
