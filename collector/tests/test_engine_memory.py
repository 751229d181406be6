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
from clinotel.collector.store.embedded import MERGE_NICE, MERGE_TREE_SETTINGS
from clinotel.collector.store.segments import EmbeddedSegments

CHILD = r"""
import json, sys
from pathlib import Path
from clinotel.collector.store.embedded import connect
from clinotel.collector.store.segments import _clickhouse_refused

client = connect(Path(sys.argv[1]), memory_bytes=int(sys.argv[2]) << 20)
names = ("max_server_memory_usage", "mark_cache_size", "uncompressed_cache_size")
settings = dict(client.query(
    "SELECT name, value FROM system.server_settings WHERE name IN %(n)s", parameters={"n": names}
).result_rows)
out = {"settings": settings}
out["planner"] = client.query("SELECT getSetting('optimize_and_compare_chain')").result_rows[0][0]
sql = "SELECT uniqExact(number) FROM numbers(100000000)"
if sys.argv[3] == "query":
    sql += " SETTINGS max_memory_usage = 20000000"
if sys.argv[3] == "beside":  # the process holds twice the cap outside the engine; the engine's own work fits
    import time
    held = bytearray(int(sys.argv[2]) << 21)
    for i in range(0, len(held), 4096):
        held[i] = 1
    time.sleep(0.5)  # the engine corrects its count every 100 ms
    sql = "SELECT uniqExact(number) FROM numbers(3000000)"  # tens of MB, the engine's own
try:
    client.query(sql)
    out["failed"] = None
except Exception as e:
    out["failed"] = {"refused": _clickhouse_refused(e), "message": str(e)[:300]}
out["after"] = client.query("SELECT 1").result_rows[0][0]
print(json.dumps(out))
"""


def _script(script: str, *args: str, timeout: float = 120, cwd: Path | None = None) -> dict[str, Any]:
    """The JSON object `script` prints last, run in a Python process of its own (an engine per
    process); a failed run says what the process printed to stderr."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"the child process exited {done.returncode}: {done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _child(tmp_path: Path, memory_mb: int, case: str) -> dict[str, Any]:
    return _script(CHILD, str(tmp_path / case), str(memory_mb), case)


def test_the_cap_is_set_and_held_and_a_full_engine_is_retried_not_refused(tmp_path: Path) -> None:
    out = _child(tmp_path, 256, "engine")
    assert out["settings"]["max_server_memory_usage"] == str(256 << 20)
    assert out["settings"]["mark_cache_size"] == str(32 << 20)
    assert out["settings"]["uncompressed_cache_size"] == "0"
    assert out["planner"] is False  # PLANNER_SETTINGS, on the engine's own client too (the evaluator's)
    # a query past the engine's cap fails alone, on the engine's total: for a segment, a retry
    assert out["failed"] is not None
    assert "(total) memory limit exceeded" in out["failed"]["message"]
    assert out["failed"]["refused"] is False
    assert out["after"] == 1


def test_the_cap_counts_the_engine_s_memory_not_the_process_s(tmp_path: Path) -> None:
    """What the interpreter and the collector hold beside the engine does not count against its cap
    (docs/collector.md): 512 MB held by Python beside a 256 MB engine leaves its queries running."""
    out = _child(tmp_path, 256, "beside")
    assert out["failed"] is None
    assert out["after"] == 1


def test_a_query_past_its_own_cap_is_refused_not_retried(tmp_path: Path) -> None:
    # a fresh engine with room to spare, so the query meets its own cap and not the engine's total
    # (the allocator keeps what an earlier query freed)
    out = _child(tmp_path, 1024, "query")
    assert out["settings"]["max_server_memory_usage"] == str(1024 << 20)
    # a segment too big for the engine alone is quarantined, not retried forever
    assert out["failed"] is not None
    assert "(total)" not in out["failed"]["message"]
    assert "memory limit exceeded" in out["failed"]["message"]
    assert out["failed"]["refused"] is True
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
        engine_memory_bytes=512 << 20,
    )
    c = Collector(config, client=client)
    c.start()
    try:
        assert c.reader is not None
        assert c.reader.limits.max_memory_usage == 128 << 20
        assert c.wal is not None
        assert c.wal.segment_bytes == 2 << 20  # sized to the cap: an 8 MiB insert would not fit beside the rest
    finally:
        c.stop()


@pytest.mark.parametrize("megabytes", [0, 64, 447, 1 << 25])
def test_a_cap_outside_the_engine_s_range_is_refused(megabytes: int) -> None:
    from clinotel.collector.service import ConfigError

    config = CollectorConfig(insecure_no_auth=True, engine_memory_bytes=megabytes << 20)
    with pytest.raises(ConfigError, match="--memory-mb: the embedded engine needs at least 448 MB"):
        config.validate()


@pytest.mark.parametrize(
    ("megabytes", "segment_mb"),
    [(448, 1), (463, 1), (464, 2), (543, 2), (544, 4), (703, 4), (704, 8), (768, 8), (4096, 8)],
)
def test_the_log_s_segments_are_sized_to_what_the_engine_can_insert(megabytes: int, segment_mb: int) -> None:
    """An insert takes ~40 times its segment: one that cannot fit beside what the engine holds
    anyway (384 MB) is retried for as long as it does not, and keeps every later segment out."""
    config = CollectorConfig(insecure_no_auth=True, engine_memory_bytes=megabytes << 20)
    assert config.segment_bytes == segment_mb << 20
    assert segment_mb * 40 <= megabytes - 384
    # given explicitly, or with a server (whose memory is its own), the size is not derived
    assert CollectorConfig(engine_memory_bytes=megabytes << 20, wal_segment_bytes=3 << 20).segment_bytes == 3 << 20
    assert CollectorConfig(data_dir=None, clickhouse_url="http://127.0.0.1:8123").segment_bytes == 8 << 20


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


def test_the_engine_merges_column_by_column_and_less_often(tmp_path: Path) -> None:
    """Vertical merges (a horizontal merge of `otel_traces` held 400-500 MB beside the inserts),
    and about ten parts of a size to a merge rather than five (the merges' CPU)."""
    settings = _script(MERGE_SETTINGS, str(tmp_path / "data"))
    assert settings == {**MERGE_TREE_SETTINGS, "max_server_memory_usage": str(300 << 20)}
    assert settings["merge_selector_base"] == "10"
    assert settings["min_bytes_for_full_part_storage"] == str(32 << 20)


PART_STORAGE = r"""
import json, sys
from pathlib import Path
from clinotel.collector.store.embedded import PACKED_PART_BYTES, connect
client = connect(Path(sys.argv[1]), memory_bytes=512 << 20)
client.command("CREATE TABLE default.t (k UInt64, s String) ENGINE = MergeTree ORDER BY k")
for i in range(3):
    client.command(f"INSERT INTO default.t SELECT number, toString(number * {i}) FROM numbers({i * 1000}, 1000)")
active = "FROM system.parts WHERE table = 't' AND active"
parts = f"SELECT level, part_storage_type, rows {active} ORDER BY level, min_block_number"
small = client.query(parts).result_rows
paths = [p for (p,) in client.query(f"SELECT path {active}").result_rows]
files = sorted({f.name for p in paths for f in Path(p).iterdir()})
client.command("OPTIMIZE TABLE default.t FINAL")
merged = client.query(parts).result_rows
big_rows = PACKED_PART_BYTES // 200 + 10_000  # one block of ~38 MB
client.command(f"INSERT INTO default.t SELECT number, repeat('x', 200) FROM numbers(3000, {big_rows})")
big = client.query(f"{parts.replace('ORDER BY', 'AND rows > 3000 ORDER BY')}").result_rows
total = client.query("SELECT count(), sum(k), countIf(s != '') FROM default.t").result_rows[0]
print(json.dumps({"small": small, "files": files, "merged": merged, "big": big, "total": total, "big_rows": big_rows}))
"""


def test_small_parts_are_one_file_and_large_parts_are_not(tmp_path: Path) -> None:
    """The parts an insert writes are packed (one file instead of about fourteen: creating files
    was a fifth of an insert's CPU here), and a small merge's too; a part past
    `PACKED_PART_BYTES` is written as before (a packed part is assembled in memory); every row
    reads back."""
    seen = _script(PART_STORAGE, str(tmp_path / "data"))
    assert seen["small"] == [[0, "Packed", 1000]] * 3
    assert seen["files"] == ["data.packed"]
    assert seen["merged"] == [[1, "Packed", 3000]]
    assert seen["big"] == [[0, "Full", seen["big_rows"]]]
    rows = 3000 + seen["big_rows"]
    assert seen["total"] == [rows, sum(range(rows)), rows]


ROLLUP_PARTS = r"""
import json, sys
from pathlib import Path
from clinotel.collector.store import pipeline as ingest, rollups
from clinotel.collector.store.embedded import full_parts
from clinotel.model.tables import ROLLUP_TABLES
from collector.tests.fixtures import started_collector
from collector.tests.test_outcome_join import _scenario
work = Path(sys.argv[1])
collector = started_collector(work)
client, o = collector.client, collector.options
_scenario(client, ingest.install(client, o), work)
done = rollups.refresh(client, o)
def kinds(where):
    parts = f"system.parts WHERE database = '{o.database}' AND active AND {where}"
    sql = f"SELECT DISTINCT table, part_storage_type FROM {parts}"
    return sorted(client.query(sql).result_rows)
rolled = kinds(f"table IN {tuple(ROLLUP_TABLES)}")
inserted = kinds("table IN ('otel_traces', 'clinical_workflows')")
again = full_parts(client, o.database, ROLLUP_TABLES)
collector.stop()
print(json.dumps({"rows": done.rows, "rolled": rolled, "inserted": inserted, "again": again}))
"""


def test_the_rollups_are_written_full_and_an_inserts_parts_packed(tmp_path: Path) -> None:
    """An embedded collector's rollups write full parts, the refresh's included (staged, then moved
    whole into the rollup), while the inserts' small parts stay packed: a dashboard panel reading
    packed rollup parts took about a millisecond more each at 30M spans. A second open leaves the
    tables' metadata as it is."""
    seen = _script(ROLLUP_PARTS, str(tmp_path), cwd=Path(__file__).resolve().parents[2])
    assert seen["rows"] > 0
    assert {kind for _, kind in seen["rolled"]} == {"Full"}
    assert {table for table, _ in seen["rolled"]} >= {"clinical_workflow_hours", "clinical_stage_hours"}
    assert seen["inserted"] == [["clinical_workflows", "Packed"], ["otel_traces", "Packed"]]
    assert seen["again"] == []


QUERY_LOGS = r"""
import json, sys
from pathlib import Path
from clinotel.collector.store.embedded import DIAGNOSTIC_LOGS, connect
client = connect(Path(sys.argv[1]), memory_bytes=300 << 20, system_logs=sys.argv[2] == "on")
client.query("SELECT 'a reader query'")
client.command("SYSTEM FLUSH LOGS")
tables = [r[0] for r in client.query("SELECT name FROM system.tables WHERE database = 'system'").result_rows]
logged = 0
if "query_log" in tables:
    logged = client.query("SELECT count() FROM system.query_log WHERE query LIKE '%a reader query%'").result_rows[0][0]
print(json.dumps({"logs": sorted(t for t in DIAGNOSTIC_LOGS if t in tables), "logged": logged}))
"""


@pytest.mark.parametrize("logs", ["off", "on"])
def test_the_engine_keeps_no_query_log_unless_asked(tmp_path: Path, logs: str) -> None:
    """A collector's engine logs no query: `system.query_log` would hold every reader's SQL, whichever
    tenant sent it. The ingest profile asks for the engine's logs (`system_logs=True`) and gets them."""
    seen = _script(QUERY_LOGS, str(tmp_path / "data"), logs)
    if logs == "off":
        assert seen == {"logs": [], "logged": 0}
    else:
        assert seen["logs"] == sorted(("part_log", "query_log", "query_views_log"))
        assert seen["logged"] >= 1


MERGE_SETTINGS = r"""
import json, sys
from pathlib import Path
from clinotel.collector.store.embedded import MERGE_TREE_SETTINGS, connect
client = connect(Path(sys.argv[1]), memory_bytes=300 << 20)
rows = client.query(
    "SELECT name, value FROM system.merge_tree_settings WHERE name IN "
    f"{tuple(MERGE_TREE_SETTINGS)} "
    "UNION ALL SELECT name, value FROM system.server_settings WHERE name = 'max_server_memory_usage'"
).result_rows
print(json.dumps(dict(rows)))
"""


MERGE_NICENESS = r"""
import json, os, sys, threading, time
from pathlib import Path
from clinotel.collector.store.embedded import connect
client = connect(Path(sys.argv[1]), memory_bytes=512 << 20)
client.command("CREATE TABLE default.t (x UInt64, s String) ENGINE = MergeTree ORDER BY x")
seen, stop = set(), threading.Event()

def sample():
    while not stop.is_set():
        for tid in os.listdir("/proc/self/task"):
            try:
                if open(f"/proc/self/task/{tid}/comm").read().strip() == "MergeMutate":
                    seen.add(os.getpriority(os.PRIO_PROCESS, int(tid)))
            except OSError:  # the thread ended meanwhile
                continue
        time.sleep(0.005)

sampler = threading.Thread(target=sample)
sampler.start()
for i in range(40):  # parts enough for the engine to merge them in the background
    client.command(f"INSERT INTO default.t SELECT number, repeat('x', 100) FROM numbers({i * 200000}, 200000)")
time.sleep(2)
stop.set()
sampler.join()
merged = client.query("SELECT count() FROM system.parts WHERE table = 't' AND active").result_rows[0][0]
print(json.dumps({"nice": sorted(seen), "parts": merged}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads thread priorities from /proc")
def test_the_engine_merges_at_a_lower_priority_than_the_writer(tmp_path: Path) -> None:
    """Merges cost about as much CPU as the inserts that cause them: they run niced, so a backlog of
    them takes what the writer's insert and the receiver leave (docs/collector.md)."""
    seen = _script(MERGE_NICENESS, str(tmp_path / "data"))
    assert seen["parts"] < 40, "the engine merged nothing: the test saw no merge"
    assert MERGE_NICE in seen["nice"], seen


NEVER_FITS = r"""
import json, sys, time
from pathlib import Path
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from clickhouse_connect.driver.exceptions import DatabaseError
from clinotel.collector import leb128
from clinotel.collector.log import record as otlp_proto
from clinotel.collector.log.wal import WriteAheadLog, read_records
from clinotel.collector.store import pipeline as ingest
from clinotel.collector.store import schema
from clinotel.collector.store.embedded import connect
from clinotel.collector.store.segments import EmbeddedSegments
from clinotel.collector.writer import SegmentWriter

root, attributes, cap = Path(sys.argv[1]), int(sys.argv[2]), 448 << 20
client = connect(root / "data", memory_bytes=cap)
options = schema.SchemaOptions()
schema.apply(client, options)
pipeline = ingest.install(client, options)
store = EmbeddedSegments(client, pipeline, str(pipeline.write_proto(root)), cap)

def request(span_bytes: bytes) -> bytes:
    def field(number: int, payload: bytes) -> bytes:
        return leb128.encode(number << 3 | 2) + leb128.encode(len(payload)) + payload
    return field(1, field(2, field(2, span_bytes)))  # request > resource spans > scope spans > span

def span(n: int) -> bytes:
    return Span(trace_id=bytes([n]) * 16, span_id=bytes([n]) * 8, name=f"span {n}",
                start_time_unix_nano=time.time_ns(), end_time_unix_nano=time.time_ns() + 1).SerializeToString()

# one request of millions of tiny unregistered attributes (each `{key: "k"}`, five bytes), beside
# another tenant's span in the same segment; a later segment with a third tenant's span
tiny = leb128.encode(9 << 3 | 2) + b"\x03\x0a\x01k"
wal = WriteAheadLog(root / "wal", segment_bytes=8 << 20)
wal.append(otlp_proto.frame(request(span(1)) + otlp_proto.envelope("general", "a", time.time_ns())))
wal.append(otlp_proto.frame(request(span(2) + tiny * attributes) + otlp_proto.envelope("heavy", "b", time.time_ns())))
wal.flush()
wal.append(otlp_proto.frame(request(span(3)) + otlp_proto.envelope("later", "c", time.time_ns())))
wal.flush()
writer = SegmentWriter(wal, store)
started = time.monotonic()
writer.start()
traces = options.name(schema.TRACES)
stored = []
while time.monotonic() - started < 120 and "later" not in [tenant for tenant, _ in stored]:
    time.sleep(0.5)
    try:  # this poll is no reader of the collector's, so it is not paused for the writer's try alone
        stored = client.query(f"SELECT TenantId, count() FROM {traces} GROUP BY 1 ORDER BY 1").result_rows
    except DatabaseError as error:
        if "MEMORY_LIMIT_EXCEEDED" not in str(error):
            raise
writer.stop(drain=False)
reasons = [p.read_text() for p in (root / "wal" / "quarantine").glob("*.reason.txt")]
client.command("CREATE TABLE default.m (x UInt64) ENGINE = MergeTree ORDER BY x")
for i in range(3):
    client.command(f"INSERT INTO default.m VALUES ({i})")
client.command("OPTIMIZE TABLE default.m FINAL")  # refused while merges are stopped
parts = client.query("SELECT count() FROM system.parts WHERE table = 'm' AND active").result_rows[0][0]
kept = [len(list(read_records(p))) for p in (root / "wal" / "quarantine").glob("*.wal")]
print(json.dumps({"stored": stored, "seconds": round(time.monotonic() - started, 1), "reasons": reasons,
                  "quarantined": writer.stats.quarantined, "kept_records": kept, "splits": writer.stats.splits,
                  "parts_after_optimize": parts}))
"""


def test_a_segment_that_never_fits_is_set_aside_and_later_segments_are_stored(tmp_path: Path) -> None:
    """A request of millions of tiny attributes makes its segment's insert pass the engine's cap,
    which the engine reports as its total: retried as a busy engine, it kept every later segment
    out of the store for good. After a relief, the next try runs with the merges paused; failing
    on the total then, the segment is refused, and after a few tries set aside with the reason,
    and the later segment is stored. A memory refusal is not halved (`request_fault`), but the
    request (15 MB) is bigger than a segment, so the log gave it a segment of its own: the other
    tenant's span, acknowledged just before it, is stored, not set aside with it (until December it
    shared the quarantine). The merges run again afterwards."""
    out = _script(NEVER_FITS, str(tmp_path), str(3_000_000), timeout=240)
    assert out["stored"] == [["general", 1], ["later", 1]], out
    assert out["quarantined"] == 1
    assert out["kept_records"] == [1], "the heavy request alone"
    assert out["splits"] == 0
    assert len(out["reasons"]) == 1
    assert "memory limit exceeded" in out["reasons"][0]
    assert out["parts_after_optimize"] == 1, "the merges were left stopped"


WORKFLOW_PARTS = r"""
import json, sys
from pathlib import Path
from collector.tests.fixtures import started_collector
work = Path(sys.argv[1])
collector = started_collector(work)
client, o = collector.client, collector.options
table = f"{o.database}.clinical_workflows"
for half in range(2):  # two parts whose merge holds ~24 MB of data: past the engine's 10 MB for a wide part
    client.command(
        f"INSERT INTO {table} (TenantId, WorkflowKind, TraceId, StartTime, WorkflowId) "
        f"SELECT 't', 'triage', toString(number), now64(9), repeat('w', 1200) FROM numbers({half * 10000}, 10000)"
    )
def kinds():
    sql = (f"SELECT DISTINCT part_type FROM system.parts WHERE database = '{o.database}' "
           "AND table = 'clinical_workflows' AND active")
    return sorted(r[0] for r in client.query(sql).result_rows)
inserted = kinds()
client.command(f"OPTIMIZE TABLE {table} FINAL")
merged = kinds()
size = client.query(
    f"SELECT sum(data_uncompressed_bytes), sum(rows) FROM system.parts WHERE database = '{o.database}' "
    "AND table = 'clinical_workflows' AND active"
).result_rows[0]
collector.stop()
print(json.dumps({"inserted": inserted, "merged": merged, "size": list(size)}))
"""


def test_the_workflows_parts_are_compact_when_written_and_when_merged(tmp_path: Path) -> None:
    """`clinical_workflows` (AggregatingMergeTree: the engine merges that kind with every column at
    once, never column by column) writes compact parts at any size, an insert's and a merge's:
    wide, a merge of 16,000 of the demo's workflows held a buffer per column stream, 187 MB of the
    engine's memory (migration 23)."""
    seen = _script(WORKFLOW_PARTS, str(tmp_path), cwd=Path(__file__).resolve().parents[2])
    assert seen["size"][0] > 20 << 20
    assert seen["size"][1] == 20000
    assert seen["inserted"] == ["Compact"]
    assert seen["merged"] == ["Compact"]
