"""One write-ahead-log segment into `otel_traces`: a single INSERT … SELECT that ClickHouse runs
over the segment read in its `Protobuf` format. Flattening resource → scope → span, tenant
stamping, the allowlist and PHI scrubbing all happen in the engine; Python never walks a span."""

from __future__ import annotations

from typing import Final

from clinotel.collector.otlp_proto import ONEOF_NAME, PROTO_MESSAGE
from clinotel.collector.schema import TRACES, TRACES_INSERT_COLUMNS, SchemaOptions
from clinotel.collector.sql import attribute_map, identifier, literal, scrub_sql
from clinotel.semconv import Scope
from clinotel.semconv import attributes as A

__all__ = ["SEGMENT_STRUCTURE", "insert_select", "segment_source"]

_ANY_VALUE: Final = (
    "Tuple(string_value String, bool_value Bool, int_value Int64, double_value Float64, bytes_value String, "
    f"{ONEOF_NAME} Enum8('none' = 0, 'string_value' = 1, 'bool_value' = 2, 'int_value' = 3, "
    "'double_value' = 4, 'bytes_value' = 7))"
)
_KV: Final = f"Array(Tuple(key String, value {_ANY_VALUE}))"

SEGMENT_STRUCTURE: Final = (
    "tenant String, batch_id String, received_unix_nano UInt64, "
    f"resource_spans Array(Tuple(resource Tuple(attributes {_KV}), scope_spans Array(Tuple("
    "scope Tuple(name String, version String), "
    "spans Array(Tuple(trace_id String, span_id String, trace_state String, parent_span_id String, name String, "
    "kind Int32, start_time_unix_nano UInt64, end_time_unix_nano UInt64, "
    f"attributes {_KV}, "
    f"events Array(Tuple(time_unix_nano UInt64, name String, attributes {_KV})), "
    f"links Array(Tuple(trace_id String, span_id String, trace_state String, attributes {_KV})), "
    "status Tuple(message String, code Int32)))))))"
)
"""The columns ClickHouse reads a segment into (names match the generated .proto's fields)."""

_SPAN_KINDS: Final = "['Unspecified', 'Internal', 'Server', 'Client', 'Producer', 'Consumer']"
_STATUS_CODES: Final = "['Unset', 'Ok', 'Error']"
_SPAN_SCOPES: Final = (Scope.SPAN,)
_EVENT_SCOPES: Final = (Scope.EVENT, Scope.SPAN)


def _hex_id(expr: str) -> str:
    """Lower-case hex of an id, or '' for a missing or all-zero one (as the exporter writes)."""
    return f"if(length({expr}) = 0 OR {expr} = repeat('\\0', length({expr})), '', lower(hex({expr})))"


def segment_source(path: str) -> str:
    """The FROM clause for a segment file the engine can read (embedded engine, or a server
    that shares the file system)."""
    return f"file({literal(path)}, 'Protobuf', {literal(SEGMENT_STRUCTURE)})"


def insert_select(o: SchemaOptions, source: str, schema_file: str, dedup_token: str) -> str:
    """`INSERT INTO otel_traces … SELECT … FROM <source>`; `source` is `segment_source(path)`,
    or `input(<SEGMENT_STRUCTURE>)` when the segment is the body of the request.

    `dedup_token` names the segment: inserting the same segment again (a retry, or a replay after
    a crash between insert and log truncation) is dropped by the table's deduplication."""
    tenant_key = literal(A.TENANT_ID.key)
    resource = attribute_map("rs.resource.attributes", (Scope.RESOURCE,))
    columns = ", ".join(identifier(c) for c in TRACES_INSERT_COLUMNS)
    return f"""INSERT INTO {o.name(TRACES)} ({columns})
SELECT
    fromUnixTimestamp64Nano(toInt64(span.start_time_unix_nano)) AS Timestamp,
    {_hex_id("span.trace_id")},
    {_hex_id("span.span_id")},
    {_hex_id("span.parent_span_id")},
    span.trace_state,
    {scrub_sql("span.name")},
    {_SPAN_KINDS}[least(greatest(span.kind, 0), 5) + 1],
    res[{literal(A.SERVICE_NAME.key)}],
    res,
    ss.scope.name,
    ss.scope.version,
    {attribute_map("span.attributes", _SPAN_SCOPES)},
    if(span.end_time_unix_nano > span.start_time_unix_nano, span.end_time_unix_nano - span.start_time_unix_nano, 0),
    {_STATUS_CODES}[least(greatest(span.status.code, 0), 2) + 1],
    {scrub_sql("span.status.message")},
    arrayMap(e -> fromUnixTimestamp64Nano(toInt64(e.time_unix_nano)), span.events),
    arrayMap(e -> {scrub_sql("e.name")}, span.events),
    arrayMap(e -> {attribute_map("e.attributes", _EVENT_SCOPES)}, span.events),
    arrayMap(l -> {_hex_id("l.trace_id")}, span.links),
    arrayMap(l -> {_hex_id("l.span_id")}, span.links),
    arrayMap(l -> l.trace_state, span.links),
    arrayMap(l -> {attribute_map("l.attributes", _SPAN_SCOPES)}, span.links)
FROM
(
    SELECT
        rs,
        mapUpdate({resource}, map({tenant_key}, tenant)) AS res
    FROM {source}
    ARRAY JOIN resource_spans AS rs
)
ARRAY JOIN rs.scope_spans AS ss
ARRAY JOIN ss.spans AS span
SETTINGS format_schema = {literal(schema_file + ":" + PROTO_MESSAGE)}, input_format_protobuf_oneof_presence = 1,
    insert_deduplicate = 1, insert_deduplication_token = {literal(dedup_token)}"""
