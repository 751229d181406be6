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
from clinotel.model.sql import held_since, identifier, literal
from clinotel.model.stats import wilson_sql
from clinotel.model.tables import TRACES
from clinotel.model.workflow_signals import rework_by_workflow_sql
from clinotel.semconv import RolloutCohort, RolloutMode
from clinotel.semconv import attributes as A

__all__ = [
    "EFFORT_COLUMNS",
    "EFFORT_JOIN",
    "PHASE",
    "PLACE",
    "ROLLUP_SUMS",
    "effort_by_trace_sql",
    "net_saved_sql",
    "per_workflow_sql",
    "phases_sql",
]

Z95: Final = NormalDist().inv_cdf(0.975)
PHASE: Final = f"concat(RolloutMode, if(RolloutCohort = {literal(RolloutCohort.CANARY.value)}, ' canary', ''))"
"""A workflow's rollout phase: its rollout mode, and `canary` for the canary cohort."""
SHADOW: Final = literal(RolloutMode.SHADOW.value)
PLACE: Final = ("Site", "Department")
"""The places net minutes saved are compared within by default."""


def effort_by_trace_sql(
    traces: str, since: str | None = None, *, among: str | None = None, where: str | None = None
) -> str:
    """The effort recorded on a workflow's own spans (rework records aside), per TenantId and
    TraceId: m (minutes), t (touches); spans within `hours_held`, at or after SQL instant `since`
    only, of the traces the SQL `among` selects only, and where the SQL condition `where` holds,
    when given."""
    when = f" AND {held_since('Timestamp', since)}"
    when += "" if among is None else f" AND TraceId IN ({among})"
    when += "" if where is None else f" AND ({where})"
    return f"""SELECT TenantId, TraceId, sum(toFloat64OrZero({attr(A.EFFORT_MINUTES.key)})) AS m,
            sum(toInt64OrZero({attr(A.EFFORT_TOUCHES.key)})) AS t
        FROM {traces}
        WHERE mapContains(SpanAttributes, {literal(A.EFFORT_MINUTES.key)}) AND NOT ({IS_REWORK}){when}
        GROUP BY TenantId, TraceId"""


EFFORT_COLUMNS: Final = (
    ("minutes", "ifNull(e.m, 0) + ifNull(r.rm, 0)"),
    ("touches", "ifNull(e.t, 0) + ifNull(r.rt, 0)"),
    ("rework_minutes", "ifNull(r.rm, 0)"),
    ("reworked", "toUInt8(ifNull(r.records, 0) > 0)"),
)
"""A workflow's effort as the join of its row `w` with its spans' effort `e` and its rework `r`."""
EFFORT_JOIN: Final = (
    "LEFT JOIN ({effort}) AS e ON w.TenantId = e.TenantId AND w.TraceId = e.TraceId\n"
    "LEFT JOIN ({rework}) AS r ON w.TenantId = r.TenantId AND w.WorkflowKind = r.kind AND w.WorkflowId = r.wid"
)
"""How a workflow row `w` meets `effort_by_trace_sql` and `rework_by_workflow_sql`."""


def per_workflow_sql(database: str, when: str, where: str = "1") -> str:
    """One row per workflow started where `when` holds (SQL over `StartTime`) and `where` holds:
    TenantId, WorkflowKind, Site, Department, phase, minutes (stages + rework), touches,
    rework_minutes, reworked (0/1)."""
    db = identifier(database)
    effort = effort_by_trace_sql(f"{db}.{identifier(TRACES)}")
    rework = rework_by_workflow_sql(database)
    columns = ", ".join(f"{sql} AS {name}" for name, sql in EFFORT_COLUMNS)
    return f"""SELECT w.TenantId AS TenantId, w.WorkflowKind AS WorkflowKind, w.Site AS Site,
    w.Department AS Department, w.phase AS phase, w.StartTime AS StartTime, {columns}
FROM (
    SELECT TenantId, WorkflowKind, TraceId, WorkflowId, Site, Department, StartTime, {PHASE} AS phase
    FROM {db}.{identifier(WORKFLOWS)} FINAL
    WHERE ({when}) AND RolloutMode != '' AND ({where})
) AS w
{EFFORT_JOIN.format(effort=effort, rework=rework)}"""


_SUMS: Final = (
    ("n", "effort_rows", "1"),
    ("sm", "effort_minutes", "minutes"),
    ("sq", "effort_minutes_sq", "minutes * minutes"),
    ("st", "effort_touches", "touches"),
    ("rw", "reworked", "reworked"),
    ("rm", "rework_minutes", "rework_minutes"),
)
"""(name in the figures' SQL, the hourly rollup's column, what it sums per workflow of
`per_workflow_sql`): the sums every effort figure is computed from."""
ROLLUP_SUMS: Final = tuple((column, per_workflow) for _, column, per_workflow in _SUMS)
"""The hourly rollup's effort columns (`clinotel.model.rollups`) and what each sums per workflow
(`EFFORT_COLUMNS`), over the workflows with a rollout mode."""
_VAR: Final = "if(n > 1, greatest(0., (sq - sm * sm / n) / (n - 1)), NULL)"
"""The sample variance of the minutes from their sums (what varSamp gives over the rows)."""


def _sums(database: str, when: str, where: str, keys: tuple[str, ...], rollup: str | None) -> str:
    """Per `keys` (columns of `per_workflow_sql`, `phase` among them): n, sm, sq (minutes and their
    squares summed), st, rw, rm; from the workflows view, or from the qualified rollup `rollup`
    (then `when` is a condition on its hours)."""
    group = ", ".join(keys)
    if rollup is None:
        sums = ", ".join(f"sum({per_workflow}) AS {name}" for name, _, per_workflow in _SUMS)
        return f"SELECT {group}, {sums}\nFROM (\n{per_workflow_sql(database, when, where)}\n)\nGROUP BY {group}"
    select = ", ".join(f"{PHASE} AS phase" if k == "phase" else k for k in keys)
    sums = ", ".join(f"sum({column}) AS {name}" for name, column, _ in _SUMS)
    return (
        f"SELECT {select}, {sums}\nFROM {rollup}\nWHERE ({when}) AND RolloutMode != '' AND ({where})\nGROUP BY {group}"
    )


def phases_sql(database: str, when: str, where: str = "1", *, rollup: str | None = None) -> str:
    """Per workflow kind and phase: workflows, mean human minutes (and its 95 % interval), mean
    touches, rework rate (and its Wilson 95 % interval), rework minutes per workflow, and the
    workflows with any rework (the rate's count, for tests between phases). From the qualified
    hourly rollup `rollup` when given (`when` then selects its hours)."""
    low, high = wilson_sql("rw", "n", 0.95)
    half = f"{Z95!r} * sqrt({_VAR}) / sqrt(n)"
    return f"""SELECT WorkflowKind AS kind, phase, n AS workflows,
    round(sm / n, 2) AS minutes_per_workflow, round(sm / n - {half}, 2) AS minutes_low,
    round(sm / n + {half}, 2) AS minutes_high, round(st / n, 2) AS touches_per_workflow,
    round(rw / n, 4) AS rework_rate, round({low}, 4) AS rework_low, round({high}, 4) AS rework_high,
    round(rm / n, 2) AS rework_minutes_per_workflow, rw AS reworked_workflows
FROM (
{_sums(database, when, where, ("WorkflowKind", "phase"), rollup)}
)
WHERE n > 0
ORDER BY kind, phase"""


def net_saved_sql(
    database: str, when: str, where: str = "1", by: tuple[str, ...] = PLACE, *, rollup: str | None = None
) -> str:
    """Per workflow kind, place (`by`: columns of `per_workflow_sql`, site and department unless
    told) and phase (shadow left out): minutes saved per workflow against the same place's shadow
    phase, its Welch 95 % interval, and the net minutes saved in total (saved on the stages minus
    created by rework). `by=()` compares each phase with the kind's whole shadow phase. From the
    qualified hourly rollup `rollup` when given (`when` then selects its hours)."""
    unknown = [c for c in by if c not in PLACE]
    if unknown:
        raise ValueError(f"net minutes saved are compared by {', '.join(PLACE)}, not {', '.join(unknown)}")
    keys = ("WorkflowKind", *by)
    sums = _sums(database, when, where, (*keys, "phase"), rollup)
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
    SELECT {group}, phase, n, sm / n AS mean, {_VAR} AS var
    FROM ({sums}) WHERE phase != {SHADOW} AND n > 0
) AS p
INNER JOIN (
    SELECT {group}, n, sm / n AS mean, {_VAR} AS var
    FROM (
        SELECT {group}, sum(s.n) AS n, sum(s.sm) AS sm, sum(s.sq) AS sq
        FROM ({sums}) AS s WHERE s.phase = {SHADOW} GROUP BY {group}
    )
) AS b ON {on}
WHERE p.n >= 2 AND b.n >= 2
ORDER BY {order}"""
