"""Protobuf trace exports decoded within a memory bound.

Decoding protobuf builds a structure per message: a request of empty spans takes 88 bytes of
memory per byte of wire (empty resources, scopes, events or attributes 22 to 32), measured
2026-12-06 with the protobuf runtime the collector uses, so one request of the 64 MiB OTLP allows
took 5.6 GB at once. A request up to `DIRECT_LIMIT` bytes is decoded whole, as before (at most
`DECODE_BUDGET` of memory). A larger one is walked on the wire down to its spans (`screen`): its
spans are decoded, screened and encoded again a group of up to `DIRECT_LIMIT` bytes at a time, and
each resource and scope alone. A larger piece than that (one span, a resource) is decoded only when
an estimate of its decoded size, counted on the wire, is within `DECODE_BUDGET`: else the span is
refused (`too_large`, partial success), and for a resource or scope the request (413).

The walk runs in Python, about a microsecond a field: `MAX_ELEMENTS` bounds its work on one
request. What `screen` returns is what decoding the request whole, screening it and encoding it
again gives (`export._canonical`): each message's known fields in field order, unknown ones dropped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Final, TypeVar

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from clinotel.collector import leb128
from clinotel.collector.errors import RefusedError
from clinotel.collector.receiver.spans import refuse_in_scope

__all__ = ["DECODE_BUDGET", "DIRECT_LIMIT", "MAX_ELEMENTS", "screen"]

WORST_BYTES_PER_BYTE: Final = 96
"""The most memory decoding takes per byte of wire, with room: 88.4 for a request of empty spans."""
DECODE_BUDGET: Final = 64 << 20
"""The memory one request's decoding may take at once (estimated)."""
DIRECT_LIMIT: Final = DECODE_BUDGET // WORST_BYTES_PER_BYTE
"""Requests up to this size (682 KiB) are decoded whole; exporters' batches of 512 spans are far
under it. Larger ones are decoded in groups of spans of up to this size."""
MAX_ELEMENTS: Final = 2_000_000
"""The most resources, scopes, spans and estimated fields one request's walk visits (a span with
ids is at least 30 bytes on the wire: 64 MiB of them is 2.2 million; real spans are hundreds)."""
_MAX_DEPTH: Final = 100
"""The nesting the protobuf runtime decodes; deeper is malformed there and here."""
_SMALL: Final = 256
"""A message field up to this size is charged its worst case without being walked."""
_MESSAGE_BYTES: Final = 2 * WORST_BYTES_PER_BYTE
"""What an empty message costs decoded (an empty span's two bytes take 177)."""

_VARINT, _I64, _LEN, _START_GROUP, _END_GROUP, _I32 = 0, 1, 2, 3, 4, 5

M = TypeVar("M", bound=Message)


def _malformed(message: str) -> RefusedError:
    return RefusedError("malformed", f"invalid protobuf: {message}")


def _next(piece: memoryview, pos: int, depth: int) -> tuple[int, int, int, int]:
    """(field number, wire type, start of its value, end of the field) of the field at `pos`."""
    tag = leb128.decode(piece, pos)
    if tag is None:
        raise _malformed("a field's tag runs past the end of its message")
    key, pos = tag
    number, wire = key >> 3, key & 7
    if number == 0:
        raise _malformed("field number 0")
    if wire == _VARINT:
        varint = leb128.decode(piece, pos)
        if varint is None:
            raise _malformed("a varint runs past the end of its message")
        end = varint[1]
    elif wire == _I64:
        end = pos + 8
    elif wire == _I32:
        end = pos + 4
    elif wire == _LEN:
        length = leb128.decode(piece, pos)
        if length is None:
            raise _malformed("a length runs past the end of its message")
        pos = length[1]
        end = pos + length[0]
    elif wire == _START_GROUP:
        end = _group_end(piece, pos, number, depth + 1)
    elif wire == _END_GROUP:
        end = pos
    else:
        raise _malformed(f"wire type {wire}")
    if end > len(piece):
        raise _malformed("a field runs past the end of its message")
    return number, wire, pos, end


def _group_end(piece: memoryview, pos: int, number: int, depth: int) -> int:
    """Where the group of field `number` that starts at `pos` ends (groups are unknown fields here)."""
    if depth > _MAX_DEPTH:
        raise _malformed("nested too deeply")
    while pos < len(piece):
        inner, wire, _, pos = _next(piece, pos, depth)
        if wire == _END_GROUP:
            if inner != number:
                raise _malformed("a group ends with another field's number")
            return pos
    raise _malformed("a group runs past the end of its message")


def _fields(piece: memoryview) -> Iterator[tuple[int, int, int, int, int]]:
    """(field number, wire type, start of the field, start of its value, end) of each field of the
    message encoded in `piece`; a malformed encoding is refused (400)."""
    pos = 0
    while pos < len(piece):
        start = pos
        number, wire, value, pos = _next(piece, pos, 0)
        if wire == _END_GROUP:
            raise _malformed("a group's end without its start")
        yield number, wire, start, value, pos


def _length_delimited(out: bytearray, number: int, payload: bytes | bytearray) -> None:
    out += leb128.encode(number << 3 | _LEN)
    out += leb128.encode(len(payload))
    out += payload


class _Walk:
    """One request's walk: the window its spans must start in, what it kept and refused, and its work."""

    def __init__(self, window: tuple[int, int], group_bytes: int) -> None:
        self.window = window
        self.group_bytes = group_bytes
        self.kept = 0
        self.removed: Counter[str] = Counter()
        self.elements = 0

    def visit(self) -> None:
        self.elements += 1
        if self.elements > MAX_ELEMENTS:
            raise RefusedError(
                "too_large",
                f"the request holds more than {MAX_ELEMENTS:,} resources, scopes, spans and fields to read: "
                "send smaller batches",
            )

    def decoded_size(self, piece: memoryview, descriptor: Descriptor, budget: int, depth: int = 0) -> int:
        """An upper estimate of the memory decoding `piece` as a `descriptor` message takes, counted on
        the wire; the count stops once past `budget`."""
        if depth > _MAX_DEPTH:
            raise _malformed("nested too deeply")
        total = _MESSAGE_BYTES
        for number, wire, start, value, end in _fields(piece):
            self.visit()
            field = descriptor.fields_by_number.get(number)
            if field is not None and field.type == FieldDescriptor.TYPE_MESSAGE and wire == _LEN:
                if end - start <= _SMALL:
                    total += WORST_BYTES_PER_BYTE * (end - start)
                else:
                    total += self.decoded_size(piece[value:end], field.message_type, budget - total, depth + 1)
            else:  # a string or bytes copied, a number in place, an unknown field kept until dropped
                total += end - start + 16
            if total > budget:
                break
        return total

    def decode(self, data: bytes | bytearray, kind: type[M], what: str) -> M:
        """`data` decoded as a `kind`, unknown fields dropped; refused when too big to decode."""
        if len(data) > self.group_bytes:
            size = self.decoded_size(memoryview(data), kind.DESCRIPTOR, DECODE_BUDGET)
            if size > DECODE_BUDGET:
                raise RefusedError(
                    "too_large",
                    f"{what} of {len(data):,} bytes would take more than {DECODE_BUDGET >> 20} MiB of memory to decode",
                )
        message: M = kind()
        try:
            message.ParseFromString(bytes(data))
        except DecodeError as e:
            raise _malformed(str(e)) from None
        message.DiscardUnknownFields()
        return message

    def resource_spans(self, piece: memoryview) -> bytearray:
        """One `ResourceSpans`, its spans screened, encoded again."""
        own, scopes = bytearray(), bytearray()
        for number, wire, start, value, end in _fields(piece):
            if number == 2 and wire == _LEN:
                self.visit()
                _length_delimited(scopes, 2, self.scope_spans(piece[value:end]))
            elif number in (1, 3):  # resource, schema_url: decoded as the runtime would, merged
                own += piece[start:end]
        resource = self.decode(own, ResourceSpans, "a resource")
        schema_url = resource.schema_url
        resource.ClearField("schema_url")
        out = bytearray(resource.SerializeToString())
        out += scopes
        if schema_url:
            out += ResourceSpans(schema_url=schema_url).SerializeToString()
        return out

    def scope_spans(self, piece: memoryview) -> bytearray:
        """One `ScopeSpans`, its spans screened a group at a time, encoded again. A group is a run of
        the encoding of up to `group_bytes` (fields other than spans in it are decoded and dropped:
        nothing is kept per span until its group is decoded); a field larger than that ends a run."""
        own, spans = bytearray(), bytearray()
        run_start = run_end = 0
        for number, wire, start, value, end in _fields(piece):
            is_span = number == 2 and wire == _LEN
            if is_span:
                self.visit()
            elif number in (1, 3):  # scope, schema_url
                own += piece[start:end]
            if end - start > self.group_bytes:
                self.screen_spans(piece[run_start:run_end], spans)
                run_start = run_end = end
                if is_span:
                    self.large_span(piece[start:end], piece[value:end], spans)
                continue
            if end - run_start > self.group_bytes:
                self.screen_spans(piece[run_start:run_end], spans)
                run_start = start
            run_end = end
        self.screen_spans(piece[run_start:run_end], spans)
        scope = self.decode(own, ScopeSpans, "a scope")
        schema_url = scope.schema_url
        scope.ClearField("schema_url")
        out = bytearray(scope.SerializeToString())
        out += spans
        if schema_url:
            out += ScopeSpans(schema_url=schema_url).SerializeToString()
        return out

    def screen_spans(self, run: memoryview, out: bytearray) -> None:
        """Decode a run of a `ScopeSpans`' encoding, screen its spans, and append the kept ones encoded again."""
        if not run:
            return
        decoded = ScopeSpans()
        try:
            decoded.ParseFromString(run)
        except DecodeError as e:
            raise _malformed(str(e)) from None
        self.kept += refuse_in_scope(decoded.spans, self.window, self.removed)
        decoded.ClearField("scope")
        decoded.ClearField("schema_url")
        decoded.DiscardUnknownFields()
        out += decoded.SerializeToString()

    def large_span(self, field: memoryview, span: memoryview, out: bytearray) -> None:
        """A span larger than a group: decoded alone when its estimated size fits the budget, else refused."""
        if self.decoded_size(span, Span.DESCRIPTOR, DECODE_BUDGET) > DECODE_BUDGET:
            self.removed["too_large"] += 1
            return
        self.screen_spans(field, out)


def screen(
    body: bytes | bytearray, window: tuple[int, int], *, group_bytes: int = DIRECT_LIMIT
) -> tuple[bytes, int, Counter[str]]:
    """A protobuf export request larger than `DIRECT_LIMIT`, walked and screened within the memory
    bound: (the request encoded again without its refused spans, b"" when none is kept; the spans
    kept; the spans refused by reason). Malformed or too large to decode: `RefusedError`."""
    walk = _Walk(window, group_bytes)
    out = bytearray()
    with memoryview(body) as view:
        for number, wire, _, value, end in _fields(view):
            if number == 1 and wire == _LEN:
                walk.visit()
                _length_delimited(out, 1, walk.resource_spans(view[value:end]))
    return (bytes(out) if walk.kept else b""), walk.kept, walk.removed
