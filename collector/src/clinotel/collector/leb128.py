"""Unsigned LEB128, the variable-length integer both protobuf (the log's records) and ClickHouse's
Native format (the read port's answers) use."""

from __future__ import annotations

__all__ = ["encode"]


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
