"""The collector's own figures, by name and kind: what `/metrics` exposes, what
`clinotel_collector_metrics` stores a row of every 10 seconds, what the health dashboard draws and
what a `collector` alert rule may read. A counter's rows hold increases (sum them over a window);
a gauge's rows hold the value as it stood (take the latest, or the maximum over a window).
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Final, Literal

__all__ = ["METRICS", "AlertFigures", "CollectorMetric", "MetricKind"]

MetricKind = Literal["counter", "gauge", "summary"]


@dataclass(frozen=True)
class CollectorMetric:
    name: str
    kind: MetricKind
    help: str
    label: str | None = None
    """The label its samples carry (`reason`), if any."""
    alertable: bool = False
    """A `collector` alert rule may read it."""

    @property
    def over_rows(self) -> str:
        """The aggregate of its rows over a window: increases summed, gauge values at their most."""
        return "max(Value)" if self.kind == "gauge" else "sum(Value)"


UP: Final = CollectorMetric(
    "clinotel_collector_up",
    "gauge",
    "1 while the collector can store what it receives; 0 once its writer or its log failed (it then answers 503 "
    "and stops).",
)
PARTS_SYNCED: Final = CollectorMetric(
    "clinotel_store_parts_synced",
    "gauge",
    "1 when the embedded store syncs every inserted part to disk before the log lets go of it (serve "
    "--fsync-parts: a power cut loses nothing acknowledged), 0 when it leaves them to the kernel's write-back; "
    "absent with a ClickHouse server.",
)
REQUESTS: Final = CollectorMetric("clinotel_receiver_requests_total", "counter", "OTLP requests accepted.")
SPANS_ACCEPTED: Final = CollectorMetric(
    "clinotel_receiver_spans_accepted_total", "counter", "Spans accepted into the log.", alertable=True
)
SPANS_REFUSED: Final = CollectorMetric(
    "clinotel_receiver_spans_refused_total", "counter", "Spans refused individually, by reason.", "reason", True
)
SPANS_RETRIED: Final = CollectorMetric(
    "clinotel_receiver_spans_retried_total",
    "counter",
    "Spans of requests identical to one accepted in the last minutes (an exporter's retry after a lost answer): "
    "answered as accepted and not logged again.",
)
REQUESTS_REFUSED: Final = CollectorMetric(
    "clinotel_receiver_requests_refused_total", "counter", "Requests refused whole, by reason.", "reason", True
)
RECEIVE_BUFFER_BYTES: Final = CollectorMetric(
    "clinotel_receiver_buffer_bytes",
    "gauge",
    "Request bytes the receivers hold now (bodies as read, inflated and re-encoded, until answered).",
)
RECEIVE_BUFFER_MAX_BYTES: Final = CollectorMetric(
    "clinotel_receiver_buffer_max_bytes",
    "gauge",
    "The receive buffer (--receive-buffer-mb); a request that does not fit is answered busy (503, UNAVAILABLE), "
    "as is one of a tenant holding three quarters of it.",
)
DECODE_BYTES: Final = CollectorMetric(
    "clinotel_receiver_decode_bytes",
    "gauge",
    "Memory the requests being decoded may take now, as estimated from their sizes (a request waits for room, "
    "then is answered busy).",
)
DECODE_MAX_BYTES: Final = CollectorMetric(
    "clinotel_receiver_decode_max_bytes",
    "gauge",
    "The decoding budget: what the requests being decoded may take at once, a tenant's at most half of it.",
)
WAL_APPENDED_BYTES: Final = CollectorMetric(
    "clinotel_wal_appended_bytes_total", "counter", "Request bytes appended to the log."
)
WAL_PENDING_BYTES: Final = CollectorMetric(
    "clinotel_wal_pending_bytes", "gauge", "Acknowledged bytes not yet in ClickHouse.", alertable=True
)
WAL_MAX_BYTES: Final = CollectorMetric(
    "clinotel_wal_max_bytes", "gauge", "The log's bound; past it the receiver answers 503."
)
WRITER_SEGMENTS: Final = CollectorMetric(
    "clinotel_writer_segments_total", "counter", "Log segments written to ClickHouse."
)
WRITER_RECORDS: Final = CollectorMetric("clinotel_writer_records_total", "counter", "Requests written to ClickHouse.")
WRITER_RETRIES: Final = CollectorMetric("clinotel_writer_retries_total", "counter", "Failed inserts retried.")
WRITER_QUARANTINED: Final = CollectorMetric(
    "clinotel_writer_quarantined_total", "counter", "Segments refused for good and set aside.", alertable=True
)
WRITER_SPLITS: Final = CollectorMetric(
    "clinotel_writer_splits_total",
    "counter",
    "Refused segments halved to find the request refused (each half is stored or set aside on its own).",
)
WRITER_INSERT_SECONDS: Final = CollectorMetric("clinotel_writer_insert_seconds", "summary", "Time per segment insert.")
INGEST_FRESHNESS_SECONDS: Final = CollectorMetric(
    "clinotel_ingest_freshness_seconds",
    "summary",
    "From a request's acknowledgement to its spans being queryable.",
)

ROLLUP_FAILURES: Final = CollectorMetric(
    "clinotel_rollups_refresh_failures_total",
    "counter",
    'Refreshes of the dashboards\' hourly rollups that failed (`what="refresh"`: the dashboards show the '
    'figures of the last refresh), and groups of tenants a refresh kept as they were (`what="tenant_group"`: '
    "past the refresh's memory).",
    "what",
    True,
)
ROLLUP_WINDOW_SHARE_MISSES: Final = CollectorMetric(
    "clinotel_rollups_window_share_misses_total",
    "counter",
    "Windowed refreshes of the hourly rollups that did not fit in their memory share and were done with a whole "
    "refresh's (not failures: the engine wants more memory, --memory-mb).",
)
ROLLUP_LAST_REFRESH: Final = CollectorMetric(
    "clinotel_rollups_last_refresh_timestamp_seconds",
    "gauge",
    "When the last refresh of the dashboards' hourly rollups ended well (Unix seconds; 0 before the first): "
    "rollups that stopped refreshing show here.",
)

ALERT_EVALUATIONS: Final = CollectorMetric(
    "clinotel_alert_evaluations_total", "counter", "Alert evaluations this collector ran (serve --rules)."
)
ALERT_ERRORS: Final = CollectorMetric(
    "clinotel_alert_evaluation_errors_total",
    "counter",
    "Rules whose query failed, and evaluations that could not read or keep their state (serve --rules).",
)
ALERT_UNDELIVERED: Final = CollectorMetric(
    "clinotel_alert_notifications_failed_total",
    "counter",
    "Notifications a receiver did not take, by receiver (owed, and retried at later evaluations): pages that "
    "woke nobody.",
    "receiver",
)
ALERT_LAST_EVALUATION: Final = CollectorMetric(
    "clinotel_alert_last_evaluation_timestamp_seconds",
    "gauge",
    "When the last alert evaluation ended (Unix seconds): an evaluator that stopped evaluating shows here.",
)


@dataclass
class AlertFigures:
    """What the alert evaluator beside a collector (`serve --rules`) did, for `/metrics`: a
    Prometheus watching the collector can page on pages not delivered, and on an evaluator that
    stopped. Updated under `lock`."""

    evaluations: int = 0
    errors: int = 0
    undelivered: Counter[str] = field(default_factory=Counter)
    last_evaluation_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


METRICS: Final = {
    m.name: m
    for m in (
        UP, PARTS_SYNCED, REQUESTS, SPANS_ACCEPTED, SPANS_RETRIED, SPANS_REFUSED, REQUESTS_REFUSED,
        RECEIVE_BUFFER_BYTES, RECEIVE_BUFFER_MAX_BYTES, DECODE_BYTES, DECODE_MAX_BYTES, WAL_APPENDED_BYTES,
        WAL_PENDING_BYTES, WAL_MAX_BYTES, WRITER_SEGMENTS, WRITER_RECORDS, WRITER_RETRIES, WRITER_QUARANTINED,
        WRITER_SPLITS, WRITER_INSERT_SECONDS,
        INGEST_FRESHNESS_SECONDS, ROLLUP_FAILURES, ROLLUP_WINDOW_SHARE_MISSES, ROLLUP_LAST_REFRESH,
        ALERT_EVALUATIONS, ALERT_ERRORS,
        ALERT_UNDELIVERED, ALERT_LAST_EVALUATION,
    )
}  # fmt: skip
"""Every collector figure by name, in the order `/metrics` shows them."""
