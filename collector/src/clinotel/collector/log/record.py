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


_TENANT_TAG: Final = leb128.encode(ENVELOPE_FIELDS["tenant"] << 3 | 2)
_BATCH_HEAD: Final = leb128.encode(ENVELOPE_FIELDS["batch_id"] << 3 | 2) + bytes([16])
_RECEIVED_TAG: Final = leb128.encode(ENVELOPE_FIELDS["received_unix_nano"] << 3 | 1)
_TAIL: Final = len(_BATCH_HEAD) + 16 + len(_RECEIVED_TAG) + 8
"""The envelope after its tenant, as the receiver writes it: a batch id of 16 characters, the time."""
_MAX_TENANT: Final = 127
"""The longest tenant `split` looks for (its length one byte; tokens allow 64 characters)."""


def split(message: bytes | memoryview) -> tuple[int, str, int] | None:
    """A record's message (`unchecked`) as (the length of the request before its envelope, the
    tenant, the receive time in ns), or None when it does not end in an envelope as the receiver
    writes it (`envelope` with a 16-character batch id). Read from the end, in a bounded number of
    steps whatever the request holds (a walk over a crafted request's top-level fields took 0.3 s a
    record in a review); a tenant holds no byte of the tenant field's tag (0xA2), so the first
    length that fits is the tenant's."""
    data = bytes(message[-(_TAIL + _MAX_TENANT + 3) :])
    n = len(data)
    tail = n - _TAIL
    if tail < 3 or data[tail : tail + len(_BATCH_HEAD)] != _BATCH_HEAD:
        return None
    if data[n - 8 - len(_RECEIVED_TAG) : n - 8] != _RECEIVED_TAG:
        return None
    for length in range(1, min(_MAX_TENANT, tail - 3) + 1):
        start = tail - length - 3
        if data[start : start + 2] == _TENANT_TAG and data[start + 2] == length:
            try:
                tenant = data[start + 3 : tail].decode("utf-8")
            except UnicodeDecodeError:
                return None
            received: int = struct.unpack_from("<Q", data, n - 8)[0]
            return len(message) - (n - start), tenant, received
    return None


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
