"""The embedded engine's memory cap (`--memory-mb`): set on the engine when the collector opens
it, held by a query that would pass it (the process survives), and told apart from an insert's own
cap: an engine full of other work is retried, an insert too big for the engine alone is refused.
Each case runs a fresh engine in a child process (the engine's server settings are per process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from clinotel.collector.service import Collector, CollectorConfig
from clinotel.collector.store import schema
from clinotel.collector.store.embedded import MERGE_TREE_SETTINGS
from clinotel.collector.store.segments import EmbeddedSegments

CHILD = r"""
import json, sys, time
from pathlib import Path
from clinotel.collector.store.embedded import connect
from clinotel.collector.store.segments import _clickhouse_refused

client = connect(Path(sys.argv[1]), memory_bytes=int(sys.argv[2]) << 20)
names = ("max_server_memory_usage", "mark_cache_size", "uncompressed_cache_size")
settings = dict(client.query(
    "SELECT name, value FROM system.server_settings WHERE name IN %(n)s", parameters={"n": names}
).result_rows)
out = {"settings": settings}
for case, sql in (
    ("engine", "SELECT uniqExact(number) FROM numbers(100000000)"),
    ("query", "SELECT uniqExact(number) FROM numbers(100000000) SETTINGS max_memory_usage = 20000000"),
):
    try:
        client.query(sql)
        out[case] = None
    except Exception as e:
        out[case] = {"refused": _clickhouse_refused(e), "message": str(e)[:300]}
    # the engine's count follows the allocator every 100 ms: let the first query's memory go back
    # (or the second would meet the engine's cap, not its own, on a busy machine)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and client.query(
        "SELECT value FROM system.metrics WHERE metric = 'MemoryTracking'"
    ).result_rows[0][0] > (int(sys.argv[2]) << 20) // 2:
        time.sleep(0.2)
out["after"] = client.query("SELECT 1").result_rows[0][0]
print(json.dumps(out))
"""


def _child(tmp_path: Path, memory_mb: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "data"), str(memory_mb)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_cap_is_set_and_held_and_a_full_engine_is_retried_not_refused(tmp_path: Path) -> None:
    out = _child(tmp_path, 256)
    assert out["settings"]["max_server_memory_usage"] == str(256 << 20)
    assert out["settings"]["mark_cache_size"] == str(32 << 20)
    assert out["settings"]["uncompressed_cache_size"] == "0"
    # a query past the engine's cap fails alone, on the engine's total: for a segment, a retry
    assert out["engine"] is not None
    assert "(total) memory limit exceeded" in out["engine"]["message"]
    assert out["engine"]["refused"] is False
    # past its own cap: refused (a segment too big for the engine is quarantined, not retried forever)
    assert out["query"] is not None
    assert "(total)" not in out["query"]["message"]
    assert out["query"]["refused"] is True
    assert out["after"] == 1


def test_reader_queries_get_a_quarter_of_the_engine(
    client: Any, engine_dir: Path, options: schema.SchemaOptions, tmp_path: Path
) -> None:
    config = CollectorConfig(
        database=options.database,
        wal_dir=tmp_path / "wal",
        otlp_http=("127.0.0.1", 0),
        otlp_grpc=None,
        http=("127.0.0.1", 0),
        data_dir=engine_dir / "data",
        insecure_no_auth=True,
        engine_memory_bytes=256 << 20,
    )
    c = Collector(config, client=client)
    c.start()
    try:
        assert c.reader is not None
        assert c.reader.limits.max_memory_usage == 64 << 20
    finally:
        c.stop()


@pytest.mark.parametrize("megabytes", [0, 64, 191, 1 << 25])
def test_a_cap_outside_the_engine_s_range_is_refused(megabytes: int) -> None:
    from clinotel.collector.service import ConfigError

    config = CollectorConfig(insecure_no_auth=True, engine_memory_bytes=megabytes << 20)
    with pytest.raises(ConfigError, match="--memory-mb: the embedded engine needs at least 192 MB"):
        config.validate()


def test_an_engine_at_its_cap_is_asked_to_free_caches_and_allocator_pages(
    client: Any, options: schema.SchemaOptions, pipeline: Any, tmp_path: Path
) -> None:
    from clickhouse_connect.driver.exceptions import DatabaseError

    store = EmbeddedSegments(client, pipeline, str(pipeline.write_proto(tmp_path)), 256 << 20)
    full = DatabaseError("Code: 241. DB::Exception: (total) memory limit exceeded: would use 520.00 MiB")
    full.code = 241  # type: ignore[attr-defined]
    freed = store.relieve(full)
    assert freed is not None
    assert "drop mark cache" in freed
    assert "jemalloc purge" in freed
    own = DatabaseError("Code: 241. DB::Exception: memory limit (for query) exceeded")
    own.code = 241  # type: ignore[attr-defined]
    assert store.relieve(own) is None, "an insert over its own cap is refused, not relieved"
    assert store.relieve(ConnectionError("refused")) is None
    assert client.query("SELECT 1").result_rows[0][0] == 1


STEADY = r"""
import json, os, random, sys, threading, time
from pathlib import Path
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from clinotel.collector.log import record
from clinotel.collector.log.wal import WriteAheadLog
from clinotel.collector.store import pipeline as ingest, schema
from clinotel.collector.store.embedded import connect
from clinotel.collector.store.embedded import MERGE_TREE_SETTINGS
from clinotel.collector.store.segments import EmbeddedSegments
from clinotel.collector.writer import SegmentWriter

work, cap_mb, rounds = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
client = connect(work / "data", memory_bytes=cap_mb << 20)
options = schema.SchemaOptions(database="steady")
schema.apply(client, options)
pipeline = ingest.install(client, options)
store = EmbeddedSegments(client, pipeline, str(pipeline.write_proto(work)), cap_mb << 20)
wal = WriteAheadLog(work / "wal", segment_bytes=1 << 20, max_age_s=60, fsync=False)
writer = SegmentWriter(wal, store)

exporter = InMemorySpanExporter()
provider = TracerProvider(resource=Resource.create({"service.name": "steady", "clinical.tenant.id": "t"}))
provider.add_span_processor(SimpleSpanProcessor(exporter))
tracer = provider.get_tracer("steady")
rng = random.Random(7)
for i in range(512):
    with tracer.start_as_current_span(f"stage {i % 9}", attributes={
        "clinical.workflow.kind": "triage", "clinical.queue.depth": rng.randrange(50),
        "clinical.workflow.id": "%032x" % rng.getrandbits(128), "server.address": f"ehr-{i % 7}",
    }):
        pass
request = encode_spans(exporter.get_finished_spans()).SerializeToString()

def rss_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0

peaks, phase, stop = {}, ["warm-up"], threading.Event()
def sample():
    while not stop.is_set():
        peaks[phase[0]] = max(peaks.get(phase[0], 0.0), rss_mb())
        time.sleep(0.05)
sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
for name in ("warm-up", "first", "second"):
    phase[0] = name
    for r in range(rounds):
        for k in range(12):  # ~1 MiB: one segment per round
            wal.append(record.frame(request + record.envelope("t", f"{name}-{r}-{k}", time.time_ns())))
        wal.flush()
        writer.drain(give_up_after_s=120)
stop.set(); sampler.join()
stored = client.query("SELECT count() FROM steady.otel_traces").result_rows[0][0]
tracked = client.query("SELECT value FROM system.metrics WHERE metric = 'MemoryTracking'").result_rows[0][0]
print(json.dumps({"peaks": peaks, "stored": stored, "quarantined": writer.stats.quarantined, "tracked": tracked}))
wal.close()
"""


def test_memory_does_not_grow_with_the_duration_of_the_load(tmp_path: Path) -> None:
    """The same load for twice as long: the collector's writer and engine hold what the first
    stretch needed, no more (no per-segment leak, caches and merges within the engine's cap)."""
    cap_mb, rounds = 256, 8
    done = subprocess.run(
        [sys.executable, "-c", STEADY, str(tmp_path), str(cap_mb), str(rounds)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["quarantined"] == 0
    assert out["stored"] == 3 * rounds * 12 * 512, "every span of every segment stored once"
    assert out["tracked"] <= cap_mb << 20, "the engine's own count stays under its cap"
    first, second = out["peaks"]["first"], out["peaks"]["second"]
    assert second <= first * 1.10 + 24, f"RSS grew with the load's duration: {first:.0f} -> {second:.0f} MB"


def test_the_engine_merges_column_by_column(tmp_path: Path) -> None:
    """Vertical merges: a horizontal merge of `otel_traces` held 400-500 MB beside the inserts."""
    out = subprocess.run(
        [sys.executable, "-c", MERGE_SETTINGS, str(tmp_path / "data")],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    settings = json.loads(out.stdout.strip().splitlines()[-1])
    assert settings == {**MERGE_TREE_SETTINGS, "max_server_memory_usage": str(300 << 20)}


MERGE_SETTINGS = r"""
import json, sys
from pathlib import Path
from clinotel.collector.store.embedded import connect
client = connect(Path(sys.argv[1]), memory_bytes=300 << 20)
rows = client.query(
    "SELECT name, value FROM system.merge_tree_settings WHERE name IN "
    "('vertical_merge_algorithm_min_rows_to_activate', 'vertical_merge_algorithm_min_columns_to_activate') "
    "UNION ALL SELECT name, value FROM system.server_settings WHERE name = 'max_server_memory_usage'"
).result_rows
print(json.dumps(dict(rows)))
"""
