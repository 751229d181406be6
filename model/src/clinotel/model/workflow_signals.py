"""Signals per workflow, for the rules that compare workflows with each other (a canary against
its baseline, a cohort group against the reference group): each workflow of the workflows view
with two flags, `SignalRow` (the signal is about it) and `SignalHit` (it failed).

- a data-quality signal: the workflow recorded the field (`SignalRow`) and at least one of its
  spans failed the signal's check (`SignalHit`): the share of decisions with stale demographics
  among those that reported their age, for example;
- `rework_rate`: every workflow is a row, and it is a hit when any rework record names it (by
  tenant, workflow kind and pseudonymous identifier). Workflows reworked ÷ workflows: a rate, unlike
  the span-level signal (rework records ÷ workflows started, which can exceed 1).

The rows keep the workflows view's columns those rules read (`COLUMNS`: rollout cohort, model
version, cohort dimensions), so the indicators' canary and disparity SQL and statistics run on them unchanged.
"""

from __future__ import annotations

from typing import Final

from clinotel.model.clinical import WORKFLOWS
from clinotel.model.indicators import COHORT_DIMENSIONS, STRATUM, Indicator
from clinotel.model.signals import IS_REWORK, SIGNALS, attr
from clinotel.model.sql import held_since, identifier
from clinotel.model.tables import TRACES
from clinotel.semconv import attributes as A

__all__ = ["WORKFLOW_RATES", "rework_by_workflow_sql", "workflow_rate", "workflow_signal_sql"]

WORKFLOW_RATES: Final = (
    "context_missing_rate",
    "stale_demographics_rate",
    "late_lab_rate",
    "mapping_error_rate",
    "rework_rate",
)
"""The signals that are a rate per workflow: the ones canary and disparity rules accept."""


COLUMNS: Final = (
    "TenantId", "WorkflowKind", "TraceId", "WorkflowId", "StartTime", *(c for c, _ in STRATUM[2:]), *COHORT_DIMENSIONS,
)  # fmt: skip
"""The workflows view's columns the rows keep: the stratum, the cohort dimensions, the time."""


def rework_by_workflow_sql(
    database: str, since: str | None = None, *, traces: str | None = None, where: str | None = None
) -> str:
    """Rework records grouped by the workflow they name: TenantId, kind, wid, rm (minutes), rt
    (touches), records; those within `hours_held`, at or after SQL instant `since` only, and where
    the SQL condition `where` holds, when given; read from the qualified table `traces` when given
    (a cluster's local table), else the database's spans."""
    when = f" AND {held_since('Timestamp', since)}"
    when += "" if where is None else f" AND ({where})"
    table = traces or f"{identifier(database)}.{identifier(TRACES)}"
    return f"""SELECT TenantId, {attr(A.ABOUT_KIND.key)} AS kind, {attr(A.WORKFLOW_ID.key)} AS wid,
            sum(toFloat64OrZero({attr(A.EFFORT_MINUTES.key)})) AS rm,
            sum(toInt64OrZero({attr(A.EFFORT_TOUCHES.key)})) AS rt, count() AS records
        FROM {table}
        WHERE {IS_REWORK} AND wid != ''{when}
        GROUP BY TenantId, kind, wid"""


def workflow_signal_sql(name: str, database: str, since: str | None = None) -> str:
    """The workflows view's rows with `SignalRow` and `SignalHit` (UInt8) for signal `name`, one
    of `WORKFLOW_RATES`; spans before SQL instant `since` are not read, when given."""
    if name not in WORKFLOW_RATES:
        raise ValueError(f"{name} is not a signal per workflow; known: {', '.join(WORKFLOW_RATES)}")
    db = identifier(database)
    when = "" if since is None else f" WHERE StartTime >= {since}"
    # only what canary and disparity rules read: a FINAL over every column costs twice as much
    columns = ", ".join(identifier(c) for c in COLUMNS)
    workflows = f"(SELECT {columns} FROM {db}.{identifier(WORKFLOWS)} FINAL{when}) AS w"
    if name == "rework_rate":
        return (
            "SELECT w.*, toUInt8(1) AS SignalRow, toUInt8(r.records > 0) AS SignalHit\n"
            f"FROM {workflows}\nLEFT JOIN ({rework_by_workflow_sql(database, since)}) AS r\n"
            "ON w.TenantId = r.TenantId AND w.WorkflowKind = r.kind AND w.WorkflowId = r.wid"
        )
    s = SIGNALS[name]
    assert s.hit is not None
    when = f" AND {held_since('Timestamp', since)}"
    spans = (
        f"SELECT TenantId, TraceId, toUInt8(1) AS row, toUInt8(max({s.hit})) AS hit "
        f"FROM {db}.{identifier(TRACES)} WHERE ({s.where}){when} GROUP BY TenantId, TraceId"
    )
    return (
        "SELECT w.*, s.row AS SignalRow, s.hit AS SignalHit\n"
        f"FROM {workflows}\nLEFT JOIN ({spans}) AS s ON w.TenantId = s.TenantId AND w.TraceId = s.TraceId"
    )


def workflow_rate(name: str) -> Indicator:
    """Signal `name` as a rate indicator over `workflow_signal_sql`'s rows."""
    s = SIGNALS[name]
    return Indicator(
        name, s.title, s.description, "percentunit", "rate", "SignalRow = 1", hit="SignalHit = 1",
        min_sample=s.min_sample, higher_is_worse=s.higher_is_worse,
        denominator="workflows the signal is about",
    )  # fmt: skip
