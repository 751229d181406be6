"""Every table clinotel stores into, and the column names others read or write by name.

`otel_traces` keeps the OpenTelemetry Collector contrib ClickHouse exporter's columns exactly; the
clinical views are described in `clinotel.model.clinical`. The DDL lives in the collector's frozen
migrations; a test compares the two.
"""

from __future__ import annotations

from typing import Final

from clinotel.semconv import attributes as A

__all__ = [
    "ALERT_EVENTS",
    "ALERT_EVENT_COLUMNS",
    "CHANGES",
    "COHORT_HOURS",
    "COLLECTOR_DROPS_INSTANCE",
    "COLLECTOR_METRICS",
    "DEFAULT_DATABASE",
    "FEEDBACK_HOURS",
    "ROLLUP_TABLES",
    "SDK_TELEMETRY",
    "SDK_TELEMETRY_COLUMNS",
    "SERVICE_HOURS",
    "SIGNAL_HOURS",
    "STAGE_HOURS",
    "STAGE_SPANS",
    "TENANT_COLUMN",
    "TRACES",
    "TRACES_DROP_COLUMNS",
    "TRACES_INSERT_COLUMNS",
    "TRACE_ID_TS",
    "TRUTH_HOURS",
    "UNJOINED_OUTCOMES",
    "UNJOINED_OUTCOME_COLUMNS",
    "VERSIONS",
    "WORKFLOWS",
    "WORKFLOW_HOURS",
    "WORKFLOW_IDS",
    "tenant_tables",
]

DEFAULT_DATABASE: Final = "clinotel"
"""The database clinotel's tables live in unless a deployment names another."""
TRACES: Final = "otel_traces"
TRACE_ID_TS: Final = "otel_traces_trace_id_ts"
VERSIONS: Final = "clinotel_schema_versions"
STAGE_SPANS: Final = "clinical_stage_spans"
WORKFLOWS: Final = "clinical_workflows"
UNJOINED_OUTCOMES: Final = "clinical_unjoined_outcomes"
WORKFLOW_IDS: Final = "clinical_workflow_ids"
"""The latest workflow per (tenant, kind, pseudonymous workflow id): how an outcome without a span
link finds its workflow. Internal to the store: no reader names it."""
WORKFLOW_HOURS: Final = "clinical_workflow_hours"
"""The workflows rolled up per tenant, kind, hour and the dashboards' dimensions (migration 9;
`clinotel.model.rollups` says how to read it)."""
SIGNAL_HOURS: Final = "clinical_signal_hours"
"""The spans' signals (drift features, data quality, rework, feedback) rolled up per tenant, kind,
hour, site and department (migration 10; `clinotel.model.rollups` says how to read it)."""
STAGE_HOURS: Final = "clinical_stage_hours"
"""The stage spans rolled up per tenant, kind, hour, the dashboards' dimensions, stage, queue and
shadow mode: spans, duration centile state, deepest queue (migration 11)."""
SERVICE_HOURS: Final = "clinotel_service_hours"
"""Spans per tenant, service and hour, with the latest span's time (migration 11)."""
FEEDBACK_HOURS: Final = "clinical_feedback_hours"
"""Clinician feedback rolled up per tenant, kind, hour, site, department, category and severity,
with the model version and decision each report judged (migration 11)."""
TRUTH_HOURS: Final = "clinical_truth_hours"
"""Late ground truth per tenant, kind and hour of its arrival, joined to a workflow or linked to
one never received (migration 12)."""
COHORT_HOURS: Final = "clinical_cohort_hours"
"""The fairness indicators rolled up per cohort dimension and group, tenant, kind, hour and the
dashboards' dimensions (migration 10; `clinotel.model.rollups` says how to read it)."""
CHANGES: Final = "clinotel_changes"
"""Change events (`clinotel.change` spans), one row each with their fields as columns, recomputed
from `otel_traces` with the rollups (migration 19; `clinotel.model.changes`): what the dashboards'
annotations read."""
COLLECTOR_METRICS: Final = "clinotel_collector_metrics"
ALERT_EVENTS: Final = "clinotel_alert_events"
SDK_TELEMETRY: Final = "clinotel_sdk_telemetry"
TENANT_COLUMN: Final = "TenantId"

SDK_TELEMETRY_COLUMNS: Final = {
    reason: "".join(word.capitalize() for word in reason.split("_")) for reason in A.HEALTH_COUNTERS
}
"""Reason (`clinotel.semconv.attributes.HEALTH_COUNTERS`) -> its column in `clinotel_sdk_telemetry`."""
ALERT_EVENT_COLUMNS: Final = (
    "Timestamp", "TenantId", "Rule", "Labels", "Event", "Severity", "Value", "Sample", "Threshold", "Receiver",
    "Attempt", "Detail",
)  # fmt: skip
"""The alert audit trail's columns, in insert order."""
TRACES_INSERT_COLUMNS: Final = (
    "Timestamp", "TraceId", "SpanId", "ParentSpanId", "TraceState", "SpanName", "SpanKind", "ServiceName",
    "ResourceAttributes", "ScopeName", "ScopeVersion", "SpanAttributes", "Duration", "StatusCode", "StatusMessage",
    "Events.Timestamp", "Events.Name", "Events.Attributes", "Links.TraceId", "Links.SpanId", "Links.TraceState",
    "Links.Attributes",
)  # fmt: skip
"""The contrib exporter's INSERT columns, in its order."""
TRACES_DROP_COLUMNS: Final = ("AttributesDroppedUnregistered", "AttributesDroppedInvalid", "AttributesDroppedPhi")
"""clinotel's own `otel_traces` columns (migration 22): what the collector dropped of each span's
attributes (keys not registered, values failing their check, values looking like PHI); 0 in rows
another pipeline wrote."""
COLLECTOR_DROPS_INSTANCE: Final = "clinotel-collector"
"""`clinotel_sdk_telemetry.ServiceInstance` of the rows counting the collector's drops."""
UNJOINED_OUTCOME_COLUMNS: Final = (
    "TenantId", "Timestamp", "WorkflowKind", "WorkflowId", "TraceId", "ServiceName", "Reason",
)  # fmt: skip
"""`clinical_unjoined_outcomes`: late outcome spans that joined no workflow, and why."""


ROLLUP_TABLES: Final = (
    WORKFLOW_HOURS, SIGNAL_HOURS, COHORT_HOURS, FEEDBACK_HOURS, STAGE_HOURS, SERVICE_HOURS, TRUTH_HOURS, CHANGES,
)  # fmt: skip
"""The tables the collector recomputes from the spans and workflows (`clinotel.model.rollups`; the
change events, `clinotel.model.changes`)."""


def tenant_tables() -> tuple[str, ...]:
    """The tables with a `TenantId` column: what readers may query, each filtered to their tenant."""
    return (
        TRACES, STAGE_SPANS, WORKFLOWS, *ROLLUP_TABLES, UNJOINED_OUTCOMES,
        COLLECTOR_METRICS, ALERT_EVENTS, SDK_TELEMETRY,
    )  # fmt: skip
