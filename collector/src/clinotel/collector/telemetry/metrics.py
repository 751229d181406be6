"""The collector's own figures: one list of samples, rendered as Prometheus text for `/metrics`
and written as rows to `clinotel_collector_metrics` for the telemetry-health dashboard."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from clinotel.collector.log.wal import WriteAheadLog
from clinotel.collector.receiver.admission import ByteBudget
from clinotel.collector.receiver.export import ReceiverStats
from clinotel.collector.writer import WriterStats
from clinotel.model import collector_metrics as M
from clinotel.model.collector_metrics import AlertFigures, CollectorMetric, MetricKind

__all__ = ["Family", "RollupFigures", "Sample", "collect", "render"]

QUANTILES: Final = (0.5, 0.99)
RECENT: Final = 10_000


@dataclass(frozen=True)
class Sample:
    name: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()
    counter: bool = False
    """A monotonic total (a Prometheus counter, or a summary's `_sum`/`_count`)."""


@dataclass(frozen=True)
class Family:
    name: str
    kind: MetricKind
    help: str
    samples: list[Sample] = field(default_factory=list)


def _one(metric: CollectorMetric, value: float) -> Family:
    return Family(metric.name, metric.kind, metric.help, [Sample(metric.name, value, counter=metric.kind == "counter")])


def _by_label(metric: CollectorMetric, counts: dict[str, int]) -> Family:
    label = metric.label or "reason"
    samples = [Sample(metric.name, n, ((label, r),), counter=True) for r, n in sorted(counts.items())]
    return Family(metric.name, metric.kind, metric.help, samples)


def _summary(metric: CollectorMetric, recent: list[float], total: float, count: int) -> Family:
    window = sorted(recent[-RECENT:])
    name = metric.name
    samples = [
        Sample(name, window[min(len(window) - 1, int(q * len(window)))], (("quantile", str(q)),))
        for q in QUANTILES
        if window
    ]
    samples += [Sample(f"{name}_sum", total, counter=True), Sample(f"{name}_count", count, counter=True)]
    return Family(name, metric.kind, metric.help, samples)


def collect(
    receiver: ReceiverStats,
    wal: WriteAheadLog,
    writer: WriterStats,
    up: bool = True,
    parts_synced: bool | None = None,
    buffer: ByteBudget | None = None,
    decoding: ByteBudget | None = None,
    alerts: AlertFigures | None = None,
    rollups: RollupFigures | None = None,
) -> list[Family]:
    """Every collector figure, read once; `up` is whether it can store what it receives,
    `parts_synced` whether the embedded store syncs its inserted parts (None: a server's own),
    `buffer` the receivers' receive buffer, `decoding` their decoding budget, `alerts` what the
    evaluator beside it did (`serve --rules`), `rollups` what its rollup refresh did."""
    with receiver.lock:
        requests, accepted, log_bytes = receiver.requests, receiver.spans_accepted, receiver.log_bytes
        retried = receiver.spans_retried
        refused_spans = dict(receiver.spans_refused)
        refused_requests = dict(receiver.requests_refused)
    synced = [] if parts_synced is None else [_one(M.PARTS_SYNCED, 1 if parts_synced else 0)]
    return [
        _one(M.UP, 1 if up else 0),
        *synced,
        _one(M.REQUESTS, requests),
        _one(M.SPANS_ACCEPTED, accepted),
        _one(M.SPANS_RETRIED, retried),
        _by_label(M.SPANS_REFUSED, refused_spans),
        _by_label(M.REQUESTS_REFUSED, refused_requests),
        *(
            [_one(M.RECEIVE_BUFFER_BYTES, buffer.held), _one(M.RECEIVE_BUFFER_MAX_BYTES, buffer.total)]
            if buffer
            else []
        ),
        *([_one(M.DECODE_BYTES, decoding.held), _one(M.DECODE_MAX_BYTES, decoding.total)] if decoding else []),
        _one(M.WAL_APPENDED_BYTES, log_bytes),
        _one(M.WAL_PENDING_BYTES, wal.pending_bytes),
        _one(M.WAL_MAX_BYTES, wal.max_bytes),
        _one(M.WRITER_SEGMENTS, writer.segments),
        _one(M.WRITER_RECORDS, writer.records),
        _one(M.WRITER_RETRIES, writer.retries),
        _one(M.WRITER_QUARANTINED, writer.quarantined),
        _one(M.WRITER_SPLITS, writer.splits),
        _summary(M.WRITER_INSERT_SECONDS, writer.insert_seconds, writer.insert_seconds_total, writer.segments),
        _summary(M.INGEST_FRESHNESS_SECONDS, writer.freshness_seconds, writer.freshness_seconds_total, writer.records),
        *(_rollups(rollups) if rollups is not None else []),
        *(_alerting(alerts) if alerts is not None else []),
    ]


@dataclass(frozen=True)
class RollupFigures:
    """What the collector's rollup refresh did (`store.rollups.RollupRefresher`)."""

    failures: int
    tenant_groups_kept: int
    last_refresh_s: float
    """When the last refresh ended well (Unix seconds), 0 before the first."""
    window_share_misses: int = 0
    """Windowed refreshes that did not fit in their memory share (done again in a whole one's)."""


def _rollups(figures: RollupFigures) -> list[Family]:
    failed = {"refresh": figures.failures, "tenant_group": figures.tenant_groups_kept}
    return [
        _by_label(M.ROLLUP_FAILURES, failed),
        _one(M.ROLLUP_WINDOW_SHARE_MISSES, figures.window_share_misses),
        _one(M.ROLLUP_LAST_REFRESH, figures.last_refresh_s),
    ]


def _alerting(alerts: AlertFigures) -> list[Family]:
    with alerts.lock:
        evaluations, errors, last = alerts.evaluations, alerts.errors, alerts.last_evaluation_s
        undelivered = dict(alerts.undelivered)
    failed = _by_label(M.ALERT_UNDELIVERED, undelivered)
    return [_one(M.ALERT_EVALUATIONS, evaluations), _one(M.ALERT_ERRORS, errors), failed,
            _one(M.ALERT_LAST_EVALUATION, last)]  # fmt: skip


def _number(value: float) -> str:
    """A sample's value in full: `%g` kept six digits, so a byte counter of 12,345,678,901 read
    1.23457e+10 and a Unix time was off by up to 5,000 s."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))  # the shortest text that reads back as the same float


def _line(sample: Sample) -> str:
    if sample.labels:
        inner = ",".join(f'{k}="{v}"' for k, v in sample.labels)
        return f"{sample.name}{{{inner}}} {_number(sample.value)}"
    return f"{sample.name} {_number(sample.value)}"


def render(families: Iterable[Family]) -> str:
    """Prometheus text exposition format."""
    out: list[str] = []
    for f in families:
        out += [f"# HELP {f.name} {f.help}", f"# TYPE {f.name} {f.kind}", *(_line(s) for s in f.samples)]
    return "\n".join(out) + "\n"
