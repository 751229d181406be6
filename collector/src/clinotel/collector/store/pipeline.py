"""Write-ahead-log segments into `otel_traces`, all the per-span work done by ClickHouse.

A segment is inserted whole, in ClickHouse's `Protobuf` format, into a `Null` table whose
materialized view flattens resource → scope → span, stamps the tenant, applies the allowlist and
scrubs PHI on its way into `otel_traces`; Python never walks a span. The embedded engine reads the
segment file itself, with the .proto from a file beside the log; a ClickHouse server gets the same
bytes as the body of the INSERT and the .proto in its settings, so it needs no schema file. One
path for both stores."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Final

from clinotel.collector.log import record as otlp_proto
from clinotel.collector.log.record import ONEOF_NAME, PROTO_MESSAGE
from clinotel.collector.store.phi_sql import attribute_map as _attribute_map
from clinotel.collector.store.phi_sql import drops_of_checked as _drops_of_checked
from clinotel.collector.store.phi_sql import judged_attributes as _judged_attributes
from clinotel.collector.store.phi_sql import map_of_checked as _map_of_checked
from clinotel.collector.store.phi_sql import only_allowed as _only_allowed
from clinotel.collector.store.phi_sql import scrub_sql as _scrub_sql
from clinotel.collector.store.phi_sql import value_sql
from clinotel.collector.store.schema import TRACES, TRACES_INSERT_COLUMNS, SchemaOptions
from clinotel.model.sql import identifier, literal
from clinotel.model.tables import TRACES_DROP_COLUMNS
from clinotel.semconv import Scope
from clinotel.semconv import attributes as A

__all__ = [
    "INPUT_PREFIX",
    "SEGMENT_STRUCTURE",
    "EarlierPipeline",
    "IngestSetupError",
    "Pipeline",
    "earlier_pipeline",
    "flatten_select",
    "install",
    "server_schema",
]

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

INPUT_PREFIX: Final = "clinotel_otlp_in_"
"""Names of the ingest pipelines' `Null` tables (and, with `_mv`, their views)."""
_SOURCE_PLACEHOLDER: Final = "{input}"

_SPAN_KINDS: Final = "['Unspecified', 'Internal', 'Server', 'Client', 'Producer', 'Consumer']"
_STATUS_CODES: Final = "['Unset', 'Ok', 'Error']"
_SPAN_SCOPES: Final = (Scope.SPAN,)
_EVENT_SCOPES: Final = (Scope.EVENT, Scope.SPAN)


def _hex_id(expr: str) -> str:
    """Lower-case hex of an id, or '' for a missing or all-zero one (as the exporter writes)."""
    return f"if(length({expr}) = 0 OR {expr} = repeat('\\0', length({expr})), '', lower(hex({expr})))"


def _unchecked_map(expr: str, scopes: tuple[Scope, ...]) -> str:
    """Every attribute as text, none dropped or scrubbed (`scopes` unused: the signature of
    `attribute_map`)."""
    del scopes
    return f"CAST(arrayMap(a -> (a.key, {value_sql('a.value')}), {expr}), {_MAP})"


_MAP: Final = "'Map(LowCardinality(String), String)'"


def flatten_select(o: SchemaOptions, source: str, *, checks: bool = True, count_drops: bool = True) -> str:
    """The SELECT that turns segment rows (`SEGMENT_STRUCTURE`) into `otel_traces` rows, each
    column named as in the table. `checks=False` leaves out the allowlist and the PHI rules (the
    tenant is still stamped): the engine's floor that the ingest benchmark measures the collector
    against; the collector never installs it. `count_drops=False` leaves out the drops' columns
    (a store from before migration 22)."""
    attribute_map = _attribute_map if checks else _unchecked_map
    tenant_key = literal(A.TENANT_ID.key)
    resource = attribute_map("rs.resource.attributes", (Scope.RESOURCE,))
    # The engine plans the flattening again for every block it inserts, and the planning was a
    # quarter of an insert's CPU (2026-12-08: 93 of 384 ms an 8 MiB segment), most of it the same
    # checks written once for each place they apply: the span's attributes, each event's and each
    # link's. So one expression judges the registered attributes of every owner of a span (the
    # span, its events, its links: an array of their arrays, each allowlisted for its own scope),
    # one builds each owner's map from them, and one scrubs the span's own free text (its trace
    # state, name, status message, scope name and version, events' names and links' trace states).
    own = ("span.trace_state", "span.name", "span.status.message", "scope.name", "scope.version")
    text = {field: f"span_text[{i}]" for i, field in enumerate(own, 1)}
    texts = f"arrayConcat([{', '.join(own)}], span.events.name, span.links.trace_state)"
    events_at, links_at = f"{len(own) + 1}", f"{len(own) + 1} + length(span.events)"
    owners = (
        f"arrayConcat([{_only_allowed('span.attributes', _SPAN_SCOPES)}], "
        f"arrayMap(e -> {_only_allowed('e.attributes', _EVENT_SCOPES)}, span.events), "
        f"arrayMap(l -> {_only_allowed('l.attributes', _SPAN_SCOPES)}, span.links))"
    )
    # each owner's map from its judged attributes: what passed, free text scrubbed. The free-text
    # values are scrubbed here, not with the span's texts: a lambda that reads a column from
    # outside it has that column copied for every element, and the span's scrubbed texts indexed
    # from each attribute cost more than the plan it saved
    maps = f"arrayMap(x -> {_map_of_checked('x')}, span_checked)"
    attribute_maps = (
        ("maps[1]", "arraySlice(maps, 2, length(span.events))", "arraySlice(maps, 2 + length(span.events))")
        if checks
        else (
            _unchecked_map("span.attributes", ()),
            f"arrayMap(e -> {_unchecked_map('e.attributes', ())}, span.events)",
            f"arrayMap(l -> {_unchecked_map('l.attributes', ())}, span.links)",
        )
    )
    expressions = (
        "fromUnixTimestamp64Nano(toInt64(span.start_time_unix_nano))",
        _hex_id("span.trace_id"),
        _hex_id("span.span_id"),
        _hex_id("span.parent_span_id"),
        text["span.trace_state"],
        text["span.name"],
        f"{_SPAN_KINDS}[least(greatest(span.kind, 0), 5) + 1]",
        f"res[{literal(A.SERVICE_NAME.key)}]",
        "res",
        text["scope.name"],
        text["scope.version"],
        attribute_maps[0],
        "if(span.end_time_unix_nano > span.start_time_unix_nano, "
        "span.end_time_unix_nano - span.start_time_unix_nano, 0)",
        f"{_STATUS_CODES}[least(greatest(span.status.code, 0), 2) + 1]",
        text["span.status.message"],
        "arrayMap(e -> fromUnixTimestamp64Nano(toInt64(e.time_unix_nano)), span.events)",
        f"arraySlice(span_text, {events_at}, length(span.events))",
        attribute_maps[1],
        f"arrayMap(l -> {_hex_id('l.trace_id')}, span.links)",
        f"arrayMap(l -> {_hex_id('l.span_id')}, span.links)",
        f"arraySlice(span_text, {links_at}, length(span.links))",
        attribute_maps[2],
    )
    named = list(zip(expressions, TRACES_INSERT_COLUMNS, strict=True))
    if checks and count_drops:  # what the checks dropped of the span's, events' and links' attributes, counted
        total = (
            "length(span.attributes) + arraySum(arrayMap(e -> length(e.attributes), span.events)) "
            "+ arraySum(arrayMap(l -> length(l.attributes), span.links))"
        )
        named += zip(_drops_of_checked(total, "span_checked"), TRACES_DROP_COLUMNS, strict=True)
    columns = ",\n    ".join(f"{e} AS {identifier(c)}" for e, c in named)
    # One ARRAY JOIN, of the spans and, beside each, its scope and its resource: joining resource,
    # then scope, then span copied the whole segment at each level (133 -> 89 MB for an 8 MiB
    # segment, flattened without checks). Each span's resource is its own element, made before the
    # join: the join copies a column it does not unnest onto every row, and the request's array of
    # resources, carried beside the spans to be indexed, cost its size times its spans (3,000
    # one-span resources in 243 KB went past the engine's cap, and their segment was set aside
    # with every other tenant's spans in it: an attack review).
    joined = f"""SELECT
        arrayFlatten(resource_spans.scope_spans.spans) AS spans,
        arrayFlatten(arrayMap(rs -> arrayFlatten(arrayMap(
            ss -> arrayResize([ss.scope], length(ss.spans), ss.scope), rs.scope_spans)), resource_spans)) AS scopes,
        arrayFlatten(arrayMap(
            rs -> arrayWithConstant(arraySum(arrayMap(ss -> length(ss.spans), rs.scope_spans)),
                                    mapUpdate({resource}, map({tenant_key}, tenant))),
            resource_spans)) AS resources
    FROM {source}"""
    if not checks:
        return f"""SELECT
    {columns}
FROM
(
    SELECT span, res, {texts} AS span_text
    FROM ({joined})
    ARRAY JOIN spans AS span, scopes AS scope, resources AS res
)"""
    return f"""SELECT
    {columns}
FROM
(
    SELECT *, {maps} AS maps
    FROM
    (
        SELECT span, res, arrayMap(t -> {_scrub_sql("t")}, {texts}) AS span_text,
            arrayMap(x -> {_judged_attributes("x", _EVENT_SCOPES)}, {owners}) AS span_checked
        FROM ({joined})
        ARRAY JOIN spans AS span, scopes AS scope, resources AS res
    )
)"""


@dataclass(frozen=True)
class Pipeline:
    """The engine-side ingest path for one rendering of the flattening SQL: a `Null` table that
    takes segments in `Protobuf` format, and a materialized view from it into `otel_traces`.

    Its names carry a hash of what it does (the SQL, the segment structure, the .proto), so a
    collector whose allowlist or PHI patterns changed creates a new pair beside the old one instead
    of replacing a view another collector may be inserting through: an insert never reaches a
    `Null` table without its view."""

    options: SchemaOptions
    proto: str
    select: str
    """The flattening SELECT with a placeholder for its source (what the digest covers)."""
    count_drops: bool = True
    """Whether it writes the attribute drops' columns (`TRACES_DROP_COLUMNS`, migration 22)."""

    @classmethod
    def for_options(cls, o: SchemaOptions, *, count_drops: bool = True) -> Pipeline:
        select = flatten_select(o, _SOURCE_PLACEHOLDER, count_drops=count_drops)
        return cls(o, otlp_proto.proto_schema(), select, count_drops)

    @cached_property
    def digest(self) -> str:
        text = "\x00".join((SEGMENT_STRUCTURE, self.proto, self.select))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def table(self) -> str:
        """The `Null` table segments are inserted into (qualified)."""
        return self.options.name(f"{INPUT_PREFIX}{self.digest}")

    @property
    def view(self) -> str:
        return self.options.name(f"{INPUT_PREFIX}{self.digest}_mv")

    def statements(self) -> tuple[str, str]:
        """CREATE the `Null` table, then its view (idempotent)."""
        o = self.options
        table = f"CREATE TABLE IF NOT EXISTS {self.table}{o.on_cluster}\n({SEGMENT_STRUCTURE})\nENGINE = Null"
        select = flatten_select(o, self.table, count_drops=self.count_drops)
        view = f"CREATE MATERIALIZED VIEW IF NOT EXISTS {self.view}{o.on_cluster} TO {o.name(TRACES)}\nAS {select}"
        return table, view

    def settings(self, dedup_token: str, proto_file: str | None = None) -> dict[str, str | int]:
        """The settings of one segment's INSERT: the .proto inline (a server that knows
        `format_schema_source`), or the schema file `proto_file` (the embedded engine's file beside
        the log, which keeps chDB from caching an inline schema in the working directory; or a name
        in an older server's format_schemas directory); and deduplication by the segment's token
        through the views, so a segment inserted twice (a retry, a replay after a crash) is stored
        once."""
        schema: dict[str, str | int] = (
            {"format_schema": f"{proto_file}:{PROTO_MESSAGE}"}
            if proto_file is not None
            else {
                "format_schema_source": "string",
                "format_schema": self.proto,
                "format_schema_message_name": PROTO_MESSAGE,
            }
        )
        settings: dict[str, str | int] = {
            **schema,
            "input_format_protobuf_oneof_presence": 1,
            "insert_deduplicate": 1,
            "insert_deduplication_token": dedup_token,
            "deduplicate_blocks_in_dependent_materialized_views": 1,
            # a segment spans (tenant, day) partitions as its senders' clocks do: past the engine's
            # limit of 100 the insert would fail for good and stop the writer for every tenant
            "throw_on_max_partitions_per_insert_block": 0,
        }
        if self.options.cluster:
            # the view writes through the Distributed table: synchronously, so the insert is
            # acknowledged only once the shards have the rows (and their deduplication applies)
            settings["distributed_foreground_insert"] = 1
        return settings

    def insert_from_file(self, path: str, dedup_token: str, proto_file: str, *, into: str | None = None) -> str:
        """The INSERT for a segment file the engine itself can read (the embedded store), with
        the .proto written to `proto_file` (`write_proto`); `into` another table taking
        `SEGMENT_STRUCTURE` rows (the benchmark's references) instead of this pipeline's."""
        return file_insert(into or self.table, path, SEGMENT_STRUCTURE, self.settings(dedup_token, proto_file))

    @property
    def proto_name(self) -> str:
        """The .proto's file name: in a server's format_schemas directory, or beside the log."""
        return f"{INPUT_PREFIX}{self.digest}.proto"

    def write_proto(self, directory: Path) -> Path:
        """The .proto as a file in `directory` (beside the log, or a server's format_schemas); its
        path. Its time is this call's: beside a log, the newest .proto names the pipeline of the
        last collector started on it (`earlier_pipeline`)."""
        path = directory / self.proto_name
        if not path.exists() or path.read_text(encoding="utf-8") != self.proto:
            directory.mkdir(parents=True, exist_ok=True)
            path.write_text(self.proto, encoding="utf-8")
        else:
            os.utime(path)
        return path.resolve()


def file_insert(table: str, path: str, structure: str, settings: dict[str, str | int]) -> str:
    """The INSERT into `table` of the segment file at `path`, read by the engine as `structure`
    rows in `Protobuf` format, with `settings`."""
    shown = ", ".join(f"{k} = {literal(v) if isinstance(v, str) else v}" for k, v in settings.items())
    return (
        f"INSERT INTO {table} SELECT * FROM file({literal(path)}, 'Protobuf', {literal(structure)})\nSETTINGS {shown}"
    )


@dataclass(frozen=True)
class EarlierPipeline:
    """The ingest pipeline of the release that last ran on a log, when it is not this one's: its
    `Null` table and view are still in the store, and its .proto beside the log."""

    table: str
    """Qualified."""
    proto_file: Path
    structure: str
    """Its `Null` table's columns, as the segment rows it takes."""

    def insert_from_file(self, path: str, settings: dict[str, str | int]) -> str:
        """The INSERT of a segment file through this pipeline, with `settings` (a `Pipeline`'s, its
        deduplication token included) reading the segment by this pipeline's .proto."""
        schema = {"format_schema": f"{self.proto_file}:{PROTO_MESSAGE}"}
        return file_insert(self.table, path, self.structure, {**settings, **schema})


def earlier_pipeline(client: Any, current: Pipeline, log_dir: Path) -> EarlierPipeline | None:
    """The pipeline of the release that last ran on the log in `log_dir`, when it is another's
    and its table and view are still in the store: the segments it left there (a crash) go back
    through it, so that those it had stored before it stopped are recognised and not stored again
    (deduplication is per view: through this release's view, 2,560 spans a kill -9 of the release
    before left in the log were stored twice: an upgrade review). Call it before `write_proto`."""
    protos = sorted(log_dir.glob(f"{INPUT_PREFIX}*.proto"), key=lambda p: p.stat().st_mtime_ns)
    if not protos or protos[-1].name == current.proto_name:
        return None
    name = protos[-1].name.removesuffix(".proto")
    o = current.options
    found = client.query(
        f"SELECT name FROM system.tables WHERE database = {literal(o.database)} AND name IN %(n)s",
        parameters={"n": [name, f"{name}_mv"]},
    ).result_rows
    if len(found) != 2:
        return None
    columns = client.query(
        f"SELECT name, type FROM system.columns WHERE database = {literal(o.database)} AND table = {literal(name)} "
        "ORDER BY position"
    ).result_rows
    structure = ", ".join(f"{identifier(str(c))} {t}" for c, t in columns)
    return EarlierPipeline(o.name(name), protos[-1].resolve(), structure)


class IngestSetupError(RuntimeError):
    """The store cannot take segments the way this collector sends them."""


def install(client: Any, o: SchemaOptions) -> Pipeline:
    """Create this collector's pipeline where it is missing, and return it. On a store from
    before migration 22 (which a collector migrates first; a test's store of an earlier version),
    without the drops' columns, as that version's pipeline was."""
    found = client.query(
        f"SELECT name FROM system.columns WHERE database = {literal(o.database)} AND table = {literal(TRACES)} "
        f"AND name IN ({', '.join(map(literal, TRACES_DROP_COLUMNS))})"
    ).result_rows
    pipeline = Pipeline.for_options(o, count_drops=len(found) == len(TRACES_DROP_COLUMNS))
    for statement in pipeline.statements():
        client.command(statement)
    return pipeline


def server_schema(client: Any, pipeline: Pipeline) -> str | None:
    """How a server gets the .proto: None when it takes it inline with each INSERT (it knows
    `format_schema_source`); else the file name it must find in its format_schemas directory,
    checked now with an empty INSERT so a missing file stops the collector at start, not later."""
    known = client.command("SELECT count() FROM system.settings WHERE name = 'format_schema_source'")
    if int(known):
        return None
    name = pipeline.proto_name
    try:
        client.raw_insert(pipeline.table, None, b"", settings=pipeline.settings("schema-probe", name), fmt="Protobuf")
    except Exception as e:
        raise IngestSetupError(
            f"this ClickHouse server cannot take the .proto inline (it has no format_schema_source setting) and "
            f"did not find {name} in its format_schemas directory: write it there with "
            f"`clinotel schema proto --out DIR` ({str(e).strip()[:300]})"
        ) from e
    return name
