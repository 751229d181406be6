"""Operations: volume, stage latencies, queues, completion, scheduling fill, departments."""

from __future__ import annotations

from typing import Any

from clinotel.dashboards._panels import Board, where_filters
from clinotel.model import rollups
from clinotel.model.indicators import INDICATORS
from clinotel.model.sql import identifier, literal
from clinotel.semconv import Stage

UID = "clinotel-operations"


def build(database: str) -> dict[str, Any]:
    b = Board(UID, "clinotel / Operations", "Workflow volume, stage latencies, queues and completion.", database)
    stage_hours = f"{identifier(database)}.{identifier(rollups.STAGE_HOURS)}"
    centiles = ", ".join(f"round(c[{k}], 1) AS p{round(q * 100)}_ms" for k, q in enumerate(rollups.STAGE_CENTILES, 1))
    hours = f"{identifier(database)}.{identifier(rollups.WORKFLOW_HOURS)}"
    f = where_filters()
    # a lifecycle stage's span: not the late outcome, and not a shadow prediction (a zero-length
    # `decide` span recorded beside the live decision)
    stage = f"Stage NOT IN ('', {literal(Stage.OUTCOME.value)}) AND Shadow = 0"
    b.row("Now")
    for name in ("workflows", "completion_rate", "end_to_end_p95_ms", "queue_wait_p95_ms", "decision_latency_p95_ms",
                 "slot_fill_rate"):  # fmt: skip
        b.stat(name)
    b.row("Volume and latency")
    started = rollups.sample(INDICATORS["workflows"])
    b.timeseries(
        "Workflows per minute by kind", "Workflow instances started per minute (averaged over each hour at least).",
        f"SELECT $__timeInterval({rollups.TIME_COLUMN}) AS time, WorkflowKind, {started} * 60 / $__interval_s "
        f"AS per_minute\nFROM {hours}\nWHERE {rollups.time_filter()} AND {f}\n"
        "GROUP BY time, WorkflowKind ORDER BY time",
        interval="1h",
    )  # fmt: skip
    b.timeseries(
        "Stage latency p95", "95th centile of each lifecycle stage's duration (from a sketch: within 1 % of the "
        "duration of that rank; over few spans, the lower of the two it falls between).",
        f"SELECT $__timeInterval({rollups.TIME_COLUMN}) AS time, Stage, {rollups.stage_centile(0.95)} AS p95_ms\n"
        f"FROM {stage_hours}\nWHERE {rollups.time_filter()} AND {stage} AND {f}\n"
        "GROUP BY time, Stage ORDER BY time", "ms", interval="1h",
    )  # fmt: skip
    b.table(
        "Stage latency p50 / p95 / p99", "Each stage over the whole range (shadow predictions are not stages).",
        f"SELECT Stage, spans, {centiles}\n"
        f"FROM (SELECT Stage, sum(Spans) AS spans, {rollups.stage_centiles()} AS c\n"
        f"FROM {stage_hours}\nWHERE {rollups.time_filter()} AND {stage} AND {f}\n"
        "GROUP BY Stage)\nORDER BY p95_ms DESC",
    )  # fmt: skip
    b.timeseries(
        "Queue wait p95 by queue", "Time in the queue stage, 95th centile, per queue.",
        f"SELECT $__timeInterval({rollups.TIME_COLUMN}) AS time, QueueName, {rollups.stage_centile(0.95)} AS p95_ms\n"
        f"FROM {stage_hours}\nWHERE {rollups.time_filter()} AND Stage = {literal(Stage.QUEUE.value)} "
        f"AND QueueName != '' AND Shadow = 0 AND {f}\n"
        "GROUP BY time, QueueName ORDER BY time", "ms", interval="1h",
    )  # fmt: skip
    b.series("end_to_end_p95_ms")
    b.timeseries(
        "Backlog (queue depth)", "The deepest queue depth reported at enqueue, per queue.",
        f"SELECT $__timeInterval({rollups.TIME_COLUMN}) AS time, QueueName, max(MaxQueueDepth) AS depth\n"
        f"FROM {stage_hours}\nWHERE {rollups.time_filter()} AND MaxQueueDepth IS NOT NULL AND {f}\n"
        "GROUP BY time, QueueName ORDER BY time", interval="1h",
    )  # fmt: skip
    b.row("Completion and scheduling")
    b.series("completion_rate", w=8)
    b.series("slot_fill_rate", w=8)
    b.timeseries(
        "Time to schedule p50 (days)", "Lead time of booked appointments, median (by the hour the workflow started).",
        f"SELECT $__timeInterval({rollups.TIME_COLUMN}) AS time, "
        f"{rollups.quantile_of_values(0.5)}({rollups.LEAD_TIME_VALUES}) AS lead_days\nFROM {hours}\n"
        f"WHERE {rollups.time_filter()} AND WorkflowKind = 'scheduling' AND {f}\n"
        "GROUP BY time HAVING NOT isNaN(lead_days) ORDER BY time", "short", w=8, interval="1h",
    )  # fmt: skip
    completed, e2e = (rollups.value(INDICATORS[n]) for n in ("completion_rate", "end_to_end_p95_ms"))
    b.table(
        "Throughput by department", "Workflows, completion rate and end-to-end time p95 (of the workflows with a "
        "finished stage) per department.",
        f"SELECT Department, WorkflowKind, {started} AS workflows, round({completed}, 3) AS completed, "
        f"round({e2e} / 1000, 1) AS e2e_p95_s\n"
        f"FROM {hours}\nWHERE {rollups.time_filter()} AND {f}\nGROUP BY Department, WorkflowKind "
        "ORDER BY workflows DESC", w=24,
    )  # fmt: skip
    return b.build()
