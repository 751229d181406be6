"""A Native-format reader for the tests, written from the protocol as clients read it (clickhouse-go's
`lib/proto/block.go` and column readers, clickhouse-connect's native reader), independent of
`clinotel.collector.readport.native`: it parses type *names*, reads a block-info header and a serialization
byte where the revision says a client expects them, and fails on any byte left over or missing.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from typing import Any

CUSTOM_SERIALIZATION = 54454
LOW_CARDINALITY = 54405
OUT_OF_ORDER_BUCKETS = 54480


class DecodeError(Exception):
    pass


@dataclass
class Type:
    head: str
    args: list[Type] = field(default_factory=list)
    params: list[str] = field(default_factory=list)  # literal parameters, as written
    names: list[str] = field(default_factory=list)  # named Tuple elements, as written

    def render(self) -> str:
        if self.head == "SimpleAggregateFunction":
            return f"{self.head}({self.params[0]}, {self.args[0].render()})"
        if self.args:
            inner = (
                [f"{n} {a.render()}" for n, a in zip(self.names, self.args, strict=True)]
                if self.names
                else [a.render() for a in self.args]
            )
            return f"{self.head}({', '.join(inner)})"
        return f"{self.head}({', '.join(self.params)})" if self.params else self.head


_COMPOSITE = {"Array", "Nullable", "LowCardinality", "Map", "Tuple"}
_ALIASES = {
    "Point": "Tuple(Float64, Float64)",
    "Ring": "Array(Tuple(Float64, Float64))",
    "LineString": "Array(Tuple(Float64, Float64))",
    "Polygon": "Array(Array(Tuple(Float64, Float64)))",
    "MultiLineString": "Array(Array(Tuple(Float64, Float64)))",
    "MultiPolygon": "Array(Array(Array(Tuple(Float64, Float64))))",
}


def _split_top(text: str) -> list[str]:
    parts, depth, start, quote, i = [], 0, 0, "", 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "'`":
            quote = c
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
        i += 1
    parts.append(text[start:].strip())
    return parts


_NAMED = re.compile(r"^(`(?:[^`\\]|\\.)*`|[A-Za-z_][A-Za-z0-9_]*) (.+)$", re.S)


def parse_type(text: str) -> Type:
    text = text.strip()
    if "(" not in text:
        return Type(text)
    head, rest = text.split("(", 1)
    if not rest.endswith(")"):
        raise DecodeError(f"bad type {text!r}")
    parts = _split_top(rest[:-1])
    if head == "Tuple":
        named = [_NAMED.match(p) for p in parts]
        if all(named):
            return Type("Tuple", [parse_type(m.group(2)) for m in named if m], names=[m.group(1) for m in named if m])
    if head in _COMPOSITE:
        return Type(head, [parse_type(p) for p in parts])
    if head == "SimpleAggregateFunction":
        return Type(head, [parse_type(parts[1])], params=[parts[0]])
    return Type(head, params=parts)


def strip_low_cardinality(t: Type) -> Type:
    if t.head == "LowCardinality":
        return strip_low_cardinality(t.args[0])
    if t.head == "SimpleAggregateFunction":
        return t
    return Type(t.head, [strip_low_cardinality(a) for a in t.args], t.params, t.names)


_INTS = {"Int8": "b", "Int16": "h", "Int32": "i", "Int64": "q", "UInt8": "B", "UInt16": "H", "UInt32": "I",
         "UInt64": "Q", "Date": "H", "Date32": "i", "DateTime": "I", "DateTime64": "q", "IPv4": "I", "Enum8": "b",
         "Enum16": "h", "Time": "i", "Time64": "q", "Float32": "f", "Float64": "d", "Bool": "?"}  # fmt: skip
_WIDE = {"Int128": 16, "UInt128": 16, "Int256": 32, "UInt256": 32, "UUID": 16, "IPv6": 16, "BFloat16": 2}
_DECIMAL_WIDTH = ((9, 4), (18, 8), (38, 16), (76, 32))


class Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def read(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise DecodeError(f"unexpected end at {self.pos} (+{n})")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def uvarint(self) -> int:
        result = shift = 0
        while True:
            b = self.read(1)[0]
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return result

    def str_(self) -> bytes:
        return self.read(self.uvarint())

    def unpack(self, fmt: str, n: int) -> list[Any]:
        return list(struct.unpack(f"<{n}{fmt}", self.read(struct.calcsize(fmt) * n)))


def _read_prefix(t: Type, r: Reader, state: dict[int, bool]) -> None:
    if t.head == "LowCardinality":
        if struct.unpack("<Q", r.read(8))[0] != 1:
            raise DecodeError("LowCardinality key version is not 1")
        state[id(t)] = True
    for a in t.args:
        _read_prefix(a, r, state)


def read_column(t: Type, n: int, r: Reader) -> list[Any]:
    """`n` values of type `t`, with its state prefixes read first, as a client reads a column."""
    state: dict[int, bool] = {}
    _read_prefix(t, r, state)
    return _read(t, n, r, state)


def _read(t: Type, n: int, r: Reader, state: dict[int, bool]) -> list[Any]:
    h = t.head
    if h in _ALIASES:
        return _read(parse_type(_ALIASES[h]), n, r, {})
    if h == "SimpleAggregateFunction":
        return _read(t.args[0], n, r, state)
    if h in _INTS:
        return r.unpack(_INTS[h], n)
    if h.startswith("Interval"):
        return r.unpack("q", n)
    if h in _WIDE:
        return [r.read(_WIDE[h]) for _ in range(n)]
    if h == "Decimal":
        width = next(w for p, w in _DECIMAL_WIDTH if int(t.params[0]) <= p)
        return [int.from_bytes(r.read(width), "little", signed=True) for _ in range(n)]
    if h == "FixedString":
        return [r.read(int(t.params[0])) for _ in range(n)]
    if h == "String":
        return [r.str_() for _ in range(n)]
    if h == "Nothing":
        r.read(n)
        return [None] * n
    if h == "Nullable":
        mask = r.read(n)
        values = _read(t.args[0], n, r, state)
        return [None if m else v for m, v in zip(mask, values, strict=True)]
    if h in ("Array", "Map"):
        offsets = r.unpack("Q", n)
        total = offsets[-1] if offsets else 0
        if h == "Array":
            flat = _read(t.args[0], total, r, state)
        else:
            keys = _read(t.args[0], total, r, state)
            flat = list(zip(keys, _read(t.args[1], total, r, state), strict=True))
        out, prev = [], 0
        for end in offsets:
            out.append(flat[prev:end])
            prev = end
        return out
    if h == "Tuple":
        cols = [_read(a, n, r, state) for a in t.args]
        return list(zip(*cols, strict=True)) if cols else [()] * n
    if h == "LowCardinality":
        if id(t) not in state:
            raise DecodeError("LowCardinality data without its prefix")
        return _read_low_cardinality(t.args[0], n, r)
    raise DecodeError(f"type {t.render()} not known to the test decoder")


def _read_low_cardinality(inner: Type, n: int, r: Reader) -> list[Any]:
    nullable = inner.head == "Nullable"
    dictionary_type = inner.args[0] if nullable else inner
    out: list[Any] = []
    dictionary: list[Any] = []
    while len(out) < n:
        (flags,) = r.unpack("Q", 1)
        if flags & (1 << 8):
            raise DecodeError("global dictionaries are not sent in Native")
        if flags & (1 << 9):
            (count,) = r.unpack("Q", 1)
            dictionary = _read(dictionary_type, count, r, {})
        (rows,) = r.unpack("Q", 1)
        indexes = r.unpack("BHIQ"[flags & 0xFF], rows)
        out += [None if nullable and i == 0 else dictionary[i] for i in indexes]
    if len(out) != n:
        raise DecodeError("LowCardinality granules overrun the column")
    return out


@dataclass
class Column:
    name: str
    type: str
    values: list[Any]


@dataclass
class Block:
    info: dict[int, Any] | None
    rows: int
    columns: list[Column]


def decode(data: bytes, revision: int) -> list[Block]:
    """Every block of a Native stream as a client of `revision` reads it."""
    r = Reader(data)
    blocks = []
    while r.pos < len(data):
        info = None
        if revision > 0:
            info = {}
            while (num := r.uvarint()) != 0:
                if num == 1:
                    info[1] = r.read(1)[0]
                elif num == 2:
                    info[2] = struct.unpack("<i", r.read(4))[0]
                elif num == 3 and revision >= OUT_OF_ORDER_BUCKETS:
                    info[3] = r.unpack("i", r.uvarint())
                else:
                    raise DecodeError(f"block info field {num} unknown at revision {revision}")
        ncols, nrows = r.uvarint(), r.uvarint()
        columns = []
        for _ in range(ncols):
            name, type_name = r.str_().decode(), r.str_().decode()
            if revision >= CUSTOM_SERIALIZATION and r.read(1) != b"\x00":
                raise DecodeError("custom serialization is not read by clients")
            values = read_column(parse_type(type_name), nrows, r) if nrows else []
            columns.append(Column(name, type_name, values))
        blocks.append(Block(info, nrows, columns))
    return blocks


def rows(blocks: list[Block]) -> list[tuple[Any, ...]]:
    """All rows of all blocks."""
    out: list[tuple[Any, ...]] = []
    for b in blocks:
        out += list(zip(*(c.values for c in b.columns), strict=True)) if b.columns else []
    return out
