"""Telemetry health: spans accepted and refused, attributes dropped, ingestion lag, silent services.

The collector's own rows (`clinotel_collector_metrics`) are collector-wide: an operator's
all-tenant reader sees them, a tenant's reader sees those panels empty."""

from __future__ import annotations

from typing import Any

from clinotel.dashboards._panels import Board, where_filters
from clinotel.model import collector_metrics as M
from clinotel.model import rollups, tables
from clinotel.model.sql import identifier, literal

UID = "clinotel-telemetry-health"
SILENT_AFTER_MIN = 10


def build(database: str) -> dict[str, Any]:
    b = Board(UID, "clinotel / Telemetry health", "Is the telemetry itself arriving, complete and clean?", database)
    metrics = f"{identifier(database)}.{identifier(tables.COLLECTOR_METRICS)}"
    tenant = where_filters(["TenantId"])
    sdk = f"{identifier(database)}.{identifier(tables.SDK_TELEMETRY)}"
    b.row("Collector")
    b.timeseries(
        "Spans accepted per second", "Spans the collector acknowledged (written to its log).",
        f"SELECT $__timeInterval(Timestamp) AS time, sum(Value) / $__interval_s AS spans_per_s\n"
        f"FROM {metrics}\nWHERE $__timeFilter(Timestamp) AND Metric = {literal(M.SPANS_ACCEPTED.name)}\n"
        "GROUP BY time ORDER BY time",
    )  # fmt: skip
    b.timeseries(
        "Requests accepted, and requests and spans refused by reason",
        "Requests the collector acknowledged, whole requests it refused and single spans it refused.",
        f"SELECT $__timeInterval(Timestamp) AS time, multiIf(Metric = {literal(M.REQUESTS.name)}, 'accepted', "
        "concat(if(Metric LIKE '%requests%', 'request', 'span'), ' refused: ', Labels['reason'])) AS what, "
        "sum(Value) AS n\n"
        f"FROM {metrics}\nWHERE $__timeFilter(Timestamp) AND Metric IN ({literal(M.REQUESTS.name)}, "
        f"{literal(M.REQUESTS_REFUSED.name)}, {literal(M.SPANS_REFUSED.name)})\n"
        "GROUP BY time, what ORDER BY time",
    )  # fmt: skip
    b.timeseries(
        "Ingestion lag p99 (s)", "From acknowledgement to queryable, 99th centile, per collector.",
        f"SELECT $__timeInterval(Timestamp) AS time, Instance, max(Value) AS seconds\n"
        f"FROM {metrics}\nWHERE $__timeFilter(Timestamp) AND Metric = {literal(M.INGEST_FRESHNESS_SECONDS.name)} "
        "AND Labels['quantile'] = '0.99'\nGROUP BY time, Instance ORDER BY time", "s",
    )  # fmt: skip
    b.timeseries(
        "Write-ahead log pending (bytes)", "Acknowledged bytes not yet in ClickHouse; 503s start at the bound.",
        f"SELECT $__timeInterval(Timestamp) AS time, Instance, max(Value) AS pending\n"
        f"FROM {metrics}\nWHERE $__timeFilter(Timestamp) AND Metric = {literal(M.WAL_PENDING_BYTES.name)}\n"
        "GROUP BY time, Instance ORDER BY time", "bytes",
    )  # fmt: skip
    last = literal(M.ROLLUP_LAST_REFRESH.name)
    b.timeseries(
        "Rollups: seconds since the last refresh, and refreshes failed",
        "The dashboards' hourly rollups, per collector: how long ago a refresh last ended well (every 30 s or so "
        "while it works; the panels reading the rollups are that old), and failed refreshes and groups of tenants "
        "kept as they were (the rule rollups_not_refreshed opens a ticket).",
        f"SELECT $__timeInterval(Timestamp) AS time, concat(Instance, ': ', multiIf(Metric = {last}, "
        "'seconds since the last refresh', concat('failed: ', "
        "Labels['what']))) AS what, "
        f"if(countIf(Metric = {last}) > 0, "
        f"maxIf(greatest(0, toUnixTimestamp64Milli(Timestamp) / 1000 - Value), Metric = {last} AND Value > 0), "
        f"sumIf(Value, Metric = {literal(M.ROLLUP_FAILURES.name)})) AS value\n"
        f"FROM {metrics}\nWHERE $__timeFilter(Timestamp) AND Metric IN ({last}, {literal(M.ROLLUP_FAILURES.name)})\n"
        "GROUP BY time, what ORDER BY time",
    )  # fmt: skip
    b.row("Late ground truth")
    unjoined = f"{identifier(database)}.{identifier(tables.UNJOINED_OUTCOMES)}"
    truth = f"{identifier(database)}.{identifier(tables.TRUTH_HOURS)}"
    scoped = where_filters(["TenantId", "WorkflowKind"])
    # both from the range's first hour whole, as the rollup holds it
    outcomes = (
        f"SELECT toDateTime64({rollups.TIME_COLUMN}, 9, 'UTC') AS at, TenantId, WorkflowKind, "
        "if(Joined = 1, 'joined a workflow', 'linked to a workflow never received') AS what, Outcomes AS n\n"
        f"  FROM {truth}\n  WHERE {rollups.time_filter()} AND {scoped}\n"
        "  UNION ALL\n"
        f"  SELECT Timestamp, TenantId, WorkflowKind, concat('joined nothing: ', Reason), toInt64(1)\n"
        f"  FROM {unjoined}\n  WHERE {rollups.time_filter('Timestamp')} AND {scoped}"
    )
    b.timeseries(
        "Late outcomes: joined and not",
        "Workflows whose ground truth arrived, and late outcome spans that joined no workflow (no span link and no "
        "workflow with their pseudonymous id, in their tenant and kind, started before them) by reason: truth the "
        "safety figures do not see. An outcome that joins nothing is not a workflow.",
        f"SELECT $__timeInterval(at) AS time, what, sum(n) AS outcomes\nFROM (\n  {outcomes}\n)\n"
        "GROUP BY time, what ORDER BY time", interval="1h",
    )  # fmt: skip
    b.table(
        "Late outcomes by tenant and kind",
        "Ground truth that joined a workflow, that joined nothing (by reason), and outcomes linked to a workflow "
        "clinotel never received (a workflow row with no workflow span).",
        f"SELECT TenantId AS `Tenant`, WorkflowKind AS `Workflow kind`, what AS `Outcome`, sum(n) AS `Outcomes`\n"
        f"FROM (\n  {outcomes}\n)\nGROUP BY TenantId, WorkflowKind, what\n"
        "ORDER BY `Tenant`, `Workflow kind`, `Outcomes` DESC",
    )  # fmt: skip
    b.row("Services")
    sums = ", ".join(
        f"sum({identifier(column)}) AS {identifier(reason)}" for reason, column in tables.SDK_TELEMETRY_COLUMNS.items()
    )
    b.timeseries(
        "Attributes dropped and values redacted by the SDKs and the collector",
        "What each service's clinotel gate dropped or redacted, from the clinotel.telemetry spans it sends, and "
        "what the collector dropped of the span attributes of services without the library (instance "
        f"{tables.COLLECTOR_DROPS_INSTANCE}: keys not registered, values failing their check or looking like PHI).",
        f"SELECT $__timeInterval(Timestamp) AS time, {sums}\nFROM {sdk}\n"
        f"WHERE $__timeFilter(Timestamp) AND {tenant}\nGROUP BY time ORDER BY time",
    )  # fmt: skip
    b.table(
        "Services and when they were last heard",
        f"Silent: nothing for {SILENT_AFTER_MIN} minutes (from the hourly service rollup, refreshed every 30 s).",
        f"SELECT TenantId AS tenant, ServiceName AS service, max(LastSpan) AS last_span, sum(Spans) AS spans, "
        f"if(max(LastSpan) < now() - INTERVAL {SILENT_AFTER_MIN} MINUTE, 'silent', 'ok') AS state\n"
        f"FROM {identifier(database)}.{identifier(rollups.SERVICE_HOURS)}\nWHERE {rollups.time_filter()} AND {tenant}\n"
        "GROUP BY tenant, service ORDER BY last_span",
    )  # fmt: skip
    return b.build()
