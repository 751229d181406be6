"""ClickHouse's Native format as a server writes it for a client that names a protocol revision.

Clients that read Native over HTTP send `client_protocol_version=R` (clickhouse-go, hence Grafana's
ClickHouse plugin: 54460; clickhouse-connect: 54405 once a probe shows the server honours it) and
decode every block as a server of revision R writes it. The embedded engine only writes revision 0,
so the read port rewrites its output here. The layout, per block (numbers little-endian, `varint`
is LEB128, `string` is a varint length and the bytes):

    block info          only when R > 0: varint 1, UInt8 is_overflows (0); varint 2,
                        Int32 bucket_num (-1); from 54480 varint 3, varint 0 (no out-of-order
                        buckets); then varint 0
    varint columns, varint rows
    per column:
      string name
      type              string type name; or, when the client set
                        `output_format_native_encode_types_in_binary_format`, the binary type
                        encoding itself (not length-prefixed: one code byte and its arguments)
      UInt8 has_custom  only when R >= 54454; always 0 here (no sparse or replicated columns)
      data              only when rows > 0: the state prefixes of the whole type tree, then
                        the column's streams, depth first

Data by type: fixed-size values back to back (Date 2 bytes, DateTime 4, DateTime64 8, Decimal 4 to
32 by precision, UUID and IPv6 16, Enum8/16 1/2, Bool 1, Nothing 1); String a `string` per row;
FixedString(N) N bytes per row; Nullable(T) a UInt8 null map per row, then T; Array(T) one UInt64
cumulative end offset per row, then T for the last offset's number of elements; Map(K, V) offsets
as Array, then all keys, then all values; Tuple each element's column in turn. LowCardinality(T)
has a prefix UInt64 key version (1), and data as one or more granules: UInt64 flags (index width
in the low byte: 0..3 for 1, 2, 4, 8 bytes; bit 9 additional keys; bit 10 update dictionary; bit 8,
a global dictionary, never set in Native), UInt64 key count and the keys as a column of T without
Nullable (key 0 stands for NULL), UInt64 row count and the indexes.

What changes with R (ClickHouse's NativeWriter and ProtocolDefines): below 54405 LowCardinality is
sent as its full column (LowCardinality(Nullable(T)) as Nullable(T)); below 54337 a top-level
`DateTime('zone')` is named `DateTime` (so is every DateTime at revision 0, which is why the engine
is asked for binary type encodings, which keep the zone); 54452 versions aggregate-function states;
54473 and later change Dynamic and JSON; 54492 and later give String a separate size stream.

Invariants: the output carries the same columns, rows and values as the engine's; every input
byte is accounted for (truncated or trailing input is an error, never a short answer); types whose
layout depends on R in ways not written here (AggregateFunction, Dynamic, Variant, JSON, Object)
and revisions from 54492 on are refused with NOT_IMPLEMENTED rather than sent wrong.
"""

from __future__ import annotations

import array
import operator
import struct
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from clinotel.collector import leb128
from clinotel.collector.readport.reader import ClickHouseError
from clinotel.model.digits import ascii_digits

__all__ = [
    "BINARY_TYPES_SETTING",
    "MAX_REVISION",
    "NativeType",
    "client_revision",
    "engine_settings",
    "for_client",
    "parse_binary_type",
    "reframe",
]

REVISION_TIMEZONE_IN_DATETIME: Final = 54337
REVISION_LOW_CARDINALITY: Final = 54405
REVISION_CUSTOM_SERIALIZATION: Final = 54454
REVISION_OUT_OF_ORDER_BUCKETS: Final = 54480
MAX_REVISION: Final = 54491
"""The highest revision written here: from 54492 on, String columns carry a separate size stream."""
BINARY_TYPES_SETTING: Final = "output_format_native_encode_types_in_binary_format"
MAX_FULL_LOW_CARDINALITY_BYTES: Final = 128 << 20
"""Bytes LowCardinality columns may take, all together, once written as their full columns for a
client before 54405 (the reader's `max_result_bytes` by default): a column of long strings with
one-byte indexes grows by up to the strings' length a row, outside every engine cap."""

MAX_WALKED_VALUES: Final = 8_000_000
"""The work the rewrite may do for one answer, in String values walked (about 60 ns each on the
2-core reference machine, holding the interpreter the receivers share); a dictionary key, a
LowCardinality row written out in full, a block's columns and a new type's nodes and bytes count
too (`_KEY_WEIGHT`, `_COLUMN_WEIGHT`, `_TYPE_BYTE_WEIGHT`). A read token asking for 130 million
empty strings (within every engine cap: 1 byte each) took 11 s of it; 8 million is about half a
second, and a dashboard panel far less."""
_TYPE_BYTE_WEIGHT: Final = 8
"""A byte of a new type's encoding, read and its names quoted in Python: ~0.1-0.3 us."""
_KEY_WEIGHT: Final = 16
"""A LowCardinality key written out for a client before 54405 costs a Python object: ~16 values."""
_COLUMN_WEIGHT: Final = 100
"""A column of a block, and each node of its type (its name, type and framing read, its streams
cut) costs ~4-6 us: ~100 values. Without it, blocks of one row (`max_block_size = 1`, 20 columns,
100,000 rows) took 12 s of the interpreter with no String value in them (2026-12-07 review)."""

_LC_INDEX_WIDTH: Final = 0xFF
_LC_GLOBAL_DICTIONARY: Final = 1 << 8
_LC_ADDITIONAL_KEYS: Final = 1 << 9
_LC_UPDATE_DICTIONARY: Final = 1 << 10
_LC_KEY_VERSION: Final = 1
_INDEX_TYPECODES: Final = {array.array(code).itemsize: code for code in "QLIHB"}
"""array typecodes by item size: 1, 2, 4, 8 bytes (LowCardinality index widths)."""

_FIXED: Final = {
    0x01: ("UInt8", 1), 0x02: ("UInt16", 2), 0x03: ("UInt32", 4), 0x04: ("UInt64", 8), 0x05: ("UInt128", 16),
    0x06: ("UInt256", 32), 0x07: ("Int8", 1), 0x08: ("Int16", 2), 0x09: ("Int32", 4), 0x0A: ("Int64", 8),
    0x0B: ("Int128", 16), 0x0C: ("Int256", 32), 0x0D: ("Float32", 4), 0x0E: ("Float64", 8), 0x0F: ("Date", 2),
    0x10: ("Date32", 4), 0x11: ("DateTime", 4), 0x1D: ("UUID", 16), 0x28: ("IPv4", 4), 0x29: ("IPv6", 16),
    0x2D: ("Bool", 1), 0x31: ("BFloat16", 2), 0x32: ("Time", 4),
}  # fmt: skip
_DECIMAL_SIZES: Final = {0x19: 4, 0x1A: 8, 0x1B: 16, 0x1C: 32}
_INTERVALS: Final = (
    "Nanosecond", "Microsecond", "Millisecond", "Second", "Minute", "Hour", "Day", "Week", "Month", "Quarter", "Year"
)  # fmt: skip
_GEO: Final = {"Point", "Ring", "LineString", "MultiLineString", "Polygon", "MultiPolygon"}
_REFUSED: Final = {
    0x21: "Set", 0x24: "Function", 0x25: "AggregateFunction", 0x2A: "Variant", 0x2B: "Dynamic", 0x2F: "Nested",
    0x30: "JSON",
}  # fmt: skip
_UNQUOTED_KEYWORDS: Final = frozenset({"null", "distinct", "all", "table", "select"})
_ESCAPES: Final = {"\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0"}


def _not_implemented(message: str) -> ClickHouseError:
    return ClickHouseError(48, "NOT_IMPLEMENTED", message)


def _corrupt(message: str) -> ClickHouseError:
    return ClickHouseError(33, "CANNOT_READ_ALL_DATA", f"Native output of the engine: {message}")


def _quote(text: str, quote: str) -> str:
    return quote + "".join(_ESCAPES.get(c, "\\" + c if c == quote else c) for c in text) + quote


def _element_name(name: str) -> str:
    plain = (
        bool(name)
        and (name[0].isascii() and (name[0].isalpha() or name[0] == "_"))
        and all(c.isascii() and (c.isalnum() or c == "_") for c in name)
    )
    return name if plain and name.lower() not in _UNQUOTED_KEYWORDS else _quote(name, "`")


@dataclass(frozen=True)
class NativeType:
    """One column type: its layout `kind`, its ClickHouse name, and what the layout needs.

    kind: fixed (`size` bytes a value), string, nullable, array, map, tuple, lowcardinality."""

    kind: str
    name: str
    size: int = 0
    args: tuple[NativeType, ...] = ()


def _composite(kind: str, head: str, args: tuple[NativeType, ...], names: tuple[str, ...] = ()) -> NativeType:
    if names:
        parts = [f"{_element_name(n)} {a.name}" for n, a in zip(names, args, strict=True)]
    else:
        parts = [a.name for a in args]
    return NativeType(kind, f"{head}({', '.join(parts)})", args=args)


class _Reader:
    """A cursor over bytes that refuses to read past the end."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> memoryview:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise _corrupt(f"truncated at byte {self.pos:,} ({n:,} more expected)")
        view = memoryview(self.data)[self.pos : end]
        self.pos = end
        return view

    def byte(self) -> int:
        return self.take(1)[0]

    def varint(self) -> int:
        value = shift = 0
        while True:
            b = self.byte()
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value
            shift += 7
            if shift > 63:
                raise _corrupt("varint too long")

    def string(self) -> bytes:
        return bytes(self.take(self.varint()))

    def u64(self) -> int:
        return int.from_bytes(self.take(8), "little")


def parse_binary_type(data: bytes) -> NativeType:
    """The type of one binary type encoding (the whole of `data`)."""
    r = _Reader(data)
    t = _binary_type(r)
    if r.pos != len(data):
        raise _corrupt("trailing bytes after a binary type encoding")
    return t


def _binary_type(r: _Reader) -> NativeType:
    code = r.byte()
    if code in _FIXED:
        name, size = _FIXED[code]
        return NativeType("fixed", name, size)
    if code == 0x00:
        return NativeType("fixed", "Nothing", 1)
    if code == 0x12:
        return NativeType("fixed", f"DateTime({_quote(r.string().decode(), chr(39))})", 4)
    if code in (0x13, 0x14):
        precision = r.byte()
        zone = f", {_quote(r.string().decode(), chr(39))}" if code == 0x14 else ""
        return NativeType("fixed", f"DateTime64({precision}{zone})", 8)
    if code == 0x15:
        return NativeType("string", "String")
    if code == 0x16:
        n = r.varint()
        return NativeType("fixed", f"FixedString({n})", n)
    if code in (0x17, 0x18):
        width = 1 if code == 0x17 else 2
        items = []
        for _ in range(r.varint()):
            label = r.string().decode()
            value = int.from_bytes(r.take(width), "little", signed=True)
            items.append(f"{_quote(label, chr(39))} = {value}")
        return NativeType("fixed", f"Enum{8 * width}({', '.join(items)})", width)
    if code in _DECIMAL_SIZES:
        precision, scale = r.byte(), r.byte()
        return NativeType("fixed", f"Decimal({precision}, {scale})", _DECIMAL_SIZES[code])
    if code == 0x1E:
        return _composite("array", "Array", (_binary_type(r),))
    if code == 0x1F:
        return _composite("tuple", "Tuple", tuple(_binary_type(r) for _ in range(r.varint())))
    if code == 0x20:
        pairs = [(r.string().decode(), _binary_type(r)) for _ in range(r.varint())]
        return _composite("tuple", "Tuple", tuple(t for _, t in pairs), tuple(n for n, _ in pairs))
    if code == 0x22:
        kind = r.byte()
        if kind >= len(_INTERVALS):
            raise _corrupt(f"unknown interval kind {kind}")
        return NativeType("fixed", f"Interval{_INTERVALS[kind]}", 8)
    if code == 0x23:
        return _composite("nullable", "Nullable", (_binary_type(r),))
    if code == 0x26:
        return _composite("lowcardinality", "LowCardinality", (_binary_type(r),))
    if code == 0x27:
        return _composite("map", "Map", (_binary_type(r), _binary_type(r)))
    if code == 0x2C:
        return _custom(r.string().decode())
    if code == 0x2E:
        function = r.string().decode()
        if r.varint() != 0:
            raise _not_implemented("SimpleAggregateFunction with parameters is not written in Native here")
        args = tuple(_binary_type(r) for _ in range(r.varint()))
        if len(args) != 1:
            raise _not_implemented("SimpleAggregateFunction of several arguments is not written in Native here")
        inner = args[0]
        return NativeType(inner.kind, f"SimpleAggregateFunction({function}, {inner.name})", inner.size, inner.args)
    if code == 0x34:
        return NativeType("fixed", f"Time64({r.byte()})", 8)
    name = _REFUSED.get(code, f"type code 0x{code:02x}")
    raise _not_implemented(f"{name} columns are not written in Native for a client protocol revision here")


def _custom(name: str) -> NativeType:
    if name not in _GEO:
        raise _not_implemented(f"{name} columns are not written in Native for a client protocol revision here")
    point = NativeType("tuple", "Point", args=(NativeType("fixed", "Float64", 8), NativeType("fixed", "Float64", 8)))
    ring = NativeType("array", "Ring", args=(point,))
    line = NativeType("array", "LineString", args=(point,))
    polygon = NativeType("array", "Polygon", args=(ring,))
    shapes = {
        "Point": point,
        "Ring": ring,
        "LineString": line,
        "MultiLineString": NativeType("array", "MultiLineString", args=(line,)),
        "Polygon": polygon,
        "MultiPolygon": NativeType("array", "MultiPolygon", args=(polygon,)),
    }
    return shapes[name]


def _without_low_cardinality(t: NativeType) -> NativeType:
    if t.kind == "lowcardinality":
        return _without_low_cardinality(t.args[0])
    if not t.args or t.name in _GEO or t.name.startswith("SimpleAggregateFunction("):
        return t
    args = tuple(_without_low_cardinality(a) for a in t.args)
    if args == t.args:
        return t
    head = t.name.split("(", 1)[0]
    if t.kind == "tuple" and t.name != _composite("tuple", head, t.args).name:  # named elements: keep the names
        raise _not_implemented("LowCardinality inside a named Tuple for a client before LowCardinality")
    return _composite(t.kind, head, args)


# -- data ---------------------------------------------------------------------------------------


def _skip_strings(r: _Reader, rows: int) -> None:
    data, pos = r.data, r.pos
    end = len(data)
    for _ in range(rows):
        if pos >= end:
            raise _corrupt("truncated String column")
        b = data[pos]
        if b < 0x80:  # the usual one-byte length, without a call
            pos += 1 + b
            continue
        r.pos = pos
        n = r.varint()
        pos = r.pos + n
    if pos > end:
        raise _corrupt("truncated String column")
    r.pos = pos


def _prefix(t: NativeType, r: _Reader, out: list[bytes | memoryview], keep_lc: bool) -> None:
    if t.kind == "lowcardinality":
        version = r.take(8)
        if int.from_bytes(version, "little") != _LC_KEY_VERSION:
            raise _corrupt("unknown LowCardinality key version")
        if keep_lc:
            out.append(version)
    else:
        for a in t.args:
            _prefix(a, r, out, keep_lc)


class _Budget:
    """What one answer's rewrite may still spend: bytes the rewrite adds to the engine's answer
    (LowCardinality's full columns, type names; `max_bytes`), and values walked one at a time in
    Python (`MAX_WALKED_VALUES`)."""

    def __init__(self, limit: int, values: int = MAX_WALKED_VALUES) -> None:
        self.limit = limit
        self.left = limit
        self.values = values
        self.values_left = values

    def spend(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise ClickHouseError(
                396,
                "TOO_MANY_ROWS_OR_BYTES",
                f"Limit for result exceeded, max bytes: {self.limit:,}: what a client protocol revision adds "
                f"(LowCardinality columns written in full before {REVISION_LOW_CARDINALITY}, types written as "
                f"names); send client_protocol_version={REVISION_LOW_CARDINALITY} or later, binary type "
                "encodings, or read fewer rows or blocks",
            )

    def walk(self, n: int) -> None:
        """Count `n` values about to be walked one by one, refusing the answer before they are."""
        self.values_left -= n
        if self.values_left < 0:
            raise ClickHouseError(
                396,
                "TOO_MANY_ROWS_OR_BYTES",
                f"Limit for result exceeded: Native for a client_protocol_version is rewritten here a string "
                f"value at a time, at most {self.values:,} an answer; read fewer rows (LIMIT), or ask for "
                "client_protocol_version=0 or another format (JSON, TabSeparated, RowBinary)",
            )


def _data(t: NativeType, rows: int, r: _Reader, out: list[bytes | memoryview], keep_lc: bool, budget: _Budget) -> None:
    kind = t.kind
    if kind == "fixed":
        out.append(r.take(rows * t.size))
    elif kind == "string":
        budget.walk(rows)
        start = r.pos
        _skip_strings(r, rows)
        out.append(memoryview(r.data)[start : r.pos])
    elif kind == "nullable":
        out.append(r.take(rows))
        _data(t.args[0], rows, r, out, keep_lc, budget)
    elif kind in ("array", "map"):
        offsets = r.take(8 * rows)
        out.append(offsets)
        elements = int.from_bytes(offsets[-8:], "little") if rows else 0
        for a in t.args if kind == "map" else t.args[:1]:
            _data(a, elements, r, out, keep_lc, budget)
    elif kind == "tuple":
        for a in t.args:
            _data(a, rows, r, out, keep_lc, budget)
    elif keep_lc:
        _low_cardinality(t.args[0], rows, r, out, budget)
    else:
        _low_cardinality_full(t.args[0], rows, r, out, budget)


def _granules(
    inner: NativeType, rows: int, r: _Reader, budget: _Budget
) -> list[tuple[int, memoryview, int, memoryview, int]]:
    """(flags, keys, key count, indexes, index width) of each granule of a LowCardinality column."""
    dictionary = inner.args[0] if inner.kind == "nullable" else inner
    granules = []
    while rows > 0:
        flags = r.u64()
        if flags & _LC_GLOBAL_DICTIONARY or not flags & _LC_ADDITIONAL_KEYS:
            raise _not_implemented("a LowCardinality column with a global dictionary is not written here")
        width = 1 << (flags & _LC_INDEX_WIDTH)
        if width > 8:
            raise _corrupt("unknown LowCardinality index width")
        count = r.u64()
        start = r.pos
        _data(dictionary, count, r, [], True, budget)
        keys = memoryview(r.data)[start : r.pos]
        n = r.u64()
        if n == 0 or n > rows:
            raise _corrupt("LowCardinality granule of no rows or too many")
        granules.append((flags, keys, count, r.take(n * width), width))
        rows -= n
    return granules


def _low_cardinality(inner: NativeType, rows: int, r: _Reader, out: list[bytes | memoryview], budget: _Budget) -> None:
    for flags, keys, count, indexes, _width in _granules(inner, rows, r, budget):
        out += [struct.pack("<QQ", flags, count), keys, struct.pack("<Q", len(indexes) // _width), indexes]


def _low_cardinality_full(
    inner: NativeType, rows: int, r: _Reader, out: list[bytes | memoryview], budget: _Budget
) -> None:
    """The column of each row's dictionary value, granule by granule, without a Python object a
    row: the indexes are read into an array, and each granule's values are joined from its
    dictionary's slices in C (a granule at a time, its size counted against `budget` first)."""
    nullable = inner.kind == "nullable"
    dictionary = inner.args[0] if nullable else inner
    nulls: list[bytes] = []
    values: list[bytes] = []
    for _flags, keys, count, indexes, width in _granules(inner, rows, r, budget):
        budget.walk(count * _KEY_WEIGHT + len(indexes) // width)  # and each row written out, in C
        elements = _split(dictionary, count, keys)
        index = _index_array(indexes, width)
        if max(index) >= count:
            raise _corrupt("LowCardinality index out of its dictionary")
        sizes = [len(e) for e in elements]
        budget.spend(sum(map(sizes.__getitem__, index)) + (len(index) if nullable else 0))
        if nullable:
            nulls.append(bytes(map(operator.not_, index)))  # key 0 stands for NULL
        values.append(b"".join(map(elements.__getitem__, index)))
    out += nulls
    out += values


def _index_array(indexes: memoryview, width: int) -> array.array[int]:
    """A granule's indexes (little-endian, `width` bytes each) as integers."""
    index = array.array(_INDEX_TYPECODES[width])
    index.frombytes(indexes)
    if sys.byteorder == "big":
        index.byteswap()
    return index


def _split(t: NativeType, count: int, keys: memoryview) -> list[bytes]:
    """The `count` values of a dictionary column, as written in a column (fixed-size types and String)."""
    data = bytes(keys)
    if t.kind == "fixed":
        return [data[i * t.size : (i + 1) * t.size] for i in range(count)]
    if t.kind != "string":
        raise _not_implemented(f"LowCardinality({t.name}) for a client before LowCardinality")
    r = _Reader(data)
    items = []
    for _ in range(count):
        start = r.pos
        _skip_strings(r, 1)
        items.append(data[start : r.pos])
    return items


# -- blocks -------------------------------------------------------------------------------------


def _type_header(t: NativeType, encoded: bytes, keep_lc: bool, binary_types: bool, revision: int) -> bytes:
    """A column's type as the client reads it: the binary encoding, or the type's name."""
    sent = t if keep_lc else _without_low_cardinality(t)
    if binary_types:
        if sent is not t:
            raise _not_implemented("binary type encodings without LowCardinality are not written here")
        return encoded
    name = sent.name
    if revision < REVISION_TIMEZONE_IN_DATETIME and name.startswith("DateTime("):
        name = "DateTime"
    return _string(name.encode())


def _nodes(t: NativeType) -> int:
    """The nodes of a type's tree (`Tuple(UInt8, Array(String))`: 4)."""
    return 1 + sum(map(_nodes, t.args))


def _string(b: bytes) -> bytes:
    return leb128.encode(len(b)) + b


def _block_info(revision: int) -> bytes:
    info = b"\x01\x00\x02" + struct.pack("<i", -1)
    if revision >= REVISION_OUT_OF_ORDER_BUCKETS:
        info += b"\x03\x00"
    return info + b"\x00"


def for_client(
    body: bytes,
    revision: int,
    *,
    binary_types: bool = False,
    max_bytes: int = MAX_FULL_LOW_CARDINALITY_BYTES,
    max_values: int = MAX_WALKED_VALUES,
) -> bytes:
    """The engine's revision-0 Native `body` (binary type encodings) as a server writes it for `revision`.

    `binary_types`: the client asked for binary type encodings rather than type names.
    `max_bytes`: what LowCardinality columns written in full (before 54405) may add, all together;
    past it, TOO_MANY_ROWS_OR_BYTES. `max_values`: string values and dictionary keys read one at a
    time (`MAX_WALKED_VALUES`); past it, TOO_MANY_ROWS_OR_BYTES."""
    if revision == 0:
        return body
    if revision > MAX_REVISION:
        raise _not_implemented(
            f"Native for client_protocol_version {revision} is not written here (at most {MAX_REVISION}); "
            f"send client_protocol_version={MAX_REVISION} or less, or read another format"
        )
    keep_lc = revision >= REVISION_LOW_CARDINALITY
    budget = _Budget(max_bytes, max_values)
    r = _Reader(body)
    out: list[bytes | memoryview] = []
    info = _block_info(revision)
    types: dict[int, tuple[bytes, NativeType, bytes]] = {}
    """Per column: the last block's type, as encoded, parsed and written for the client."""
    while r.pos < len(body):
        columns, rows = r.varint(), r.varint()
        budget.walk(_COLUMN_WEIGHT)
        out += [info, leb128.encode(columns), leb128.encode(rows)]
        for column in range(columns):
            budget.walk(_COLUMN_WEIGHT)  # before its type is read: a block of many columns
            out.append(_string(r.string()))
            # A column's type repeats in every block: the previous block's, when its bytes come
            # again, is taken as it was (one comparison). A new one is read and named, each node
            # and byte counted (a 1,000-tuple in one-row blocks took 14 s, an Enum16 of 15,000
            # labels 41 ms a block, within the node count: third and fourth reviews).
            seen = types.get(column)
            if seen is not None and r.data[r.pos : r.pos + len(seen[0])] == seen[0]:
                encoded, t, header = seen
                r.pos += len(encoded)
            else:
                start = r.pos
                t = _binary_type(r)
                encoded = bytes(r.data[start : r.pos])
                budget.walk((_nodes(t) - 1) * _COLUMN_WEIGHT + len(encoded) * _TYPE_BYTE_WEIGHT)
                header = _type_header(t, encoded, keep_lc, binary_types, revision)
                types[column] = (encoded, t, header)
            # a type's name may be longer than its encoding: what it adds, in every block, counts
            # against the answer's bytes (an Enum16 of 15,000 labels grew 2,000 blocks to 472 MiB)
            budget.spend(max(0, len(header) - len(encoded)))
            out.append(header)
            if revision >= REVISION_CUSTOM_SERIALIZATION:
                out.append(b"\x00")
            if rows:
                _prefix(t, r, out, keep_lc)
                _data(t, rows, r, out, keep_lc, budget)
    return b"".join(out)


# -- the read port's hook ----------------------------------------------------------------------


def client_revision(params: Mapping[str, str]) -> int:
    """The `client_protocol_version` URL parameter (0 when absent)."""
    value = params.get("client_protocol_version", "").strip()
    if not value:
        return 0
    if not ascii_digits(value) or len(value) > 19:
        raise ClickHouseError(6, "CANNOT_PARSE_TEXT", f"Cannot parse client_protocol_version {value[:40]!r}")
    return int(value)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true")


def engine_settings(params: Mapping[str, str]) -> dict[str, str]:
    """Settings the engine runs a query with for this request: binary type encodings in Native
    whenever the client names a revision, so that no DateTime loses its zone."""
    return {BINARY_TYPES_SETTING: "1"} if client_revision(params) > 0 else {}


def reframe(
    body: bytes, fmt: str, params: Mapping[str, str], *, max_bytes: int = MAX_FULL_LOW_CARDINALITY_BYTES
) -> bytes:
    """The answer's body for the client: Native rewritten for its revision, anything else as is
    (`max_bytes`: as `for_client`'s).

    `compress=1` (ClickHouse's own block compression, which clickhouse-go asks for when set to LZ4
    or ZSTD over HTTP) is refused: the body would otherwise reach it unframed."""
    if params.get("compress", "0").strip() not in ("", "0"):
        raise _not_implemented(
            "compress=1 (ClickHouse's compressed blocks) is not written here; use HTTP compression "
            "(enable_http_compression=1 with Accept-Encoding: gzip), as clickhouse-go's gzip setting does"
        )
    revision = client_revision(params)
    if revision == 0 or fmt.lower() != "native":
        return body
    return for_client(body, revision, binary_types=_truthy(params.get(BINARY_TYPES_SETTING)), max_bytes=max_bytes)
