"""The collector's own figures in Prometheus text format (`/metrics` on the `--http` port)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable

from clinotel.collector.receiver import ReceiverStats
from clinotel.collector.wal import WriteAheadLog
from clinotel.collector.writer import WriterStats

__all__ = ["render"]


def _line(name: str, value: float, labels: dict[str, str] | None = None) -> str:
    if labels:
        inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        return f"{name}{{{inner}}} {value:g}"
    return f"{name} {value:g}"


def _family(name: str, kind: str, help_text: str, samples: Iterable[str]) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples]


def _quantiles(name: str, values: list[float], help_text: str) -> list[str]:
    recent = sorted(values[-10_000:])
    samples = []
    if recent:
        for q in (0.5, 0.99):
            samples.append(_line(name, recent[min(len(recent) - 1, int(q * len(recent)))], {"quantile": str(q)}))
        samples.append(_line(f"{name}_sum", sum(recent)))
    samples.append(_line(f"{name}_count", len(recent)))
    return _family(name, "summary", help_text, samples)


def render(receiver: ReceiverStats, wal: WriteAheadLog, writer: WriterStats) -> str:
    """Every collector figure, as Prometheus text exposition format."""
    with receiver.lock:
        requests, accepted, log_bytes = receiver.requests, receiver.spans_accepted, receiver.log_bytes
        refused_spans = dict(receiver.spans_refused)
        refused_requests = dict(receiver.requests_refused)
    out: list[str] = []
    out += _family("clinotel_receiver_requests_total", "counter", "OTLP requests accepted.",
                   [_line("clinotel_receiver_requests_total", requests)])  # fmt: skip
    out += _family("clinotel_receiver_spans_accepted_total", "counter", "Spans accepted into the log.",
                   [_line("clinotel_receiver_spans_accepted_total", accepted)])  # fmt: skip
    out += _family(
        "clinotel_receiver_spans_refused_total", "counter", "Spans refused individually, by reason.",
        [_line("clinotel_receiver_spans_refused_total", n, {"reason": r}) for r, n in refused_spans.items()],
    )  # fmt: skip
    out += _family(
        "clinotel_receiver_requests_refused_total", "counter", "Requests refused whole, by reason.",
        [_line("clinotel_receiver_requests_refused_total", n, {"reason": r}) for r, n in refused_requests.items()],
    )  # fmt: skip
    out += _family("clinotel_wal_appended_bytes_total", "counter", "Request bytes appended to the log.",
                   [_line("clinotel_wal_appended_bytes_total", log_bytes)])  # fmt: skip
    out += _family("clinotel_wal_pending_bytes", "gauge", "Acknowledged bytes not yet in ClickHouse.",
                   [_line("clinotel_wal_pending_bytes", wal.pending_bytes)])  # fmt: skip
    out += _family("clinotel_wal_max_bytes", "gauge", "The log's bound; past it the receiver answers 503.",
                   [_line("clinotel_wal_max_bytes", wal.max_bytes)])  # fmt: skip
    out += _family("clinotel_writer_segments_total", "counter", "Log segments written to ClickHouse.",
                   [_line("clinotel_writer_segments_total", writer.segments)])  # fmt: skip
    out += _family("clinotel_writer_records_total", "counter", "Requests written to ClickHouse.",
                   [_line("clinotel_writer_records_total", writer.records)])  # fmt: skip
    out += _family("clinotel_writer_retries_total", "counter", "Failed inserts retried.",
                   [_line("clinotel_writer_retries_total", writer.retries)])  # fmt: skip
    out += _family("clinotel_writer_quarantined_total", "counter", "Segments refused for good and set aside.",
                   [_line("clinotel_writer_quarantined_total", writer.quarantined)])  # fmt: skip
    out += _quantiles("clinotel_writer_insert_seconds", writer.insert_seconds, "Time per segment insert.")
    out += _quantiles("clinotel_ingest_freshness_seconds", writer.freshness_seconds,
                      "From a request's acknowledgement to its spans being queryable.")  # fmt: skip
    if writer.freshness_seconds:
        out += _family("clinotel_ingest_freshness_median_seconds", "gauge", "Median freshness, recent requests.",
                       [_line("clinotel_ingest_freshness_median_seconds",
                              statistics.median(writer.freshness_seconds[-1000:]))])  # fmt: skip
    return "\n".join(out) + "\n"
