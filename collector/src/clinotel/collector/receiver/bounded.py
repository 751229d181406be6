"""Protobuf trace exports decoded within a memory bound.

Decoding protobuf builds a structure per message: a request of empty spans takes 88 bytes of
memory per byte of wire (empty resources, scopes, events or attributes 22 to 32), measured
2026-12-06 with the protobuf runtime the collector uses, so one request of the 64 MiB OTLP allows
took 5.6 GB at once. A request up to `DIRECT_LIMIT` bytes is decoded whole, as before (at most
`DECODE_BUDGET` of memory). A larger one is walked on the wire down to its spans (`screen`): its
spans are decoded, screened and encoded again a run of up to `DIRECT_LIMIT` bytes at a time, and
each resource's and scope's own fields alone. One span larger than a run is decoded only when an
estimate of its decoded size, counted on the wire, is within `DECODE_BUDGET`; else it is refused
(`too_large`, partial success) without being read further (a malformed span that large is
refused the same way, not as malformed). A resource or scope over the budget refuses the request.

Every piece is decoded at the depth it has in the request (wrapped in the request's and its
parents' fields), so the runtime's nesting limit applies as it does to the whole request; the
walk itself refuses what the runtime refuses at the levels only it reads (tags and lengths of more
than five bytes, field numbers past 2^29 - 1, groups nested past the limit). It runs in Python,
about a microsecond a field, and counts every field it reads: `MAX_ELEMENTS` bounds its work on one
request. What `screen` returns is what decoding the request whole, screening it and encoding it
again gives (`export._canonical`): each message's known fields in field order, unknown ones dropped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Final, NamedTuple

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from clinotel.collector import leb128
from clinotel.collector.errors import RefusedError
from clinotel.collector.receiver.spans import (
    attribute_count,
    check_attributes,
    refuse_in_scope,
    resource_bytes,
    scope_bytes,
    text_growth,
)

__all__ = ["DECODE_BUDGET", "DIRECT_LIMIT", "MAX_ELEMENTS", "Screened", "screen"]

WORST_BYTES_PER_BYTE: Final = 96
"""The most memory decoding takes per byte of wire, with room: 88.4 for a request of empty spans."""
DECODE_BUDGET: Final = 64 << 20
"""The memory one request's decoding may take at once (estimated)."""
DIRECT_LIMIT: Final = DECODE_BUDGET // WORST_BYTES_PER_BYTE
"""Requests up to this size (682 KiB) are decoded whole; exporters' batches of 512 spans are far
under it. Larger ones are decoded in runs of spans of up to this size."""
MAX_ELEMENTS: Final = 2_000_000
"""The most fields one request's walk reads, a resource or scope counting `_CONTAINER_COST` (a
span with ids is at least 30 bytes on the wire: 64 MiB of them is 2.2 million spans, each one
field here; real spans are hundreds of bytes)."""
_CONTAINER_COST: Final = 8
"""A resource or scope costs the walk about as much as this many fields (its own fields decoded
and encoded again)."""
_MAX_DEPTH: Final = 100
"""The nesting the protobuf runtime decodes (a request's own fields at depth 0)."""
_SPAN_DEPTH: Final = 3
"""A span's fields' depth in a request (request, resource spans, scope spans)."""
_SMALL: Final = 256
"""A message field up to this size is charged its worst case without being walked."""
_MESSAGE_BYTES: Final = 2 * WORST_BYTES_PER_BYTE
"""What an empty message costs decoded (an empty span's two bytes take 177)."""
_MAX_KEY: Final = 1 << 32
"""Tags (field number and wire type) the runtime reads: field numbers up to 2^29 - 1."""
_VARINT_BYTES: Final = 5
"""The longest tag or length the runtime reads (a 32-bit varint)."""

_VARINT, _I64, _LEN, _START_GROUP, _END_GROUP, _I32 = 0, 1, 2, 3, 4, 5

Chunks = list[bytes | bytearray | memoryview]


def _malformed(message: str) -> RefusedError:
    return RefusedError("malformed", f"invalid protobuf: {message}")


def _varint32(piece: memoryview, pos: int, what: str) -> tuple[int, int]:
    """A tag or a length: a varint of at most five bytes, as the runtime reads them."""
    decoded = leb128.decode(piece, pos)
    if decoded is None:
        raise _malformed(f"a {what} runs past the end of its message")
    if decoded[1] - pos > _VARINT_BYTES:
        raise _malformed(f"a {what} of more than {_VARINT_BYTES} bytes")
    return decoded


_JOINED: Final = 1 << 16
"""An encoded message up to this size is joined into one object at once: chunks are kept apart
only for large ones, so many small resources or scopes hold one object each, not five."""


def _delimited(number: int, chunks: Chunks) -> Chunks:
    """`chunks` as the payload of length-delimited field `number`."""
    size = sum(len(c) for c in chunks)
    delimited = [leb128.encode(number << 3 | _LEN) + leb128.encode(size), *chunks]
    return [b"".join(delimited)] if size <= _JOINED else delimited


def _wrapped(chunks: Chunks, depth: int) -> bytes:
    """An encoded request holding `chunks` as the fields of a message at `depth` (1: a resource
    spans' fields, 2: a scope spans'), so that decoding it counts the nesting the request has."""
    for number in (2, 1)[2 - depth :]:
        chunks = _delimited(number, chunks)
    return b"".join(chunks)


class _Walk:
    """One request's walk: the window its spans must start in, what it kept and refused, and its work."""

    def __init__(self, window: tuple[int, int], run_bytes: int, days: set[int] | None = None) -> None:
        self.window = window
        self.run_bytes = run_bytes
        self.kept = 0
        self.attributes = 0
        """Attributes of the kept spans so far, their resources' once for each (`spans.check_attributes`)."""
        self.copies = 0
        """Bytes of the resources and scopes so far, once for each kept span (`spans.span_copies`)."""
        self.removed: Counter[str] = Counter()
        self.elements = 0
        self.days = days
        """Where to add the days the kept spans start on (None: not counted)."""

    def visit(self, cost: int = 1) -> None:
        self.elements += cost
        if self.elements > MAX_ELEMENTS:
            raise RefusedError(
                "too_large",
                f"the request holds more than {MAX_ELEMENTS:,} resources, scopes, spans and fields to read: "
                "send smaller batches",
            )

    def _next(self, piece: memoryview, pos: int, depth: int) -> tuple[int, int, int, int]:
        """(field number, wire type, start of its value, end of the field) of the field at `pos`,
        a field of a message at `depth`."""
        self.visit()
        key, pos = _varint32(piece, pos, "tag")
        if key >= _MAX_KEY:
            raise _malformed("a field number past 2^29 - 1")
        number, wire = key >> 3, key & 7
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
            length, pos = _varint32(piece, pos, "length")
            end = pos + length
        elif wire == _START_GROUP:
            end = self._group_end(piece, pos, number, depth + 1)
        elif wire == _END_GROUP:
            end = pos
        else:
            raise _malformed(f"wire type {wire}")
        if end > len(piece):
            raise _malformed("a field runs past the end of its message")
        return number, wire, pos, end

    def _group_end(self, piece: memoryview, pos: int, number: int, depth: int) -> int:
        """Where the group of field `number` that starts at `pos` ends (groups are unknown fields here)."""
        if depth > _MAX_DEPTH:
            raise _malformed("nested too deeply")
        while pos < len(piece):
            inner, wire, _, pos = self._next(piece, pos, depth)
            if wire == _END_GROUP:
                if inner != number:
                    raise _malformed("a group ends with another field's number")
                return pos
        raise _malformed("a group runs past the end of its message")

    def fields(self, piece: memoryview, depth: int) -> Iterator[tuple[int, int, int, int, int]]:
        """(field number, wire type, start of the field, start of its value, end) of each field of
        the message at `depth` encoded in `piece`; a malformed encoding is refused (400)."""
        pos = 0
        while pos < len(piece):
            start = pos
            number, wire, value, pos = self._next(piece, pos, depth)
            if wire == _END_GROUP:
                raise _malformed("a group's end without its start")
            if number == 0:  # refused as a message's own field; inside an unknown group the runtime skips it
                raise _malformed("field number 0")
            yield number, wire, start, value, pos

    def decoded_size(self, piece: memoryview, descriptor: Descriptor, budget: int, depth: int) -> int:
        """An upper estimate of the memory decoding `piece` as a `descriptor` message at `depth`
        takes, counted on the wire; the count stops once past `budget`. Past the runtime's nesting
        limit a field is charged its worst case (the runtime refuses it when decoding)."""
        total = _MESSAGE_BYTES
        for number, wire, start, value, end in self.fields(piece, depth):
            field = descriptor.fields_by_number.get(number)
            if field is not None and field.type == FieldDescriptor.TYPE_MESSAGE and wire == _LEN:
                if end - start <= _SMALL or depth + 1 >= _MAX_DEPTH:
                    total += WORST_BYTES_PER_BYTE * (end - start)
                else:
                    total += self.decoded_size(piece[value:end], field.message_type, budget - total, depth + 1)
            else:  # a string or bytes copied, a number in place, an unknown field kept until dropped
                total += end - start + 16
            if total > budget:
                break
        return total

    def decode(self, own: bytearray, depth: int, what: str) -> ResourceSpans:
        """A resource's (`depth` 1) or scope's (2) own fields decoded, unknown ones dropped, in the
        request's first resource spans (and its first scope spans for a scope); refused when too
        big to decode."""
        size = len(own)
        if size > self.run_bytes:
            kind = ResourceSpans if depth == 1 else ScopeSpans
            estimate = self.decoded_size(memoryview(own), kind.DESCRIPTOR, DECODE_BUDGET, depth)
            if estimate > DECODE_BUDGET:
                raise RefusedError(
                    "too_large",
                    f"{what} of {size:,} bytes would take more than {DECODE_BUDGET >> 20} MiB of memory to decode",
                )
        request = self._parse(_wrapped([own], depth))
        request.DiscardUnknownFields()  # from the request, as for the whole: the runtime stops 64 levels down
        resource: ResourceSpans = request.resource_spans[0]
        return resource

    @staticmethod
    def _parse(data: bytes) -> ExportTraceServiceRequest:
        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(data)
        except DecodeError as e:
            raise _malformed(str(e)) from None
        return request

    def resource_spans(self, piece: memoryview) -> Chunks:
        """One `ResourceSpans`' fields, its spans screened, encoded again; its attributes counted
        once for each span kept (the store copies them onto every row)."""
        kept_before = self.kept
        own = bytearray()  # one buffer: a message's fields concatenated decode as the fields do
        scopes: Chunks = []
        for number, wire, start, value, end in self.fields(piece, 1):
            if number == 2 and wire == _LEN:
                self.visit(_CONTAINER_COST)
                scopes += _delimited(2, self.scope_spans(piece[value:end]))
            elif number in (1, 3):  # resource, schema_url: decoded as the runtime would, merged
                own += piece[start:end]
        resource = self.decode(own, 1, "a resource")
        del own  # a large resource would otherwise be held once more while it is encoded again
        self.attributes += len(resource.resource.attributes) * (self.kept - kept_before)
        check_attributes(self.attributes)
        if self.kept > kept_before:
            self.copies += resource_bytes(resource.resource) * (self.kept - kept_before)
        first = resource.resource.ByteSize() if resource.HasField("resource") else None
        return self._around(resource, first, scopes)

    def scope_spans(self, piece: memoryview) -> Chunks:
        """One `ScopeSpans`' fields, its spans screened a run at a time, encoded again. A run is a
        stretch of the encoding of up to `run_bytes` (fields other than spans in it are decoded and
        dropped: nothing is kept per span until its run is decoded); a larger field ends a run."""
        own = bytearray()
        spans: Chunks = []
        run_start = run_end = 0
        kept_before = self.kept
        for number, wire, start, value, end in self.fields(piece, 2):
            is_span = number == 2 and wire == _LEN
            if number in (1, 3):  # scope, schema_url
                own += piece[start:end]
            if end - start > self.run_bytes:
                spans += self.screen_run(piece[run_start:run_end])
                run_start = run_end = end
                if is_span:
                    spans += self.large_span(piece[start:end], piece[value:end])
                continue
            if end - run_start > self.run_bytes:
                spans += self.screen_run(piece[run_start:run_end])
                run_start = start
            run_end = end
        spans += self.screen_run(piece[run_start:run_end])
        scope = self.decode(own, 2, "a scope").scope_spans[0]
        del own
        self.copies += scope_bytes(scope.scope) * (self.kept - kept_before)
        first = scope.scope.ByteSize() if scope.HasField("scope") else None
        return self._around(scope, first, spans)

    @staticmethod
    def _around(message: ResourceSpans | ScopeSpans, first: int | None, middle: Chunks) -> Chunks:
        """`message` (its field 1, of `first` bytes when present, and field 3 `schema_url`, decoded)
        encoded with `middle` (field 2, encoded) between them, as the runtime orders fields."""
        encoded = memoryview(message.SerializeToString())
        head = 0 if first is None else 1 + len(leb128.encode(first)) + first
        return [encoded[:head], *middle, encoded[head:]]

    def screen_run(self, run: memoryview) -> Chunks:
        """A run of a `ScopeSpans`' encoding decoded, its spans screened, the kept ones encoded again."""
        if not run:
            return []
        self.visit(_CONTAINER_COST)
        request = self._parse(_wrapped([run], 2))
        scope = request.resource_spans[0].scope_spans[0]
        kept = refuse_in_scope(scope.spans, self.window, self.removed, self.days)
        self.kept += kept
        self.copies += text_growth(run, kept, request, exact=True)
        self.attributes += sum(attribute_count(span) for span in scope.spans)
        check_attributes(self.attributes)
        scope.ClearField("scope")
        scope.ClearField("schema_url")
        request.DiscardUnknownFields()
        return [scope.SerializeToString()]

    def large_span(self, field: memoryview, span: memoryview) -> Chunks:
        """A span larger than a run: decoded alone when its estimated size fits the budget, else refused."""
        if self.decoded_size(span, Span.DESCRIPTOR, DECODE_BUDGET, _SPAN_DEPTH) > DECODE_BUDGET:
            self.removed["too_large"] += 1
            return []
        return self.screen_run(field)


class Screened(NamedTuple):
    """A screened request: encoded again without its refused spans (b"" when none is kept), the
    spans kept, the spans refused by reason, and its resources' bytes once for each kept span."""

    raw: bytes
    kept: int
    refused: Counter[str]
    copies: int


def screen(
    body: bytes | bytearray, window: tuple[int, int], *, run_bytes: int = DIRECT_LIMIT, days: set[int] | None = None
) -> Screened:
    """A protobuf export request larger than `DIRECT_LIMIT`, walked and screened within the memory
    bound; the days the kept spans start on are added to `days`. Malformed or too large to decode:
    `RefusedError`."""
    walk = _Walk(window, run_bytes, days)
    out: Chunks = []
    with memoryview(body) as view:
        for number, wire, _, value, end in walk.fields(view, 0):
            if number == 1 and wire == _LEN:
                walk.visit(_CONTAINER_COST)
                out += _delimited(1, walk.resource_spans(view[value:end]))
        return Screened(b"".join(out) if walk.kept else b"", walk.kept, walk.removed, walk.copies)
