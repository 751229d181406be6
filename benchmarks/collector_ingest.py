"""Collector ingest: OTLP/HTTP protobuf into the embedded store, with the write-ahead log on.

The collector runs in this process (so the store can be queried); a load generator in a second
process replays pre-encoded requests of the demo's span mix over keep-alive connections, so the
two do not share an interpreter lock. Measured:

- sustained spans/s acknowledged (each answer means the request is on disk in the log), and
  spans/s stored (all of it visible in `otel_traces` when the run ends);
- freshness at a fixed 10,000 spans/s: from a request's acknowledgement to its spans answering
  a query, p50/p99;
- the same freshness under a saturating read load: reader threads in a third process keep every
  reader slot of the read port busy with scans of the stored spans (readers run at a low thread
  priority; the target is the same as without readers);
- peak RSS of the collector process (chDB included);
- bytes per span on disk for the demo's span mix (one pass of unique spans, merged).

    python benchmarks/collector_ingest.py [--quick] [--json PATH]

Targets on the 2-core machine: >= 50,000 spans/s (aim 150,000), freshness p99 <= 2 s,
RSS <= 600 MB, <= 40 bytes per span.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGETS = {"spans_per_s": 50_000, "freshness_p99_s": 2.0, "rss_mb": 600, "bytes_per_span": 40}

LOADGEN = r"""
import http.client, json, struct, sys, threading, time
path, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
threads, rate = int(sys.argv[4]), float(sys.argv[5])
data = open(path, "rb").read()
requests, pos = [], 0
while pos < len(data):
    n, spans = struct.unpack_from("<II", data, pos); pos += 8
    requests.append((data[pos:pos + n], spans)); pos += n
lock = threading.Lock()
acked = {"spans": 0, "requests": 0, "refused": 0, "acks": []}
stop = time.monotonic() + seconds
def worker(k):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    i = k
    interval = threads / rate if rate else 0.0
    next_at = time.monotonic()
    while time.monotonic() < stop:
        body, spans = requests[i % len(requests)]
        i += threads
        if interval:
            next_at += interval * spans
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        conn.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
        r = conn.getresponse(); r.read()
        with lock:
            if r.status == 200:
                acked["spans"] += spans; acked["requests"] += 1
                acked["acks"].append((i - threads, time.time()))
            else:
                acked["refused"] += 1
ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
started = time.monotonic()
for t in ts: t.start()
for t in ts: t.join()
acked["seconds"] = time.monotonic() - started
print(json.dumps(acked))
"""


READLOAD = r"""
import http.client, json, sys, threading, time, urllib.parse
port, seconds, threads, sql = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
done = {"queries": 0, "errors": 0}
lock = threading.Lock()
stop = time.monotonic() + seconds
def reader():
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    while time.monotonic() < stop:
        conn.request("POST", "/", sql.encode())
        r = conn.getresponse(); r.read()
        with lock:
            done["queries" if r.status == 200 else "errors"] += 1
ts = [threading.Thread(target=reader) for _ in range(threads)]
for t in ts: t.start()
for t in ts: t.join()
print(json.dumps(done))
"""
READ_SQL = (
    "SELECT ServiceName, SpanName, count(), quantile(0.95)(Duration), uniq(TraceId), "
    "sum(length(toString(SpanAttributes))) FROM bench.otel_traces GROUP BY ServiceName, SpanName"
)
"""A reader's scan of every stored span: the heaviest kind of query a dashboard sends."""


def _demo_requests(workflows: int, batch: int, path: Path) -> tuple[int, int]:
    """Pre-encode the demo's span mix as OTLP requests; returns (requests, spans)."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import clinotel.instrumentation as ct
    from clinotel.demo.hospital import SimClock, record_truths, run_workflow
    from clinotel.demo.scenario import Scenario, plan
    from clinotel.instrumentation.testing import isolated

    exporter = InMemorySpanExporter()
    clock = SimClock(time.time_ns() - 12 * 3600 * 10**9)
    with isolated():
        telemetry = ct.configure(
            service_name="bench-hospital", tenant="bench", pseudonym_key="b" * 32, exporter=exporter,
            batch=False, set_global=False, clock=clock,
        )  # fmt: skip
        truths = [t for p in plan(Scenario(workflows=workflows, seed=5)) if (t := run_workflow(p, clock))]
        record_truths(truths, clock)
        telemetry.shutdown()
    spans = list(exporter.get_finished_spans())
    with path.open("wb") as f:
        count = 0
        for i in range(0, len(spans), batch):
            chunk = spans[i : i + batch]
            body = encode_spans(chunk).SerializeToString()
            f.write(struct.pack("<II", len(body), len(chunk)) + body)
            count += 1
    return count, len(spans)


def _loadgen(path: Path, port: int, seconds: float, threads: int, rate: float = 0.0) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", LOADGEN, str(path), str(port), str(seconds), str(threads), str(rate)],
        capture_output=True, text=True, check=True, timeout=seconds + 120,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def _rss_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run (under 30 s)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--segment-mb", type=int, default=16, help="log segment size: memory against throughput")
    parser.add_argument("--encode-only", nargs=2, metavar=("PATH", "WORKFLOWS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.encode_only:  # run in a child process, so generating the load does not count in RSS
        n_requests, n_spans = _demo_requests(int(args.encode_only[1]), 512, Path(args.encode_only[0]))
        print(json.dumps([n_requests, n_spans]))
        return 0
    sustained_s, fresh_s, workflows = (4.0, 3.0, 1500) if args.quick else (20.0, 10.0, 8000)

    import clickhouse_connect

    from clinotel.collector.readport.reader import ReadLimits
    from clinotel.collector.service import Collector, CollectorConfig
    from clinotel.collector.store import schema

    work = Path(tempfile.mkdtemp(prefix="clinotel-bench-"))
    requests_file = work / "requests.bin"
    encoded = subprocess.run(
        [sys.executable, __file__, "--encode-only", str(requests_file), str(workflows)],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    n_requests, n_spans = json.loads(encoded.stdout)
    client = clickhouse_connect.get_client(dsn=f"chdb://{work / 'data'}")
    collector = Collector(
        CollectorConfig(
            database="bench",
            data_dir=work / "data",
            wal_dir=work / "wal",
            otlp_http=("127.0.0.1", 0),
            otlp_grpc=None,
            http=("127.0.0.1", 0),
            insecure_no_auth=True,
            wal_segment_bytes=args.segment_mb << 20,
            read_limits=ReadLimits(max_concurrent_per_tenant=8),
        ),
        client=client,
    )
    collector.start()
    assert collector.http is not None
    assert collector.writer is not None
    port = collector.http.port
    table = collector.options.name(schema.TRACES)

    def stored() -> int:
        return int(client.query(f"SELECT count() FROM {table}").result_rows[0][0])

    # 1. bytes per span: one pass of unique spans, written and merged
    one_pass = _one_pass(requests_file, port)
    collector.writer.drain()
    client.command(f"OPTIMIZE TABLE {table} FINAL")
    on_disk = client.query(
        f"SELECT sum(bytes_on_disk) FROM system.parts WHERE database = 'bench' AND table = '{schema.TRACES}' AND active"
    ).result_rows[0][0]
    bytes_per_span = on_disk / max(stored(), 1)

    # 2. sustained throughput, acknowledged and stored
    before = stored()
    started = time.monotonic()
    load = _loadgen(requests_file, port, seconds=sustained_s, threads=4)
    assert collector.wal is not None
    while collector.wal.pending_bytes:  # stored rate: until every acknowledged span is queryable
        collector.writer.drain()
    elapsed_stored = time.monotonic() - started
    stored_spans = stored() - before
    acked_rate = load["spans"] / load["seconds"]
    stored_rate = stored_spans / elapsed_stored

    # 3. freshness at 10,000 spans/s: ack -> visible, sampled
    fresh = _freshness(requests_file, port, collector.writer, fresh_s)

    # 4. the same under a saturating read load (every reader slot busy), readers started first
    assert collector.admin is not None
    readers = subprocess.Popen(
        [sys.executable, "-c", READLOAD, str(collector.admin.port), str(fresh_s + 2), "8", READ_SQL],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(1.0)
    fresh_read = _freshness(requests_file, port, collector.writer, fresh_s)
    read_load = json.loads(readers.communicate(timeout=300)[0])
    collector.stop()

    result = {
        "benchmark": "collector_ingest",
        "span_mix": f"clinotel demo, {n_spans:,} spans in {n_requests} requests of <= 512 spans",
        "sustained_seconds": sustained_s,
        "segment_mb": args.segment_mb,
        "acked_spans_per_s": round(acked_rate),
        "stored_spans_per_s": round(stored_rate),
        "refused_requests": load["refused"],
        "freshness_p50_s": fresh[0],
        "freshness_p99_s": fresh[1],
        "freshness_samples": fresh[2],
        "freshness_under_reads_p50_s": fresh_read[0],
        "freshness_under_reads_p99_s": fresh_read[1],
        "reader_queries_during": read_load["queries"],
        "reader_errors_during": read_load["errors"],
        "peak_rss_mb": round(_rss_peak_mb()),
        "bytes_per_span": round(bytes_per_span, 1),
        "one_pass_spans": one_pass,
        "targets": TARGETS,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_implementation()} "
        f"{platform.python_version()}",
    }
    target_rate = f">= {TARGETS['spans_per_s']:,}"
    rows = [
        ("sustained, acknowledged (on disk in the log)", f"{acked_rate:,.0f} spans/s", target_rate),
        ("sustained, stored in otel_traces", f"{stored_rate:,.0f} spans/s", target_rate),
        ("freshness p50 at 10,000 spans/s (ack -> queryable)", f"{fresh[0]:.2f} s", ""),
        (
            "freshness p99 at 10,000 spans/s (ack -> queryable)",
            f"{fresh[1]:.2f} s",
            f"<= {TARGETS['freshness_p99_s']} s",
        ),
        ("freshness p50, same, 8 readers scanning all spans", f"{fresh_read[0]:.2f} s", ""),
        (
            "freshness p99, same, 8 readers scanning all spans",
            f"{fresh_read[1]:.2f} s",
            f"<= {TARGETS['freshness_p99_s']} s",
        ),
        ("reader queries answered during it (errors)", f"{read_load['queries']} ({read_load['errors']})", ""),
        ("peak RSS of the collector process", f"{result['peak_rss_mb']} MB", f"<= {TARGETS['rss_mb']} MB"),
        ("bytes per span on disk (demo mix)", f"{bytes_per_span:.1f} B", f"<= {TARGETS['bytes_per_span']} B"),
    ]
    print(
        f"collector ingest, OTLP/HTTP protobuf, embedded store, log on, {args.segment_mb} MiB segments "
        f"({result['machine']})"
    )
    print(f"{'':<52} {'measured':>16} {'target':>12}")
    for name, value, target in rows:
        print(f"{name:<52} {value:>16} {target:>12}")
    print(f"headline: {stored_rate:,.0f} spans/s stored, sustained (target >= {TARGETS['spans_per_s']:,})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


def _one_pass(path: Path, port: int) -> int:
    import http.client

    data = path.read_bytes()
    pos = spans = 0
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while pos < len(data):
        n, count = struct.unpack_from("<II", data, pos)
        pos += 8
        conn.request("POST", "/v1/traces", data[pos : pos + n], {"Content-Type": "application/x-protobuf"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"one pass refused with {response.status}")
        spans += count
        pos += n
    conn.close()
    return spans


def _freshness(path: Path, port: int, writer: Any, seconds: float) -> tuple[float, float, int]:
    """Send at 10,000 spans/s; the writer times each record from its acknowledgement to the end
    of the insert that made it queryable."""
    writer.stats.freshness_seconds.clear()
    _loadgen(path, port, seconds=seconds, threads=2, rate=10_000)
    writer.drain()
    delays = sorted(writer.stats.freshness_seconds)
    if not delays:
        return float("nan"), float("nan"), 0
    p99 = delays[min(len(delays) - 1, int(0.99 * len(delays)))]
    return round(statistics.median(delays), 3), round(p99, 3), len(delays)


if __name__ == "__main__":
    sys.exit(main())
