"""Collector ingest: OTLP/HTTP protobuf into the embedded store, with the write-ahead log on.

The collector runs in this process (so the store can be queried); a load generator in a second
process replays pre-encoded requests of the demo's span mix over keep-alive connections, so the
two do not share an interpreter lock. Measured:

- sustained spans/s acknowledged (each answer means the request is on disk in the log), and
  spans/s stored (all of it visible in `otel_traces` when the run ends), offered at 1.4x the
  engine's floor: what an overloaded collector does (its receiver takes CPU acknowledging what
  the store cannot take yet, which waits in the log);
- the capacity: the highest rate, in steps of 5,000 spans/s, that the store keeps up with for
  20 s (what it acknowledged, stored as it came: at most two segments left in the log at the
  end, nothing refused), the figure an operator sizes a collector by;
- freshness at a fixed 10,000 spans/s: from a request's acknowledgement to its spans answering
  a query, p50/p99;
- the same freshness under a saturating read load: reader threads in a third process keep every
  reader slot of the read port busy with scans of the stored spans (readers run at a low thread
  priority; the target is the same as without readers);
- peak RSS of the collector process (chDB included): over the capacity steps (its sustained
  throughput), while ingesting (overload and drain too), and over the whole run (readers too);
  and whether it grows with the duration of the load (the peak of the sustained phase's second
  half against its first);
- bytes per span on disk for the demo's span mix (one pass of unique spans, merged);
- the same sustained load on `--clickhouse-url`: the collector in a process of its own, writing to
  a stand-in server (chDB in a third process behind ClickHouse's HTTP interface, `_chdb_server.py`;
  no ClickHouse server recent enough installs here): its peak RSS without an engine in it.

Calibration: the same segments (the demo's requests framed as the log frames them, at the log's
segment size) are inserted by the same engine, in the same run, into a bare `otel_traces` (same
columns, codecs, indexes and order; no views) through the flattening without allowlist and PHI
rules: the engine's floor on this machine today. The writer's figure and the sustained stored
rate are printed as ratios to it, beside a profile of where an insert's time goes (parse,
flatten and checks, otel_traces, views).

    python benchmarks/collector_ingest.py [--quick] [--json PATH] [--engine-memory]

Targets on the 2-core machine: >= 50,000 spans/s stored (aim 150,000), freshness p99 <= 2 s,
peak RSS <= 800 MB (<= 250 MB with --clickhouse-url), <= 40 bytes per span.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _rss import RssSampler

TARGETS = {
    "spans_per_s": 50_000,
    "freshness_p99_s": 2.0,
    "rss_mb": 800,
    "server_mode_rss_mb": 250,
    "bytes_per_span": 40,
}

LOADGEN = r"""
import http.client, json, os, struct, sys, threading, time
path, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
threads, rate = int(sys.argv[4]), float(sys.argv[5])
data = open(path, "rb").read()
requests, pos = [], 0
while pos < len(data):
    n, spans, at = struct.unpack_from("<III", data, pos); pos += 12
    requests.append((data[pos:pos + n], spans, at)); pos += n
salt = os.urandom(4)
def distinct(body, at, turn):
    # a request sent again is an exporter's retry to the collector: each turn's first trace differs
    out = bytearray(body)
    out[at + 8:at + 16] = salt + struct.pack(">I", turn)
    return bytes(out)
lock = threading.Lock()
acked = {"spans": 0, "requests": 0, "refused": 0, "offered_spans": 0, "acks": []}
stop = time.monotonic() + seconds
def worker(k):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    i = k
    interval = threads / rate if rate else 0.0
    next_at = time.monotonic()
    while time.monotonic() < stop:
        body, spans, at = requests[i % len(requests)]
        body = distinct(body, at, i // len(requests))
        i += threads
        if interval:
            next_at += interval * spans
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        conn.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
        r = conn.getresponse(); r.read()
        with lock:
            acked["offered_spans"] += spans
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


REQUEST_HEADER: Final = struct.Struct("<III")
"""A pre-encoded request's header in the requests file: its size, its spans, and where its first
span's trace id starts (what the load changes to make each turn's requests new)."""


def read_requests(path: Path) -> list[tuple[bytes, int, int]]:
    """The requests `_demo_requests` wrote: (body, spans, offset of the first trace id)."""
    data = path.read_bytes()
    out, pos = [], 0
    while pos < len(data):
        n, spans, at = REQUEST_HEADER.unpack_from(data, pos)
        pos += REQUEST_HEADER.size
        out.append((data[pos : pos + n], spans, at))
        pos += n
    return out


def _demo_requests(workflows: int, batch: int, path: Path) -> tuple[int, int]:
    """Pre-encode the demo's span mix as OTLP requests; returns (requests, spans)."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import clinotel.instrumentation as ct
    from clinotel.demo.hospital import SimClock, record_truths, run_workflow
    from clinotel.demo.scenario import Scenario, plan
    from clinotel.instrumentation.testing import isolated

    exporter = InMemorySpanExporter()
    scenario = Scenario(workflows=workflows, seed=5)
    clock = SimClock(scenario.base_ns(time.time_ns()))
    with isolated():
        telemetry = ct.configure(
            service_name="bench-hospital", tenant="bench", pseudonym_key="b" * 32, exporter=exporter,
            batch=False, set_global=False, clock=clock,
        )  # fmt: skip
        truths = [t for p in plan(scenario) if (t := run_workflow(p, clock))]
        record_truths(truths, clock)
        telemetry.shutdown()
    spans = list(exporter.get_finished_spans())
    with path.open("wb") as f:
        count = 0
        for i in range(0, len(spans), batch):
            chunk = spans[i : i + batch]
            body = encode_spans(chunk).SerializeToString()
            at = body.find(chunk[0].context.trace_id.to_bytes(16, "big"))
            f.write(REQUEST_HEADER.pack(len(body), len(chunk), at) + body)
            count += 1
    return count, len(spans)


def _loadgen(path: Path, port: int, seconds: float, threads: int, rate: float = 0.0) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", LOADGEN, str(path), str(port), str(seconds), str(threads), str(rate)],
        capture_output=True, text=True, check=True, timeout=seconds + 120,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def _segments(requests_file: Path, segment_bytes: int, directory: Path) -> list[tuple[Path, int]]:
    """The demo's requests framed exactly as the log frames them, cut where the log would seal a
    segment: (path, spans) per segment."""
    from clinotel.collector.log import record as otlp_proto

    directory.mkdir(parents=True, exist_ok=True)
    out: list[tuple[Path, int]] = []
    chunk, spans = bytearray(), 0

    def seal() -> None:
        path = directory / f"segment-{len(out):04d}.wal"
        path.write_bytes(bytes(chunk))
        out.append((path, spans))

    for k, (body, count, _) in enumerate(read_requests(requests_file)):
        envelope = otlp_proto.envelope("bench", f"{len(out):04d}-{k:08x}", time.time_ns())
        chunk += otlp_proto.frame(body + envelope)
        spans += count
        if len(chunk) >= segment_bytes:
            seal()
            chunk, spans = bytearray(), 0
    if chunk:
        seal()
    return out


PROFILE_STAGES = ("parse", "flatten_and_checks", "reference", "collector")
"""What one insert of the same segments costs, stage by stage: the segment parsed into a `Null`
table; parsed, flattened and checked into a `Null` copy of `otel_traces`; the reference (parsed and
flattened without checks into a bare `otel_traces`); the collector's own pipeline (checks,
`otel_traces` and its views)."""


def insert_when_room(client: Any, sql: str) -> int:
    """Run an INSERT as the writer does: an engine full of merges (at its cap) is waited for and
    tried again, the time counted; the number of tries it took beyond the first."""
    from clinotel.collector.store.segments import engine_full

    retries = 0
    while True:
        try:
            client.command(sql)
            return retries
        except Exception as e:
            if not engine_full(e):
                raise
            retries += 1
            time.sleep(0.1)


def flatten_into(client: Any, database: str, name: str, target: str, *, checks: bool) -> str:
    """A `Null` table `database.in_<name>` taking segments, flattened (with or without the
    allowlist and PHI checks) by a view into the qualified table `target`; its name."""
    from clinotel.collector.store import pipeline as ingest
    from clinotel.collector.store import schema

    source = f"{database}.in_{name}"
    client.command(f"CREATE TABLE {source} ({ingest.SEGMENT_STRUCTURE}) ENGINE = Null")
    select = ingest.flatten_select(schema.SchemaOptions(database=database), source, checks=checks)
    client.command(f"CREATE MATERIALIZED VIEW {source}_mv TO {target} AS {select}")
    return source


def engine_floor(client: Any, database: str, traces: str) -> str:
    """The engine's floor, every benchmark's reference for an insert: segments flattened without
    checks into a bare copy of `traces` (the qualified `otel_traces`) in `database`, which exists;
    the `Null` table to insert them into."""
    from clinotel.collector.store import schema

    client.command(f"CREATE TABLE {database}.{schema.TRACES} AS {traces}")
    return flatten_into(client, database, "reference", f"{database}.{schema.TRACES}", checks=False)


def one_request(segment: Path) -> Path:
    """A segment of `segment`'s first request alone, framed as the log frames it, beside it."""
    with segment.open("rb") as f:
        data = f.read(1 << 20)
    length, start = leb128_decode(data)
    small = segment.with_name("one-request.wal")
    small.write_bytes(data[: start + length])
    return small


def _engine_profile(
    client: Any, pipeline: Any, proto_file: str, segments: list[tuple[Path, int]], rounds: int
) -> dict[str, dict[str, float]]:
    """Each stage over all `segments`, `rounds` times in turn (so the machine's drift hits each
    alike): spans/s (median round) and ms per insert."""
    from clinotel.collector.store import pipeline as ingest
    from clinotel.collector.store import schema

    traces = pipeline.options.name(schema.TRACES)
    client.command("CREATE DATABASE IF NOT EXISTS bench_ref")
    client.command(f"CREATE TABLE bench_ref.parsed ({ingest.SEGMENT_STRUCTURE}) ENGINE = Null")
    client.command(f"CREATE TABLE bench_ref.traces_null AS {traces} ENGINE = Null")
    into = {
        "parse": "bench_ref.parsed",
        "flatten_and_checks": flatten_into(client, "bench_ref", "checked", "bench_ref.traces_null", checks=True),
        "reference": engine_floor(client, "bench_ref", traces),
        "collector": None,
    }
    spans = sum(n for _, n in segments)
    seconds: dict[str, list[float]] = {stage: [] for stage in PROFILE_STAGES}
    retries = dict.fromkeys(PROFILE_STAGES, 0)
    for r in range(rounds):
        for stage in PROFILE_STAGES:
            started = time.perf_counter()
            for i, (path, _) in enumerate(segments):
                token = f"profile-{stage}-{r}-{i}-{time.time_ns()}"
                sql = pipeline.insert_from_file(str(path), token, proto_file, into=into[stage])
                retries[stage] += insert_when_room(client, sql)
            seconds[stage].append(time.perf_counter() - started)
    # the fixed cost of an insert, whatever its size: one request (<= 512 spans) per segment
    small = one_request(segments[0][0])
    fixed: dict[str, float] = {}
    for stage in PROFILE_STAGES:
        times = []
        for i in range(5):
            sql = pipeline.insert_from_file(
                str(small), f"fixed-{stage}-{i}-{time.time_ns()}", proto_file, into=into[stage]
            )
            started = time.perf_counter()
            client.command(sql)
            times.append(time.perf_counter() - started)
        fixed[stage] = round(statistics.median(times) * 1000, 1)
    client.command("DROP DATABASE bench_ref")
    return {
        stage: {
            "spans_per_s": round(spans / statistics.median(times)),
            "ms_per_insert": round(statistics.median(times) / len(segments) * 1000, 1),
            "ms_per_one_request_insert": fixed[stage],
            "retries_engine_full": retries[stage],
        }
        for stage, times in seconds.items()
    }


def leb128_decode(data: bytes) -> tuple[int, int]:
    """The length prefix of the log's first frame: (length, where its message starts)."""
    value = shift = pos = 0
    while True:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return value, pos
        shift += 7


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run (under 30 s)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--segment-mb", type=int, default=None, help="log segment size [default: the collector's]")
    parser.add_argument("--memory-mb", type=int, default=None, help="engine memory cap [default: the collector's]")
    parser.add_argument(
        "--fsync-parts", action="store_true", help="the collector syncs every inserted part (serve --fsync-parts)"
    )
    parser.add_argument(
        "--engine-memory", action="store_true",
        help="also sample the engine's own memory every 0.5 s (its count, its allocator's bytes in use, resident "
        "and kept as freed pages, what queries and merges hold): peaks by phase",
    )  # fmt: skip
    parser.add_argument("--encode-only", nargs=2, metavar=("PATH", "WORKFLOWS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.encode_only:  # run in a child process, so generating the load does not count in RSS
        n_requests, n_spans = _demo_requests(int(args.encode_only[1]), 512, Path(args.encode_only[0]))
        print(json.dumps([n_requests, n_spans]))
        return 0
    sustained_s, fresh_s, workflows, rounds = (2.0, 2.0, 1500, 1) if args.quick else (24.0, 10.0, 8000, 3)

    from clinotel.collector.readport.reader import ReadLimits
    from clinotel.collector.service import Collector, CollectorConfig
    from clinotel.collector.store import schema
    from clinotel.collector.store.embedded import connect, segment_bytes_for
    from clinotel.collector.store.segments import EmbeddedSegments

    memory_bytes = (args.memory_mb << 20) if args.memory_mb else CollectorConfig.engine_memory_bytes
    segment_bytes = (args.segment_mb << 20) if args.segment_mb else segment_bytes_for(memory_bytes)
    work = Path(tempfile.mkdtemp(prefix="clinotel-bench-"))
    requests_file = work / "requests.bin"
    encoded = subprocess.run(
        [sys.executable, __file__, "--encode-only", str(requests_file), str(workflows)],
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    n_requests, n_spans = json.loads(encoded.stdout)
    segments = _segments(requests_file, segment_bytes, work / "segments")
    with RssSampler() as rss:
        rss.enter("open")
        # the collector opens the engine itself, as `serve` does: the writer, the rollups' refresh
        # and the engine watch each on a client of their own (a client's calls are serialized;
        # given one, the collector ran its refresh on the writer's client)
        collector = Collector(
            CollectorConfig(
                database="bench",
                data_dir=work / "data",
                wal_dir=work / "wal",
                otlp_http=("127.0.0.1", 0),
                otlp_grpc=None,
                http=("127.0.0.1", 0),
                insecure_no_auth=True,
                wal_segment_bytes=segment_bytes,
                engine_memory_bytes=memory_bytes,
                fsync_parts=args.fsync_parts,
                read_limits=ReadLimits(max_concurrent_per_tenant=8),
            ),
        )
        collector.start()
        client = collector.client
        probe_client = None
        if args.engine_memory:
            probe_client = connect(work / "data", memory_bytes=memory_bytes, fsync_parts=args.fsync_parts)
            rss.probe = _engine_memory_probe(probe_client)
        assert collector.http is not None
        assert collector.writer is not None
        assert collector.wal is not None
        port = collector.http.port
        table = collector.options.name(schema.TRACES)

        def stored() -> int:
            return int(client.query(f"SELECT count() FROM {table}").result_rows[0][0])

        # 1. bytes per span: one pass of unique spans, written and merged
        rss.enter("one pass")
        one_pass = _one_pass(requests_file, port)
        collector.writer.drain()
        client.command(f"OPTIMIZE TABLE {table} FINAL")
        on_disk = client.query(
            "SELECT sum(bytes_on_disk) FROM system.parts WHERE database = 'bench' "
            f"AND table = '{schema.TRACES}' AND active"
        ).result_rows[0][0]
        bytes_per_span = on_disk / max(stored(), 1)

        # 2. the engine's floor and the profile, on the same segments, the writer alone
        rss.enter("profile")
        store = collector.writer.store
        assert isinstance(store, EmbeddedSegments)
        profile = _engine_profile(client, store.pipeline, store.proto_file, segments, rounds)
        reference = profile["reference"]["spans_per_s"]

        # 3. capacity: the highest offered rate the store keeps up with, once the merges the
        # profile left are done (a collector in steady use, not one catching up)
        rss.enter("capacity")
        _wait_for_merges(client, 10.0 if args.quick else 180.0)
        capacity_steps = _capacity(requests_file, port, collector, segment_bytes, stored, quick=args.quick)
        capacity = max((st["offered_spans_per_s"] for st in capacity_steps if st["kept_up"]), default=0)
        _drain(collector)

        # 4. overload: sustained throughput at 1.4x the floor, acknowledged and stored
        rss.enter("sustained")
        before = stored()
        started = time.monotonic()
        load = _loadgen(requests_file, port, seconds=sustained_s, threads=4)
        rss.enter("drain")
        _drain(collector)  # stored rate: until every acknowledged span is queryable
        elapsed_stored = time.monotonic() - started
        stored_spans = stored() - before
        acked_rate = load["spans"] / load["seconds"]
        offered_rate = load["offered_spans"] / load["seconds"]
        stored_rate = stored_spans / elapsed_stored
        first_half, second_half = rss.halves("sustained")

        # 5. freshness at 10,000 spans/s: ack -> visible, sampled
        rss.enter("freshness")
        fresh = _freshness(requests_file, port, collector.writer, fresh_s)

        # 6. the same under a saturating read load (every reader slot busy), readers started first
        rss.enter("freshness under reads")
        assert collector.admin is not None
        readers = subprocess.Popen(
            [sys.executable, "-c", READLOAD, str(collector.admin.port), str(fresh_s + 2), "8", READ_SQL],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(1.0)
        fresh_read = _freshness(requests_file, port, collector.writer, fresh_s)
        read_load = json.loads(readers.communicate(timeout=300)[0])
        rss.enter("stop")
        quarantined = collector.writer.stats.quarantined  # a segment set aside is a failed run
        assert collector.receiver is not None
        # the load's turns differ (`distinct`): a request taken for a retry would not be stored
        retried = collector.receiver.stats.spans_retried
        rss.stop_probe()
        if probe_client is not None:
            probe_client.close()
        collector.stop()
    peak_rss = max(rss.peaks.values())
    # 7. the same sustained load on `--clickhouse-url` (the collector without an engine)
    server_mode = _server_mode(requests_file, work, segment_bytes, min(sustained_s, 8.0))
    ingest_rss = max(rss.peaks.get(p, 0.0) for p in ("capacity", "sustained", "drain"))
    capacity_rss = rss.peaks.get("capacity", 0.0)

    result = {
        "benchmark": "collector_ingest",
        "span_mix": f"clinotel demo, {n_spans:,} spans in {n_requests} requests of <= 512 spans",
        "sustained_seconds": sustained_s,
        "segment_mb": round(segment_bytes / (1 << 20), 2),
        "engine_memory_mb": memory_bytes >> 20,
        "fsync_parts": args.fsync_parts,
        "segments": [n for _, n in segments],
        "reference_spans_per_s": reference,
        "profile": profile,
        "writer_spans_per_s": profile["collector"]["spans_per_s"],
        "writer_ratio_to_reference": round(profile["collector"]["spans_per_s"] / reference, 3),
        "offered_spans_per_s": round(offered_rate),
        "acked_spans_per_s": round(acked_rate),
        "stored_spans_per_s": round(stored_rate),
        "stored_ratio_to_reference": round(stored_rate / reference, 3),
        "overload_factor": round(offered_rate / max(stored_rate, 1.0), 2),
        "capacity_spans_per_s": capacity,
        "capacity_ratio_to_reference": round(capacity / reference, 3),
        "capacity_steps": capacity_steps,
        "refused_requests": load["refused"],
        "quarantined_segments": quarantined,
        "spans_taken_for_retries": retried,
        "freshness_p50_s": fresh[0],
        "freshness_p99_s": fresh[1],
        "freshness_samples": fresh[2],
        "freshness_under_reads_p50_s": fresh_read[0],
        "freshness_under_reads_p99_s": fresh_read[1],
        "reader_queries_during": read_load["queries"],
        "reader_errors_during": read_load["errors"],
        "peak_rss_mb": round(peak_rss),
        "peak_rss_ingest_mb": round(ingest_rss),
        "peak_rss_capacity_mb": round(capacity_rss),
        "rss_by_phase_mb": {k: round(v) for k, v in rss.peaks.items()},
        "anonymous_rss_by_phase_mb": {k: round(v) for k, v in rss.anon_peaks.items()},
        "rss_sustained_halves_mb": [round(first_half), round(second_half)],
        "engine_memory_by_phase_mb": {
            phase: {k: round(v) for k, v in peaks.items()} for phase, peaks in rss.probe_peaks.items()
        },
        "engine_memory_probe_errors": rss.probe_errors,
        "server_mode": server_mode,
        "bytes_per_span": round(bytes_per_span, 1),
        "one_pass_spans": one_pass,
        "targets": TARGETS,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_implementation()} "
        f"{platform.python_version()}",
    }
    target_rate = f">= {TARGETS['spans_per_s']:,}"
    ratio = lambda v: f"{v / reference:.2f}"  # noqa: E731
    rows = [
        ("engine floor: same segments, bare otel_traces (ref)", f"{reference:,} /s", "1.00", ""),
        ("  parse only", f"{profile['parse']['spans_per_s']:,} /s", ratio(profile["parse"]["spans_per_s"]), ""),
        (
            "  parse, flatten, allowlist and PHI checks",
            f"{profile['flatten_and_checks']['spans_per_s']:,} /s",
            ratio(profile["flatten_and_checks"]["spans_per_s"]),
            "",
        ),
        (
            "writer alone: the collector's pipeline and views",
            f"{result['writer_spans_per_s']:,} /s",
            ratio(result["writer_spans_per_s"]),
            "",
        ),
        ("overload, offered by the load process", f"{offered_rate:,.0f} /s", ratio(offered_rate), ""),
        ("overload, acknowledged (on disk in the log)", f"{acked_rate:,.0f} /s", ratio(acked_rate), ""),
        ("overload, stored in otel_traces (load and drain)", f"{stored_rate:,.0f} /s", ratio(stored_rate), ""),
        (
            f"capacity: highest rate stored as it came ({capacity_steps[0]['seconds']:.0f} s)",
            f"{capacity:,} /s",
            ratio(capacity),
            target_rate,
        ),
        *(
            (
                f"  offered {st['offered_spans_per_s']:,}/s: "
                + ("kept up" if st["kept_up"] else "fell behind")
                + f", {st['backlog_mb']:.0f} MB left, {st['machine_busy_cores']:.1f} cores busy"
                + f" ({sum(st['collector_cores_by_thread'].values()):.1f} the collector)",
                f"{st['stored_spans_per_s']:,} /s",
                ratio(st["stored_spans_per_s"]),
                "",
            )
            for st in capacity_steps
        ),
        ("freshness p50 at 10,000 spans/s (ack -> queryable)", f"{fresh[0]:.2f} s", "", ""),
        ("freshness p99 at 10,000 spans/s", f"{fresh[1]:.2f} s", "", f"<= {TARGETS['freshness_p99_s']} s"),
        ("freshness p50, 8 readers scanning all spans", f"{fresh_read[0]:.2f} s", "", ""),
        (
            "freshness p99, 8 readers scanning all spans",
            f"{fresh_read[1]:.2f} s",
            "",
            f"<= {TARGETS['freshness_p99_s']} s",
        ),
        ("reader queries answered during it (errors)", f"{read_load['queries']} ({read_load['errors']})", "", ""),
        (
            "peak RSS at capacity (the sustained throughput's steps)",
            f"{capacity_rss:,.0f} MB",
            "",
            f"<= {TARGETS['rss_mb']} MB",
        ),
        (
            "peak RSS while ingesting (capacity, overload, drain)",
            f"{ingest_rss:,.0f} MB",
            "",
            f"<= {TARGETS['rss_mb']} MB",
        ),
        ("RSS peak, overload 1st half -> 2nd half", f"{first_half:,.0f} -> {second_half:,.0f} MB", "", ""),
        ("peak RSS of the collector process, whole run", f"{peak_rss:,.0f} MB", "", f"<= {TARGETS['rss_mb']} MB"),
        (
            "--clickhouse-url: peak RSS, sustained (no engine)",
            f"{server_mode['peak_rss_mb']:,} MB",
            "",
            f"<= {TARGETS['server_mode_rss_mb']} MB",
        ),
        (
            "--clickhouse-url: RSS, 1st half -> 2nd half",
            "{} -> {} MB".format(*server_mode["rss_sustained_halves_mb"]),
            "",
            "",
        ),
        (
            "--clickhouse-url: acknowledged",
            f"{server_mode['acked_spans_per_s']:,} /s",
            ratio(server_mode["acked_spans_per_s"]),
            "",
        ),
        (
            "--clickhouse-url: stored by the stand-in (chDB)",
            f"{server_mode['stored_spans_per_s_stand_in']:,} /s",
            ratio(server_mode["stored_spans_per_s_stand_in"]),
            "",
        ),
        ("bytes per span on disk (demo mix)", f"{bytes_per_span:.1f} B", "", f"<= {TARGETS['bytes_per_span']} B"),
        ("segments set aside in the quarantine", f"{quarantined}", "", "0"),
        ("spans taken for an exporter's retry (not stored)", f"{retried:,}", "", "0"),
    ]
    print(
        f"collector ingest, OTLP/HTTP protobuf, embedded store (memory cap {memory_bytes >> 20} MB"
        f"{', every part synced' if args.fsync_parts else ''}), log on, "
        f"{result['segment_mb']} MiB segments "
        f"of ~{statistics.median(result['segments']):,.0f} spans ({result['machine']})"
    )
    print(f"{'':<52} {'measured':>18} {'/ ref':>6} {'target':>10}")
    for name, value, vs_ref, target in rows:
        print(f"{name:<52} {value:>18} {vs_ref:>6} {target:>10}")
    for phase, peaks in rss.probe_peaks.items():
        print(f"engine memory peaks, {phase}: " + ", ".join(f"{k} {v:,.0f}" for k, v in peaks.items()) + " MB")
    per_insert = ", ".join(f"{k} {v['ms_per_insert']:.0f}" for k, v in profile.items())
    print(f"ms per insert of one segment: {per_insert}")
    fixed = ", ".join(f"{k} {v['ms_per_one_request_insert']:.0f}" for k, v in profile.items())
    print(f"ms per insert of one request (<= 512 spans; the fixed cost of an insert): {fixed}")
    print(
        f"headline: capacity {capacity:,} spans/s stored as they came (target >= {TARGETS['spans_per_s']:,}), "
        f"{capacity / reference:.2f} of the engine floor ({reference:,}/s today); overloaded at "
        f"{offered_rate / reference:.1f}x the floor, {stored_rate:,.0f} spans/s stored"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(work, ignore_errors=True)  # the store and the log: several hundred MB per run
    if retried:
        print(f"collector_ingest: {retried:,} spans of the load were taken for retries: figures void", file=sys.stderr)
        return 1
    return 0


SERVER_MODE_COLLECTOR = r"""
import sys
from pathlib import Path
from clinotel.collector.service import Collector, CollectorConfig
url, wal, segment_bytes = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
c = Collector(CollectorConfig(
    clickhouse_url=url, database="bench", wal_dir=wal, otlp_http=("127.0.0.1", 0), otlp_grpc=None,
    http=None, insecure_no_auth=True, wal_segment_bytes=segment_bytes, metrics_interval_s=None,
))
c.start()
print(c.http.port, flush=True)
sys.stdin.readline()  # then killed: what the log still holds stays on disk, as after a crash
"""
"""`serve --clickhouse-url` in a process of its own (no engine in it), to measure its memory."""


def _server_mode(requests_file: Path, work: Path, segment_bytes: int, seconds: float) -> dict[str, Any]:
    """The collector with `--clickhouse-url`, under the same sustained load, writing to a stand-in
    server: chDB in a third process behind ClickHouse's HTTP interface (`_chdb_server.py`; no
    ClickHouse server can be installed here). The collector's process holds no engine: its RSS is
    the figure; its stored rate (spans in the stand-in 2 s after the load, over the whole time) is
    the stand-in's, not a server's."""
    here = Path(__file__).resolve().parent
    port_file = work / "server.port"
    server = subprocess.Popen([sys.executable, str(here / "_chdb_server.py"), str(work / "server"), str(port_file)])
    collector: subprocess.Popen[str] | None = None
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the stand-in ClickHouse server did not start")
            time.sleep(0.1)
        url = f"http://127.0.0.1:{port_file.read_text()}"
        collector = subprocess.Popen(
            [sys.executable, "-c", SERVER_MODE_COLLECTOR, url, str(work / "server-wal"), str(segment_bytes)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert collector.stdout is not None
        port = int(collector.stdout.readline())
        with RssSampler(collector.pid) as rss:
            rss.enter("idle")
            time.sleep(0.5)
            rss.enter("sustained")
            started = time.monotonic()
            load = _loadgen(requests_file, port, seconds=seconds, threads=4)
            rss.enter("after")  # the writer still sending what the log holds
            time.sleep(2.0)
            rss.enter("end")
        import clickhouse_connect

        stored = clickhouse_connect.get_client(dsn=url).command("SELECT count() FROM bench.otel_traces")
        elapsed = time.monotonic() - started
        first, second = rss.halves("sustained")
        return {
            "idle_rss_mb": round(rss.peaks.get("idle", 0.0)),
            "peak_rss_mb": round(max(rss.peaks.get("sustained", 0.0), rss.peaks.get("after", 0.0))),
            "rss_sustained_halves_mb": [round(first), round(second)],
            "acked_spans_per_s": round(load["spans"] / load["seconds"]),
            "stored_spans_per_s_stand_in": round(int(stored) / elapsed),
        }
    finally:
        for p in (collector, server):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(timeout=30)
        if collector is not None:
            for pipe in (collector.stdin, collector.stdout):
                if pipe is not None:
                    pipe.close()


CAPACITY_STEP: Final = 5_000
CAPACITY_FROM: Final = 25_000
CAPACITY_SECONDS: Final = 20.0
CAPACITY_BACKLOG_SEGMENTS: Final = 2
"""A step is kept up with when the log holds at most this many segments at its end (the open one
and one being inserted): behind by 4 % at 50,000 spans/s, the log grows by about a segment more
in 20 s. (The load process's own pacing is checked too: at least 95 % of the rate acknowledged.)"""


_ALLOCATOR_TOTALS: Final = re.compile(r"Allocated: (\d+), active: \d+, metadata: \d+ [^\n]*?resident: (\d+)")
_ALLOCATOR_DIRTY: Final = re.compile(r"Merged arenas stats:.*?dirty:\s+N/A\s+(\d+)", re.S)
_ALLOCATOR_PAGE: Final = re.compile(r"Page size: (\d+)")


def _engine_memory_probe(client: Any) -> Callable[[], dict[str, float]]:
    """The embedded engine's own memory figures in MB, read on `client` (one of its own, so a look
    does not wait behind the writer's insert): its count (`MemoryTracking`, what its cap is checked
    against), its allocator's bytes in use and resident, the freed pages the allocator keeps for
    reuse (jemalloc's statistics), and what running queries and merges hold."""

    def probe() -> dict[str, float]:
        mb = float(1 << 20)
        tracked = client.query("SELECT value FROM system.metrics WHERE metric = 'MemoryTracking'").result_rows
        stats = str(client.query("SELECT * FROM system.jemalloc_stats").result_rows[0][0])
        queries = client.query("SELECT sum(memory_usage) FROM system.processes").result_rows[0][0]
        merges = client.query("SELECT sum(memory_usage) FROM system.merges").result_rows[0][0]
        totals, dirty, page = (
            _ALLOCATOR_TOTALS.search(stats),
            _ALLOCATOR_DIRTY.search(stats),
            _ALLOCATOR_PAGE.search(stats),
        )
        if not (tracked and totals and dirty and page):  # counted as a failed look, not as zeros
            raise ValueError("the engine's memory figures are not where this probe reads them")
        return {
            "engine_count": float(tracked[0][0]) / mb,
            "allocator_in_use": int(totals.group(1)) / mb,
            "allocator_resident": int(totals.group(2)) / mb,
            "freed_pages_kept": int(dirty.group(1)) * int(page.group(1)) / mb,
            "queries": float(queries or 0) / mb,
            "merges": float(merges or 0) / mb,
        }

    return probe


def _wait_for_merges(client: Any, limit_s: float) -> bool:
    """Until no merge has run for two looks in a row (True), or `limit_s` passed (False)."""
    deadline = time.monotonic() + limit_s
    quiet = 0
    while time.monotonic() < deadline:
        time.sleep(1.0)
        busy = int(client.query("SELECT count() FROM system.merges").result_rows[0][0])
        quiet = quiet + 1 if busy == 0 else 0
        if quiet >= 2:
            return True
    return False


def _thread_cpu() -> dict[str, tuple[str, float]]:
    """Each of this process's threads, by id: its name and CPU seconds so far (the engine names its
    own, `MergeMutate` for merges, and renames a pool thread for each task it runs; the
    interpreter's threads are all `python`)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, tuple[str, float]] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            name = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        out[tid] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return out


def _cores_by_thread(
    before: dict[str, tuple[str, float]], after: dict[str, tuple[str, float]], seconds: float
) -> dict[str, float]:
    """Cores used between two `_thread_cpu` looks, summed by each thread's latest name (deltas
    per thread id, so a renamed thread is not counted from zero); under 1 % of a core left out."""
    used: dict[str, float] = {}
    for tid, (name, cpu) in after.items():
        used[name] = used.get(name, 0.0) + cpu - before.get(tid, (name, 0.0))[1]
    return {
        name: round(c / seconds, 2) for name, c in sorted(used.items(), key=lambda kv: -kv[1]) if c >= 0.01 * seconds
    }


def _drain(collector: Any) -> None:
    """Write everything the log holds."""
    while collector.wal.pending_bytes:
        collector.writer.drain()


def _machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (every process, /proc/stat), so far."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _capacity(
    path: Path, port: int, collector: Any, segment_bytes: int, stored: Callable[[], int], *, quick: bool
) -> list[dict[str, Any]]:
    """Offer rising rates, each for `CAPACITY_SECONDS` on an empty log, until the store falls
    behind: each step's offered, acknowledged and stored rates (`stored` counts the spans in
    `otel_traces`), and what was left in the log."""
    rates = [10_000] if quick else list(range(CAPACITY_FROM, 200_001, CAPACITY_STEP))
    seconds = 2.0 if quick else CAPACITY_SECONDS
    steps = []
    for rate in rates:
        _drain(collector)
        before, started, threads_before, machine_before = stored(), time.monotonic(), _thread_cpu(), _machine_busy()
        load = _loadgen(path, port, seconds=seconds, threads=4, rate=rate)
        backlog = collector.wal.pending_bytes
        elapsed = time.monotonic() - started
        threads_after, machine_after = _thread_cpu(), _machine_busy()
        acked = load["spans"] / load["seconds"]
        kept_up = load["refused"] == 0 and backlog <= CAPACITY_BACKLOG_SEGMENTS * segment_bytes and acked >= 0.95 * rate
        steps.append(
            {
                "offered_spans_per_s": rate,
                "seconds": seconds,
                "acked_spans_per_s": round(acked),
                "stored_spans_per_s": round((stored() - before) / elapsed),
                "backlog_mb": round(backlog / (1 << 20), 1),
                "refused_requests": load["refused"],
                "kept_up": kept_up,
                "machine_busy_cores": round((machine_after - machine_before) / elapsed, 2),
                "collector_cores_by_thread": _cores_by_thread(threads_before, threads_after, elapsed),
            }
        )
        if not kept_up:
            break
    return steps


def _one_pass(path: Path, port: int) -> int:
    import http.client

    spans = 0
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for body, count, _ in read_requests(path):
        conn.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"one pass refused with {response.status}")
        spans += count
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
