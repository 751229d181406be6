"""Clinician feedback joined to the workflow and decision it is about.

A feedback record (`record_feedback`) names its workflow in one of two ways: a span link to the
workflow's trace (recorded with the workflow's handle or inside it), or the workflow's kind and
pseudonymous identifier (recorded later, elsewhere, by identifier). The link wins; otherwise the
identifier finds the workflow (the latest started, should an identifier repeat). Feedback whose
workflow is unknown keeps an empty model version and decision, so nothing is dropped.
"""

from __future__ import annotations

from clinotel.model.clinical import WORKFLOWS
from clinotel.model.signals import IS_FEEDBACK, attr
from clinotel.model.sql import identifier
from clinotel.model.tables import TRACES
from clinotel.semconv import attributes as A

__all__ = ["feedback_decisions_sql"]


def feedback_decisions_sql(database: str, where: str = "1") -> str:
    """One row per feedback record where `where` holds (SQL over `otel_traces` rows): Timestamp,
    TenantId, kind, category, severity, trace (the linked workflow's TraceId, '' if none),
    workflow_id, joined (1 when its workflow was found), model_version, decision."""
    db = identifier(database)
    workflows = f"{db}.{identifier(WORKFLOWS)} FINAL"
    return f"""SELECT f.Timestamp AS Timestamp, f.TenantId AS TenantId, f.kind AS kind, f.category AS category,
    f.severity AS severity, f.trace AS trace, f.wid AS workflow_id,
    toUInt8(bt.TraceId != '' OR bi.WorkflowId != '') AS joined,
    if(bt.TraceId != '', bt.ModelVersion, bi.ModelVersion) AS model_version,
    if(bt.TraceId != '', bt.DecisionValue, bi.DecisionValue) AS decision
FROM (
    SELECT Timestamp, TenantId, {attr(A.ABOUT_KIND.key)} AS kind, {attr(A.FEEDBACK_CATEGORY.key)} AS category,
        {attr(A.FEEDBACK_SEVERITY.key)} AS severity, Links.TraceId[1] AS trace,
        {attr(A.WORKFLOW_ID.key)} AS wid
    FROM {db}.{identifier(TRACES)}
    WHERE {IS_FEEDBACK} AND ({where})
) AS f
LEFT JOIN (
    SELECT TenantId, TraceId, ModelVersion, DecisionValue FROM {workflows}
) AS bt ON f.TenantId = bt.TenantId AND f.trace = bt.TraceId
LEFT JOIN (
    SELECT TenantId, WorkflowKind, WorkflowId, argMax(ModelVersion, StartTime) AS ModelVersion,
        argMax(DecisionValue, StartTime) AS DecisionValue
    FROM {workflows} WHERE WorkflowId != '' GROUP BY TenantId, WorkflowKind, WorkflowId
) AS bi ON f.TenantId = bi.TenantId AND f.kind = bi.WorkflowKind AND f.wid = bi.WorkflowId"""
