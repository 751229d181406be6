"""Where the embedded collector's CPU goes, per span stored: its insert view by view, and the
merges the insert leaves, table by table.

The demo's span mix, framed as the log frames it and cut where the log seals a segment, is
inserted `rounds` times through the collector's own pipeline (its `Null` table, checks and views),
each segment beside the same segment inserted into the reference, merging as a collector does;
then the merges run until none is left. The engine's own logs (`connect(system_logs=True)`) give the CPU of
every thread of each INSERT and of each merge, each INSERT's memory at its peak, and each view's
time in an insert. The fixed cost of
an insert, whatever its size, is read from inserts of one request (<= 512 spans).

Reference, in the same run: the same segments inserted without checks into a bare `otel_traces`
(the engine's floor, as in `collector_ingest.py`). The insert runs on one core: `1e6 / insert
us per span` is what the writer can store at most, whatever the merges take on the other.

    python benchmarks/ingest_profile.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from collector_ingest import (
    _demo_requests,
    _segments,
    _wait_for_merges,
    engine_floor,
    insert_when_room,
    one_request,
)

CPU_US = "(ProfileEvents['UserTimeMicroseconds'] + ProfileEvents['SystemTimeMicroseconds'])"
KERNEL_US = "ProfileEvents['SystemTimeMicroseconds']"
DATABASE = "profile"
REFERENCE_DATABASE = "profile_ref"
FIXED_INSERTS = 5


def _insert(client: Any, sql: str, comment: str) -> None:
    """One INSERT, logged under `comment`; an engine at its cap (merges finishing) is waited for."""
    insert_when_room(client, f"{sql}, log_queries = 1, log_query_views = 1, log_comment = '{comment}'")


def _view(qualified: str) -> str:
    """A view's name without its database; the ingest pipeline's by what it does."""
    from clinotel.collector.store.pipeline import INPUT_PREFIX

    name = qualified.split(".", 1)[1]
    return "flatten+checks+otel_traces" if name.startswith(INPUT_PREFIX) else name.removesuffix("_mv")


def _finished(comment: str) -> str:
    """The query log's condition for the finished queries logged under `comment`."""
    return f"type = 'QueryFinish' AND log_comment = '{comment}'"


def _queries(comment: str) -> str:
    """The ids of the finished queries logged under `comment` (a subquery)."""
    return f"SELECT query_id FROM system.query_log WHERE {_finished(comment)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run (under 60 s)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument(
        "--fsync-parts", action="store_true",
        help="the engine syncs every inserted part to disk, as `clinotel serve --fsync-parts` (what it costs here)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    workflows, rounds, merge_wait_s = (1500, 2, 30.0) if args.quick else (8000, 4, 180.0)

    from clinotel.collector.service import CollectorConfig
    from clinotel.collector.store import pipeline as ingest
    from clinotel.collector.store import schema
    from clinotel.collector.store.embedded import connect, segment_bytes_for

    memory_bytes = CollectorConfig.engine_memory_bytes
    work = Path(tempfile.mkdtemp(prefix="clinotel-profile-"))
    try:
        _demo_requests(workflows, 512, work / "requests.bin")
        segments = _segments(work / "requests.bin", segment_bytes_for(memory_bytes), work / "segments")
        spans = sum(n for _, n in segments) * rounds
        client = connect(work / "data", memory_bytes=memory_bytes, system_logs=True, fsync_parts=args.fsync_parts)
        options = schema.SchemaOptions(database=DATABASE)
        schema.apply(client, options)
        pipeline = ingest.install(client, options)
        proto = str(pipeline.write_proto(work))
        client.command(f"CREATE DATABASE {REFERENCE_DATABASE}")
        reference = engine_floor(client, REFERENCE_DATABASE, options.name(schema.TRACES))

        # 1. the inserts, merging as a collector does: each segment into the pipeline, then the reference
        for r in range(rounds):
            for i, (path, _) in enumerate(segments):
                for into, comment in ((None, "insert"), (reference, "reference")):
                    sql = pipeline.insert_from_file(str(path), f"{comment}-{r}-{i}", proto, into=into)
                    _insert(client, sql, comment)
        # 2. the fixed cost: inserts of one request
        small = one_request(segments[0][0])
        for i in range(FIXED_INSERTS):
            _insert(client, pipeline.insert_from_file(str(small), f"fixed-{i}", proto), "fixed")
        # 3. the merges those inserts leave, run out
        settled = _wait_for_merges(client, merge_wait_s)
        client.command("SYSTEM FLUSH LOGS")

        def rows(sql: str) -> list[tuple[Any, ...]]:
            return [tuple(row) for row in client.query(sql).result_rows]

        def logged(aggregates: str, comment: str) -> tuple[Any, ...]:
            """`aggregates` over the finished queries logged under `comment`."""
            return rows(f"SELECT {aggregates} FROM system.query_log WHERE {_finished(comment)}")[0]

        cpu = {comment: logged(f"sum({CPU_US}), sum({KERNEL_US})", comment) for comment in ("insert", "reference")}
        insert_us = cpu["insert"][0] / spans
        reference_us = cpu["reference"][0] / spans
        kernel_share = cpu["insert"][1] / max(cpu["insert"][0], 1)
        views_ms = {
            _view(name): round(float(ms), 1)
            for name, ms in rows(
                "SELECT view_name, avg(view_duration_ms) FROM system.query_views_log "
                f"WHERE initial_query_id IN ({_queries('insert')}) AND view_name LIKE '{DATABASE}.%' "
                "GROUP BY view_name ORDER BY 2 DESC"
            )
        }
        fixed_views_ms = {
            _view(name): round(float(ms), 1)
            for name, ms in rows(
                "SELECT view_name, median(view_duration_ms) FROM system.query_views_log "
                f"WHERE initial_query_id IN ({_queries('fixed')}) GROUP BY view_name ORDER BY 2 DESC"
            )
        }
        insert_ms, fixed_ms = (float(logged("median(query_duration_ms)", c)[0]) for c in ("insert", "fixed"))
        insert_mb, reference_mb = (round(logged("max(memory_usage)", c)[0] / 1e6) for c in ("insert", "reference"))
        merges = {
            table: (round(us / spans, 2), int(n), int(merged), round(peak / 1e6))
            for table, us, n, merged, peak in rows(
                f"SELECT table, sum({CPU_US}), count(), sum(rows), max(peak_memory_usage) FROM system.part_log "
                f"WHERE database = '{DATABASE}' AND event_type = 'MergeParts' AND table != '{schema.VERSIONS}' "
                "GROUP BY table ORDER BY 2 DESC"
            )
        }
        merge_us = sum(m[0] for m in merges.values())
        client.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    result = {
        "benchmark": "ingest_profile",
        "span_mix": f"clinotel demo, {workflows:,} workflows",
        "fsync_parts": args.fsync_parts,
        "segments": [n for _, n in segments],
        "rounds": rounds,
        "spans_inserted": spans,
        "reference_us_per_span": round(reference_us, 2),
        "insert_us_per_span": round(insert_us, 2),
        "insert_ratio_to_reference": round(insert_us / reference_us, 3),
        "insert_kernel_share": round(kernel_share, 3),
        "one_core_bound_spans_per_s": round(1e6 / insert_us),
        "insert_ms_median": insert_ms,
        "insert_peak_mb": insert_mb,
        "reference_insert_peak_mb": reference_mb,
        "insert_view_ms": views_ms,
        "fixed_insert_ms": fixed_ms,
        "fixed_view_ms": fixed_views_ms,
        "merge_us_per_span": round(merge_us, 2),
        "merges_by_table": {t: {"us_per_span": m[0], "merges": m[1], "rows_merged": m[2], "peak_mb": m[3]}
                            for t, m in merges.items()},
        "merges_settled": settled,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_implementation()} "
        f"{platform.python_version()}",
    }  # fmt: skip
    print(
        f"where the embedded collector's CPU goes, per span: {spans:,} spans in {len(segments) * rounds} inserts of "
        f"~{statistics.median(result['segments']):,.0f} spans ({result['machine']})"
        + (", every part synced to disk (--fsync-parts)" if args.fsync_parts else "")
    )
    print(f"{'':<56} {'CPU us/span':>12} {'/ ref':>6}")
    print(f"{'engine floor: same segments, no checks, bare otel_traces (ref)':<56} {reference_us:>12.1f} {1.0:>6.2f}")
    print(
        f"{'insert: the pipeline, its checks and every view':<56} {insert_us:>12.1f} {insert_us / reference_us:>6.2f}"
    )
    print(f"{'  of which in the kernel':<56} {insert_us * kernel_share:>12.1f}")
    for table, (us, n, merged, peak) in merges.items():
        print(f"{'merges of ' + table:<56} {us:>12.2f}   ({n} merges, {merged:,} rows, peak {peak} MB)")
    print(f"{'merges, all tables' + ('' if settled else ' (not all had run)'):<56} {merge_us:>12.1f}")
    print(f"memory of one segment's insert at its peak: {insert_mb} MB (the reference's: {reference_mb} MB)")
    per_view = ", ".join(f"{v} {ms:.0f}" for v, ms in views_ms.items())
    print(f"ms per insert of one segment: {insert_ms:.0f} in all; views (as the engine times them): {per_view}")
    fixed_view = ", ".join(f"{v} {ms:.0f}" for v, ms in fixed_views_ms.items())
    print(f"ms per insert of one request (the fixed cost): {fixed_ms:.0f} in all; views: {fixed_view}")
    print(
        f"headline: the insert takes {insert_us:.1f} us of CPU per span on one core ({insert_us / reference_us:.2f}x "
        f"the engine floor; at most {1e6 / insert_us:,.0f} spans/s stored), the merges it leaves {merge_us:.1f}"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
