"""Request bodies on the collector's HTTP ports: `Content-Length` or `Transfer-Encoding: chunked`.

One reader for both ports (OTLP/HTTP and the ClickHouse read port). The size limit is checked
while reading, before any byte over it is buffered: a chunk that would pass the limit is refused
from its size line. Framing that cannot be trusted (malformed chunks, a transfer coding other than
`chunked`, `Transfer-Encoding` beside `Content-Length`, conflicting lengths) is refused, and the
caller must close the connection, since the next request's start is unknown (RFC 9112 §6.3).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from email.message import Message
from io import BufferedIOBase
from typing import Final

from clinotel.collector.errors import RefusedError

__all__ = ["BodyError", "read_body"]

MAX_LINE: Final = 4096
"""Longest chunk-size line (with extensions) or trailer line accepted, CRLF included."""
MAX_TRAILER_BYTES: Final = 16 << 10
_HEX: Final = re.compile(rb"[0-9A-Fa-f]{1,16}")
_DRAIN_PIECE: Final = 1 << 16


class BodyError(RefusedError):
    """A body not read, for one of the refusal reasons of `clinotel.collector.errors` (`malformed`,
    `no_length`, `too_large`, `unsupported_transfer_coding`); `status` is its HTTP answer.

    After any BodyError the connection's framing is spent: answer, then close."""

    @property
    def status(self) -> int:
        return self.http_status


def _malformed(message: str) -> BodyError:
    return BodyError("malformed", message)


def _too_large(size: int | None, limit: int) -> BodyError:
    what = f"request of {size:,} bytes" if size is not None else "chunked request"
    return BodyError("too_large", f"{what} is over the {limit:,}-byte limit")


Take = Callable[[int], None]
"""Called with a number of bytes before they are read into memory; raises `RefusedError` when
they may not be (the receivers' `admission.Hold.take`)."""


def read_body(
    rfile: BufferedIOBase,
    headers: Message,
    limit: int,
    *,
    drain: int = 0,
    http10: bool = False,
    take: Take | None = None,
) -> bytes | bytearray:
    """The request's body, at most `limit` bytes, framed by `Content-Length` or chunked (then in
    the `bytearray` it was gathered in, not copied).

    A body over the limit raises 413 after up to `drain` bytes were read and discarded, so that a
    client still sending can read the answer. `take` hears of every byte before it is read (the
    whole `Content-Length`, or each chunk); should it refuse, the body is read and discarded as for
    one too large, and its refusal raised as a `BodyError`. `http10` marks an HTTP/1.0 request,
    which may not be chunked."""
    codings = [c.strip().lower() for v in headers.get_all("Transfer-Encoding") or [] for c in v.split(",")]
    codings = [c for c in codings if c]
    lengths = [v.strip() for v in headers.get_all("Content-Length") or []]
    if codings:
        if http10:
            raise _malformed("Transfer-Encoding is not allowed in an HTTP/1.0 request")
        if lengths:
            raise _malformed("a request may not carry both Transfer-Encoding and Content-Length")
        if codings[-1] != "chunked":
            raise _malformed(f"the final transfer coding must be chunked, not {codings[-1]!r}")
        if codings != ["chunked"]:
            raise BodyError("unsupported_transfer_coding", f"transfer codings {', '.join(codings)} are not supported")
        return _read_chunked(rfile, limit, drain, take)
    if not lengths:
        raise BodyError("no_length", "Content-Length or Transfer-Encoding: chunked is required")
    values = {part.strip() for v in lengths for part in v.split(",")}
    if len(values) != 1 or not (value := values.pop()).isdigit() or not value.isascii():
        raise _malformed(f"invalid Content-Length {', '.join(lengths)!r}")
    length = int(value)
    if length > limit:
        if length <= drain:
            _discard(rfile, length)
        raise _too_large(length, limit)
    if take is not None:
        try:
            take(length)
        except RefusedError as e:
            if length <= drain:
                _discard(rfile, length)
            raise BodyError(e.reason, e.message) from None
    body = rfile.read(length)
    if len(body) != length:
        raise _malformed(f"the body ended after {len(body):,} of {length:,} bytes")
    return body


def _line(rfile: BufferedIOBase, what: str) -> bytes:
    line = rfile.readline(MAX_LINE + 1)
    if not line.endswith(b"\r\n"):
        problem = "too long" if len(line) > MAX_LINE else "not ended by CRLF" if line else "missing"
        raise _malformed(f"chunked body: {what} line {problem}")
    return line[:-2]


def _read_chunked(rfile: BufferedIOBase, limit: int, drain: int, take: Take | None) -> bytearray:
    """The chunks' data, gathered in one buffer as they arrive, the limit checked from each
    chunk's size line: no object per chunk (a 32 MiB body in 2-byte chunks held one `bytes` per
    chunk, 2.5 GB of resident memory, until the body ended)."""
    body = bytearray()
    total = 0
    discarding = False
    refused: BodyError | None = None
    while True:
        size_text = _line(rfile, "chunk-size").split(b";", 1)[0].strip(b" \t")
        if not _HEX.fullmatch(size_text):
            raise _malformed(f"chunked body: invalid chunk size {size_text[:20]!r}")
        size = int(size_text, 16)
        if size == 0:
            break
        if total + size > limit:
            discarding, refused = True, None  # 413, whatever else was wrong
            body = bytearray()  # what was read is no longer needed
        if not discarding and take is not None:
            try:
                take(size)
            except RefusedError as e:
                discarding, refused = True, BodyError(e.reason, e.message)
                body = bytearray()
        total += size
        if discarding:
            if total > drain:
                raise refused or _too_large(None, limit)
            _discard(rfile, size)
        else:
            left = size
            while left:  # a large chunk in pieces: no copy of it beside the buffer
                piece = rfile.read(min(left, _DRAIN_PIECE))
                if not piece:
                    raise _malformed(f"chunked body: a chunk ended after {size - left:,} of {size:,} bytes")
                body += piece
                left -= len(piece)
        if rfile.read(2) != b"\r\n":
            raise _malformed("chunked body: chunk data not followed by CRLF")
    trailer = 0
    while line := _line(rfile, "trailer"):
        trailer += len(line) + 2
        if trailer > MAX_TRAILER_BYTES:
            raise _malformed(f"chunked body: trailer section over {MAX_TRAILER_BYTES:,} bytes")
    if discarding:
        raise refused or _too_large(total, limit)
    return body


def _discard(rfile: BufferedIOBase, n: int) -> None:
    while n > 0:
        piece = rfile.read(min(n, _DRAIN_PIECE))
        if not piece:
            return
        n -= len(piece)
