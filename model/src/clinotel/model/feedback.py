"""Clinician feedback joined to the workflow and decision it is about.

A feedback record (`record_feedback`) names its workflow in one of two ways: a span link to the
workflow's trace (recorded with the workflow's handle or inside it), or the workflow's kind and
pseudonymous identifier (recorded later, elsewhere, by identifier). The link wins; otherwise the
identifier finds the workflow (the latest started, should an identifier repeat). Feedback whose
workflow is unknown keeps an empty model version and decision, so nothing is dropped.
"""

from __future__ import annotations

from clinotel.model.signals import IS_FEEDBACK, attr
from clinotel.model.sql import hours_held
from clinotel.semconv import attributes as A

__all__ = ["feedback_decisions_sql"]


def feedback_decisions_sql(traces: str, workflows: str, where: str = "1") -> str:
    """One row per feedback record in the qualified span table `traces` where `where` holds (SQL
    over its rows), joined to the qualified workflows view `workflows` (merged): Timestamp, TenantId,
    kind, site, department, category, severity, trace (the linked workflow's TraceId, '' if none),
    workflow_id, joined (1 when its workflow, started within `hours_held`, was found), model_version,
    decision. Only the workflows
    some record links to are joined by trace (the records are few, the workflows many; the
    identifiers are not narrowed the same way: that would read every record's attributes twice)."""
    merged = f"{workflows} FINAL"
    # PREWHERE by name: inside a join ClickHouse does not move the condition there itself, and
    # would read every span's attributes (2.7x as long at 10M spans)
    linked = f"SELECT Links.TraceId[1] FROM {traces} PREWHERE {IS_FEEDBACK} WHERE {where}"
    return f"""SELECT f.Timestamp AS Timestamp, f.TenantId AS TenantId, f.kind AS kind, f.site AS site,
    f.department AS department, f.category AS category, f.severity AS severity, f.trace AS trace,
    f.wid AS workflow_id,
    toUInt8(bt.TraceId != '' OR bi.WorkflowId != '') AS joined,
    if(bt.TraceId != '', bt.ModelVersion, bi.ModelVersion) AS model_version,
    if(bt.TraceId != '', bt.DecisionValue, bi.DecisionValue) AS decision
FROM (
    SELECT Timestamp, TenantId, {attr(A.ABOUT_KIND.key)} AS kind, {attr(A.FEEDBACK_CATEGORY.key)} AS category,
        {attr(A.FEEDBACK_SEVERITY.key)} AS severity, Links.TraceId[1] AS trace,
        {attr(A.WORKFLOW_ID.key)} AS wid, {attr(A.SITE.key)} AS site, {attr(A.DEPARTMENT.key)} AS department
    FROM {traces}
    PREWHERE {IS_FEEDBACK}
    WHERE {where}
) AS f
LEFT JOIN (
    SELECT TenantId, TraceId, ModelVersion, DecisionValue FROM {merged}
    WHERE TraceId IN ({linked}) AND {hours_held("StartTime")}
) AS bt ON f.TenantId = bt.TenantId AND f.trace = bt.TraceId
LEFT JOIN (
    SELECT TenantId, WorkflowKind, WorkflowId, argMax(ModelVersion, StartTime) AS ModelVersion,
        argMax(DecisionValue, StartTime) AS DecisionValue
    FROM {merged} WHERE WorkflowId != '' AND {hours_held("StartTime")}
    GROUP BY TenantId, WorkflowKind, WorkflowId
) AS bi ON f.TenantId = bi.TenantId AND f.kind = bi.WorkflowKind AND f.wid = bi.WorkflowId"""
