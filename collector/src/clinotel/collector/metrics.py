"""The collector's own figures: one list of samples, rendered as Prometheus text for `/metrics`
and written as rows to `clinotel_collector_metrics` for the telemetry-health dashboard."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

from clinotel.collector.receiver import ReceiverStats
from clinotel.collector.wal import WriteAheadLog
from clinotel.collector.writer import WriterStats

__all__ = ["Family", "Sample", "collect", "render"]

Kind = Literal["counter", "gauge", "summary"]
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
    kind: Kind
    help: str
    samples: list[Sample] = field(default_factory=list)


def _one(name: str, kind: Kind, help_text: str, value: float) -> Family:
    return Family(name, kind, help_text, [Sample(name, value, counter=kind == "counter")])


def _by_reason(name: str, help_text: str, counts: dict[str, int]) -> Family:
    return Family(
        name, "counter", help_text, [Sample(name, n, (("reason", r),), counter=True) for r, n in sorted(counts.items())]
    )


def _summary(name: str, help_text: str, recent: list[float], total: float, count: int) -> Family:
    window = sorted(recent[-RECENT:])
    samples = [
        Sample(name, window[min(len(window) - 1, int(q * len(window)))], (("quantile", str(q)),))
        for q in QUANTILES
        if window
    ]
    samples += [Sample(f"{name}_sum", total, counter=True), Sample(f"{name}_count", count, counter=True)]
    return Family(name, "summary", help_text, samples)


def collect(receiver: ReceiverStats, wal: WriteAheadLog, writer: WriterStats, up: bool = True) -> list[Family]:
    """Every collector figure, read once; `up` is whether it can store what it receives."""
    with receiver.lock:
        requests, accepted, log_bytes = receiver.requests, receiver.spans_accepted, receiver.log_bytes
        refused_spans = dict(receiver.spans_refused)
        refused_requests = dict(receiver.requests_refused)
    return [
        _one(
            "clinotel_collector_up",
            "gauge",
            "1 while the collector can store what it receives; 0 once its writer or its log failed (it then "
            "answers 503 and stops).",
            1 if up else 0,
        ),
        _one("clinotel_receiver_requests_total", "counter", "OTLP requests accepted.", requests),
        _one("clinotel_receiver_spans_accepted_total", "counter", "Spans accepted into the log.", accepted),
        _by_reason("clinotel_receiver_spans_refused_total", "Spans refused individually, by reason.", refused_spans),
        _by_reason("clinotel_receiver_requests_refused_total", "Requests refused whole, by reason.", refused_requests),
        _one("clinotel_wal_appended_bytes_total", "counter", "Request bytes appended to the log.", log_bytes),
        _one("clinotel_wal_pending_bytes", "gauge", "Acknowledged bytes not yet in ClickHouse.", wal.pending_bytes),
        _one("clinotel_wal_max_bytes", "gauge", "The log's bound; past it the receiver answers 503.", wal.max_bytes),
        _one("clinotel_writer_segments_total", "counter", "Log segments written to ClickHouse.", writer.segments),
        _one("clinotel_writer_records_total", "counter", "Requests written to ClickHouse.", writer.records),
        _one("clinotel_writer_retries_total", "counter", "Failed inserts retried.", writer.retries),
        _one(
            "clinotel_writer_quarantined_total",
            "counter",
            "Segments refused for good and set aside.",
            writer.quarantined,
        ),
        _summary(
            "clinotel_writer_insert_seconds",
            "Time per segment insert.",
            writer.insert_seconds,
            writer.insert_seconds_total,
            writer.segments,
        ),
        _summary(
            "clinotel_ingest_freshness_seconds",
            "From a request's acknowledgement to its spans being queryable.",
            writer.freshness_seconds,
            writer.freshness_seconds_total,
            writer.records,
        ),
    ]


def _line(sample: Sample) -> str:
    if sample.labels:
        inner = ",".join(f'{k}="{v}"' for k, v in sample.labels)
        return f"{sample.name}{{{inner}}} {sample.value:g}"
    return f"{sample.name} {sample.value:g}"


def render(families: Iterable[Family]) -> str:
    """Prometheus text exposition format."""
    out: list[str] = []
    for f in families:
        out += [f"# HELP {f.name} {f.help}", f"# TYPE {f.name} {f.kind}", *(_line(s) for s in f.samples)]
    return "\n".join(out) + "\n"
