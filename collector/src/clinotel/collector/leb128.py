"""Unsigned LEB128, the variable-length integer both protobuf (the log's records) and ClickHouse's
Native format (the read port's answers) use."""

from __future__ import annotations

__all__ = ["decode", "encode"]


def encode(n: int) -> bytes:
    """`n` (non-negative) as unsigned LEB128: seven bits a byte, low first, high bit set on all but the last."""
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def decode(data: bytes | bytearray | memoryview, pos: int = 0) -> tuple[int, int] | None:
    """The unsigned LEB128 integer at `pos` in `data` and where it ends, or None when it runs past
    the end of `data` or past 64 bits."""
    result = shift = 0
    while pos < len(data):
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            return None
    return None
