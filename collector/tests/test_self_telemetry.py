"""The collector's own figures in ClickHouse: counters as increases, so sums over any window are
counts; readable by operators, not by a tenant's reader."""

from __future__ import annotations

from clinotel.collector.service import Collector
from clinotel.collector.store import schema
from collector.tests.fixtures import OPERATOR_TOKEN, READ_TOKEN
from collector.tests.otlp_clients import plain_request, post
from collector.tests.test_reader import _get


def _sums(c: Collector) -> dict[tuple[str, str], float]:
    rows = c.client.query(
        f"SELECT Metric, Labels['reason'], sum(Value) FROM {c.options.name(schema.COLLECTOR_METRICS)} "
        "WHERE Kind = 'counter' GROUP BY 1, 2"
    ).result_rows
    return {(m, r): v for m, r, v in rows}


def test_counters_land_as_increases_and_sum_to_the_totals(collector: Collector) -> None:
    assert collector.recorder is not None
    assert collector.http is not None
    assert collector.writer is not None
    url = f"http://127.0.0.1:{collector.http.port}/v1/traces"
    post(url, plain_request(3))
    post(url, b"garbage")
    collector.writer.drain()
    collector.recorder.record()
    post(url, plain_request(2))
    post(url, plain_request(1), token=None)
    collector.writer.drain()
    collector.recorder.record()

    sums = _sums(collector)
    assert sums[("clinotel_receiver_spans_accepted_total", "")] == 5
    assert sums[("clinotel_receiver_requests_refused_total", "malformed")] == 1
    assert sums[("clinotel_receiver_requests_refused_total", "unauthenticated")] == 1
    assert sums[("clinotel_writer_records_total", "")] == 2
    table = collector.options.name(schema.COLLECTOR_METRICS)
    per_row = collector.client.query(
        f"SELECT Value FROM {table} WHERE Metric = 'clinotel_receiver_spans_accepted_total' ORDER BY Timestamp"
    ).result_rows
    assert [v for (v,) in per_row][-2:] == [3.0, 2.0], "each row holds the increase since the one before"
    gauges = dict(
        collector.client.query(
            f"SELECT Metric, argMax(Value, Timestamp) FROM {table} WHERE Kind = 'gauge' GROUP BY Metric"
        ).result_rows
    )
    assert "clinotel_wal_pending_bytes" in gauges
    assert gauges["clinotel_receiver_buffer_max_bytes"] == 256 << 20
    assert gauges["clinotel_receiver_buffer_bytes"] == 0, "every request's hold given back once answered"
    assert gauges["clinotel_receiver_decode_max_bytes"] == 128 << 20
    assert gauges["clinotel_receiver_decode_bytes"] == 0, "every decode's estimate given back once it ended"


def test_operators_read_the_collector_figures_and_tenants_do_not(collector: Collector) -> None:
    assert collector.recorder is not None
    collector.recorder.record()
    db = collector.options.name(schema.COLLECTOR_METRICS)
    _, _, operator = _get(collector, f"SELECT count() > 0 FROM {db}", token=OPERATOR_TOKEN)
    _, _, tenant = _get(collector, f"SELECT count() FROM {db}", token=READ_TOKEN)
    assert (operator, tenant) == (b"1\n", b"0\n")


def test_the_health_dashboard_shows_how_old_the_rollups_are_and_their_failures(collector: Collector) -> None:
    """The rollups' refresh in `clinotel_collector_metrics`, as the telemetry-health panel reads it:
    seconds since the last good refresh (small after one), and failed refreshes counted."""
    from dashboards.tests.test_known_answers import _rows

    assert collector.recorder is not None
    assert collector.rollups is not None
    collector.rollups.max_memory_bytes = collector.rollups.whole_memory_bytes = 1  # refused: a failed refresh
    assert collector.rollups.refresh_once(full=True) is None
    collector.rollups.max_memory_bytes = collector.rollups.whole_memory_bytes = None
    assert collector.rollups.refresh_once(full=True) is not None
    collector.recorder.record()
    rows = _rows(collector, "health", "Rollups: seconds since the last refresh, and refreshes failed", "timeseries")
    by_what: dict[str, list[float]] = {}
    for row in rows:
        by_what.setdefault(row["what"].split(": ", 1)[1], []).append(row["value"])
    assert sum(by_what["failed: refresh"]) >= 1
    assert 0 <= max(by_what["seconds since the last refresh"]) < 60


def test_metrics_are_shown_in_full_precision() -> None:
    """`/metrics` values read back exactly: `%g` showed six digits, so a log of 12,345,678,901 bytes
    read 1.23457e+10 and a Unix time (the rollups' last refresh, the last alert evaluation) was off
    by up to 5,000 s; NaN and infinities as the exposition format spells them."""
    from types import SimpleNamespace
    from typing import cast

    from clinotel.collector.log.wal import WriteAheadLog
    from clinotel.collector.receiver.export import ReceiverStats
    from clinotel.collector.telemetry.metrics import RollupFigures, collect, render
    from clinotel.collector.writer import WriterStats

    stats = ReceiverStats()
    stats.log_bytes = 12_345_678_901
    wal = cast(WriteAheadLog, SimpleNamespace(pending_bytes=0, max_bytes=1 << 40))
    shown = render(collect(stats, wal, WriterStats(), rollups=RollupFigures(0, 0, 1_796_590_123.456789)))
    values = {line.split(" ")[0]: line.split(" ")[1] for line in shown.splitlines() if not line.startswith("#")}
    assert values["clinotel_wal_appended_bytes_total"] == "12345678901"
    assert float(values["clinotel_rollups_last_refresh_timestamp_seconds"]) == 1_796_590_123.456789
    assert values["clinotel_wal_max_bytes"] == str(1 << 40)
    from clinotel.collector.telemetry.metrics import _number

    assert [_number(v) for v in (float("nan"), float("inf"), -float("inf"), 0.5)] == ["NaN", "+Inf", "-Inf", "0.5"]
