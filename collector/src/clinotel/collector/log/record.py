"""The protobuf schema ClickHouse reads write-ahead-log segments with, made from the installed
opentelemetry-proto descriptors (never copied from the .proto files).

A log record is an `ExportTraceServiceRequest`'s bytes with three envelope fields appended
(tenant, batch id, receive time). Protobuf messages concatenate by merging, so the record parses as
`WalRecord`: the request's `resource_spans` (field 1) plus the envelope (fields 100-102), without
re-encoding the request. The schema is the non-recursive part of OTLP that a span table needs:
`AnyValue`'s `array_value` and `kvlist_value` are left out (ClickHouse types cannot recurse, and no
registered attribute holds them), so the engine skips them as unknown fields.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Final

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from clinotel.collector import leb128

__all__ = [
    "ENVELOPE_FIELDS",
    "ONEOF_NAME",
    "PROTO_MESSAGE",
    "envelope",
    "frame",
    "proto_schema",
]

PROTO_MESSAGE: Final = "WalRecord"
ONEOF_NAME: Final = "kind"
"""The name given to AnyValue's oneof, whose presence column tells which value is set."""
ENVELOPE_FIELDS: Final = {"tenant": 100, "batch_id": 101, "received_unix_nano": 102}

# Fields of each OTLP message that the span table needs; others are skipped by the engine.
_KEEP: Final[dict[str, tuple[str, ...]]] = {
    "ExportTraceServiceRequest": ("resource_spans",),
    "ResourceSpans": ("resource", "scope_spans"),
    "Resource": ("attributes",),
    "ScopeSpans": ("scope", "spans"),
    "InstrumentationScope": ("name", "version"),
    "Span": (
        "trace_id",
        "span_id",
        "trace_state",
        "parent_span_id",
        "name",
        "kind",
        "start_time_unix_nano",
        "end_time_unix_nano",
        "attributes",
        "events",
        "links",
        "status",
    ),
    "Event": ("time_unix_nano", "name", "attributes"),
    "Link": ("trace_id", "span_id", "trace_state", "attributes"),
    "Status": ("message", "code"),
    "KeyValue": ("key", "value"),
    "AnyValue": ("string_value", "bool_value", "int_value", "double_value", "bytes_value"),
}

_SCALARS: Final = {
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BYTES: "bytes",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_INT64: "int64",
    FieldDescriptor.TYPE_UINT32: "uint32",
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_DOUBLE: "double",
    FieldDescriptor.TYPE_FIXED64: "fixed64",
    FieldDescriptor.TYPE_FIXED32: "fixed32",
    FieldDescriptor.TYPE_ENUM: "int32",  # enums read as their numbers
}


def _messages(root: Descriptor) -> Iterator[Descriptor]:
    seen: set[str] = set()
    todo = [root]
    while todo:
        d = todo.pop()
        if d.name in seen:
            continue
        seen.add(d.name)
        yield d
        for f in d.fields:
            if f.name in _KEEP[d.name] and f.message_type is not None:
                todo.append(f.message_type)


def _field_type(f: FieldDescriptor) -> str:
    if f.message_type is not None:
        return str(f.message_type.name)
    return _SCALARS[f.type]


def _is_repeated(f: FieldDescriptor) -> bool:
    repeated = getattr(f, "is_repeated", None)  # protobuf >= 5.29; `label` before
    if repeated is None:
        return bool(f.label == FieldDescriptor.LABEL_REPEATED)
    return bool(repeated)


def proto_schema() -> str:
    """The `.proto` text the engine reads segments with (`format_schema=<file>:WalRecord`)."""
    root = trace_service_pb2.ExportTraceServiceRequest.DESCRIPTOR
    out = ['syntax = "proto3";', "package clinotel.wal;", ""]
    for d in _messages(root):
        name = PROTO_MESSAGE if d is root else d.name
        out.append(f"message {name} {{")
        oneof: list[str] = []
        for f in d.fields:
            if f.name not in _KEEP[d.name]:
                continue
            line = f"{'repeated ' if _is_repeated(f) else ''}{_field_type(f)} {f.name} = {f.number};"
            if f.containing_oneof is not None:
                oneof.append(line)
            else:
                out.append(f"  {line}")
        if oneof:
            out.append(f"  oneof {ONEOF_NAME} {{")
            out.extend(f"    {line}" for line in oneof)
            out.append("  }")
        if d is root:
            out.append(f"  string tenant = {ENVELOPE_FIELDS['tenant']};")
            out.append(f"  string batch_id = {ENVELOPE_FIELDS['batch_id']};")
            out.append(f"  fixed64 received_unix_nano = {ENVELOPE_FIELDS['received_unix_nano']};")
        out.append("}")
        out.append("")
    return "\n".join(out)


def _string_field(number: int, value: str) -> bytes:
    data = value.encode("utf-8")
    return leb128.encode(number << 3 | 2) + leb128.encode(len(data)) + data


def envelope(tenant: str, batch_id: str, received_unix_nano: int) -> bytes:
    """The envelope fields, to append to a request's bytes to make a `WalRecord`."""
    return (
        _string_field(ENVELOPE_FIELDS["tenant"], tenant)
        + _string_field(ENVELOPE_FIELDS["batch_id"], batch_id)
        + leb128.encode(ENVELOPE_FIELDS["received_unix_nano"] << 3 | 1)
        + struct.pack("<Q", received_unix_nano)
    )


def frame(message: bytes) -> bytes:
    """`message` length-delimited, as ClickHouse's `Protobuf` format reads a stream of them."""
    return leb128.encode(len(message)) + message
