"""The protobuf schema ClickHouse reads write-ahead-log segments with, made from the installed
opentelemetry-proto descriptors (never copied from the .proto files).

A log record is an `ExportTraceServiceRequest`'s bytes with three envelope fields appended
(tenant, batch id, receive time). Protobuf messages concatenate by merging, so the record parses as
`WalRecord`: the request's `resource_spans` (field 1) plus the envelope (fields 100-102), without
re-encoding the request. Before it comes a checksum (field 103, `fixed32`: the CRC-32 of the
record's bytes after it), which the log's start-up checks (`checked`) to tell a whole record from a
damaged one; the schema does not list it, so the engine skips it as an unknown field (and the
schema, the ingest pipeline's digest and a server's `.proto` file stay as they were). It comes
first, not last, so that what was framed is still the record's end, and so that a scan for the
next whole record finds the checksum's tag right after each candidate length.

The schema is the non-recursive part of OTLP that a span table needs: `AnyValue`'s `array_value`
and `kvlist_value` are left out (ClickHouse types cannot recurse, and no registered attribute
holds them), so the engine skips them as unknown fields.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from typing import Final

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from clinotel.collector import leb128

__all__ = [
    "CHECKSUM_BYTES",
    "CHECKSUM_FIELD",
    "ENVELOPE_FIELDS",
    "ONEOF_NAME",
    "PROTO_MESSAGE",
    "checked",
    "envelope",
    "frame",
    "framed",
    "has_checksum_tag_at",
    "keyed",
    "proto_schema",
    "split",
    "unchecked",
]

PROTO_MESSAGE: Final = "WalRecord"
ONEOF_NAME: Final = "kind"
"""The name given to AnyValue's oneof, whose presence column tells which value is set."""
ENVELOPE_FIELDS: Final = {"tenant": 100, "batch_id": 101, "received_unix_nano": 102}
CHECKSUM_FIELD: Final = 103
"""The record's first field: `fixed32`, the CRC-32 (zlib's) of the record's bytes after it."""
_CHECKSUM_TAG: Final = leb128.encode(CHECKSUM_FIELD << 3 | 5)  # wire type 5: fixed32
CHECKSUM_BYTES: Final = len(_CHECKSUM_TAG) + 4
"""What the checksum adds to a record: 6 bytes (its field's tag, 2, and the CRC, 4)."""

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


def split(message: bytes | memoryview) -> tuple[int, str, int] | None:
    """A record's message (`unchecked`) as (the length of the request before its envelope, the
    tenant, the receive time in ns), or None when it has no whole envelope: the request's own
    top-level fields are stepped over by their lengths, never parsed."""
    pos, start, tenant, received = 0, None, None, None
    while pos < len(message):
        tag = leb128.decode(message, pos)
        if tag is None:
            return None
        field, wire = tag[0] >> 3, tag[0] & 7
        if field in (ENVELOPE_FIELDS["tenant"], ENVELOPE_FIELDS["batch_id"], ENVELOPE_FIELDS["received_unix_nano"]):
            start = pos if start is None else start
        elif start is not None:
            return None  # a request's field after the envelope: not a record this log wrote
        pos = tag[1]
        if wire == 2:
            length = leb128.decode(message, pos)
            if length is None or length[1] + length[0] > len(message):
                return None
            if field == ENVELOPE_FIELDS["tenant"]:
                tenant = bytes(message[length[1] : length[1] + length[0]]).decode("utf-8", "replace")
            pos = length[1] + length[0]
        elif wire == 1:
            if field == ENVELOPE_FIELDS["received_unix_nano"] and pos + 8 <= len(message):
                received = struct.unpack_from("<Q", message, pos)[0]
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 0:
            value = leb128.decode(message, pos)
            if value is None:
                return None
            pos = value[1]
        else:
            return None
    if start is None or tenant is None or received is None or pos != len(message):
        return None
    return start, tenant, received


def frame(message: bytes) -> bytes:
    """`message` after its checksum field, length-delimited, as ClickHouse's `Protobuf` format
    reads a stream of them."""
    return b"".join(framed(message))


def framed(message: bytes, tail: bytes = b"") -> tuple[bytes, bytes, bytes]:
    """`frame(message + tail)` in three parts, the length prefix and checksum field first, without
    a copy of `message` (a request of up to 64 MiB: the log writes the parts one after another)."""
    checksum = _CHECKSUM_TAG + struct.pack("<I", zlib.crc32(tail, zlib.crc32(message)))
    return leb128.encode(CHECKSUM_BYTES + len(message) + len(tail)) + checksum, message, tail


def checked(record: bytes | memoryview, key: int = 0) -> bool:
    """True when `record` (a framed record's bytes after its length prefix) starts with its
    checksum field, has a message after it, and the checksum matches once `key` is taken out
    (`keyed`): a whole record. A record without one (an empty one among them) is not."""
    if len(record) <= CHECKSUM_BYTES or not has_checksum_tag_at(record, 0):
        return False
    expected: int = struct.unpack_from("<I", record, len(_CHECKSUM_TAG))[0]
    return zlib.crc32(record[CHECKSUM_BYTES:]) ^ key == expected


def keyed(framed: bytes, key: int) -> bytes:
    """A `frame`d record with its checksum XORed with `key`: the log keys each segment's records
    with a secret of its own, so a record a client framed inside its request's bytes (an
    attribute's value) never verifies where a scan after damage might land on it."""
    if not key:
        return framed
    prefix = leb128.decode(framed)
    if prefix is None:
        raise ValueError("not a framed record: its length prefix does not end")
    at = prefix[1] + len(_CHECKSUM_TAG)
    crc: int = struct.unpack_from("<I", framed, at)[0]
    return b"".join((framed[:at], struct.pack("<I", crc ^ key), framed[at + 4 :]))


def has_checksum_tag_at(data: bytes | memoryview, start: int) -> bool:
    """The cheap half of `checked` for a record whose bytes start at `start` in `data` (after its
    length prefix): its checksum field's tag is there (what a scan for the next whole record tries
    before the CRC)."""
    return start + 1 < len(data) and bool(data[start] == _CHECKSUM_TAG[0] and data[start + 1] == _CHECKSUM_TAG[1])


def unchecked(record: bytes) -> bytes:
    """A checked record's bytes without its checksum field (the message given to `frame`)."""
    return record[CHECKSUM_BYTES:]
