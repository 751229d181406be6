"""Operations: volume, stage latencies, queues, completion, scheduling fill, departments."""

from __future__ import annotations

from typing import Any

from clinotel.dashboards._panels import Board, where_filters
from clinotel.model import clinical
from clinotel.model.sql import identifier, literal
from clinotel.semconv import Stage

UID = "clinotel-operations"


def build(database: str) -> dict[str, Any]:
    b = Board(UID, "clinotel / Operations", "Workflow volume, stage latencies, queues and completion.", database)
    stages = f"{identifier(database)}.{identifier(clinical.STAGE_SPANS)}"
    workflows = f"{identifier(database)}.{identifier(clinical.WORKFLOWS)} FINAL"
    f = where_filters()
    # a lifecycle stage's span: not the late outcome, and not a shadow prediction (a zero-length
    # `decide` span recorded beside the live decision)
    stage = f"Stage NOT IN ('', {literal(Stage.OUTCOME.value)}) AND ifNull(Shadow, 0) = 0"
    b.row("Now")
    for name in ("workflows", "completion_rate", "end_to_end_p95_ms", "queue_wait_p95_ms", "decision_latency_p95_ms",
                 "slot_fill_rate"):  # fmt: skip
        b.stat(name)
    b.row("Volume and latency")
    b.timeseries(
        "Workflows per minute by kind", "Workflow instances started per minute.",
        f"SELECT $__timeInterval(StartTime) AS time, WorkflowKind, count() * 60 / $__interval_s AS per_minute\n"
        f"FROM {workflows}\nWHERE $__timeFilter(StartTime) AND {f}\nGROUP BY time, WorkflowKind ORDER BY time",
    )  # fmt: skip
    b.timeseries(
        "Stage latency p95", "95th centile of each lifecycle stage's duration.",
        f"SELECT $__timeInterval(Timestamp) AS time, Stage, quantile(0.95)(DurationMs) AS p95_ms\n"
        f"FROM {stages}\nWHERE $__timeFilter(Timestamp) AND {stage} AND {f}\n"
        "GROUP BY time, Stage ORDER BY time", "ms",
    )  # fmt: skip
    b.table(
        "Stage latency p50 / p95 / p99", "Each stage over the whole range (shadow predictions are not stages).",
        f"SELECT Stage, count() AS spans, round(quantile(0.5)(DurationMs), 1) AS p50_ms, "
        f"round(quantile(0.95)(DurationMs), 1) AS p95_ms, round(quantile(0.99)(DurationMs), 1) AS p99_ms\n"
        f"FROM {stages}\nWHERE $__timeFilter(Timestamp) AND {stage} AND {f}\n"
        "GROUP BY Stage ORDER BY p95_ms DESC",
    )  # fmt: skip
    b.timeseries(
        "Queue wait p95 by queue", "Time in the queue stage, 95th centile, per queue.",
        f"SELECT $__timeInterval(Timestamp) AS time, QueueName, quantile(0.95)(DurationMs) AS p95_ms\n"
        f"FROM {stages}\nWHERE $__timeFilter(Timestamp) AND Stage = {literal(Stage.QUEUE.value)} AND QueueName != ''"
        f" AND {f}\n"
        "GROUP BY time, QueueName ORDER BY time", "ms",
    )  # fmt: skip
    b.series("end_to_end_p95_ms")
    b.timeseries(
        "Backlog (queue depth)", "The deepest queue depth reported at enqueue, per queue.",
        f"SELECT $__timeInterval(Timestamp) AS time, QueueName, max(QueueDepth) AS depth\n"
        f"FROM {stages}\nWHERE $__timeFilter(Timestamp) AND QueueDepth IS NOT NULL AND {f}\n"
        "GROUP BY time, QueueName ORDER BY time",
    )  # fmt: skip
    b.row("Completion and scheduling")
    b.series("completion_rate", w=8)
    b.series("slot_fill_rate", w=8)
    b.timeseries(
        "Time to schedule p50 (days)", "Lead time of booked appointments, median.",
        f"SELECT $__timeInterval(StartTime) AS time, quantile(0.5)(LeadTimeDays) AS lead_days\n"
        f"FROM {workflows}\nWHERE $__timeFilter(StartTime) AND WorkflowKind = 'scheduling' "
        f"AND LeadTimeDays IS NOT NULL AND {f}\nGROUP BY time ORDER BY time", "short", w=8,
    )  # fmt: skip
    b.table(
        "Throughput by department", "Workflows, completion and end-to-end time per department.",
        f"SELECT Department, WorkflowKind, count() AS workflows, "
        f"round(countIf(OutcomeStatus = 'completed') / nullIf(countIf(OutcomeStatus != ''), 0), 3) AS completed, "
        f"round(quantile(0.95)(dateDiff('millisecond', StartTime, EndTime)) / 1000, 1) AS e2e_p95_s\n"
        f"FROM {workflows}\nWHERE $__timeFilter(StartTime) AND {f}\nGROUP BY Department, WorkflowKind "
        "ORDER BY workflows DESC", w=24,
    )  # fmt: skip
    return b.build()
