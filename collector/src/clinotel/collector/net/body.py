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
from typing import Final, Protocol

from clinotel.collector.errors import RefusedError

__all__ = ["BODY_GRACE_S", "MIN_BODY_RATE", "Allow", "BodyError", "Budget", "read_body"]

MAX_LINE: Final = 4096
"""Longest chunk-size line (with extensions) or trailer line accepted, CRLF included."""
MAX_TRAILER_BYTES: Final = 16 << 10
_HEX: Final = re.compile(rb"[0-9A-Fa-f]{1,16}")
_PIECE: Final = 1 << 16
"""What one read of a body asks for, kept or discarded."""


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


class Budget(Protocol):
    """Where a body's bytes are counted before they are buffered (the receivers' `admission.Hold`)."""

    def take(self, n: int) -> None:
        """Count `n` more bytes; raises `RefusedError` when they may not be held."""

    def give(self, n: int) -> None:
        """Give back `n` of the bytes counted."""

    def received(self, n: int) -> None:
        """`n` bytes of the body arrived (its progress)."""


CREDIT_BLOCK: Final = 64 << 10
"""A budget is asked for at least this much at a time: a body of one-byte chunks does not ask it
once a byte (which doubled the CPU such a body takes)."""
MIN_BODY_RATE: Final = 16 << 10
"""Bytes a second a counted body must arrive at, on average over its announced size, after
`BODY_GRACE_S`: low enough for a clinic's slow shared uplink (eight exporters on 1.3 Mbit/s),
and a bound on how long a body may hold its share of the receive buffer."""
BODY_GRACE_S: Final = 30.0

Allow = Callable[[float], None]
"""Told how many seconds the body may take in all, each time more of it is announced (the
`net.deadline.DeadlineReader` it is read through moves its deadline)."""


class _Counted:
    """A body's reading against its `Budget` and its time: bytes counted a block ahead of what is
    buffered, all given back when the body is refused; the time it may take, `BODY_GRACE_S` plus
    its announced size at `MIN_BODY_RATE`, told to `allow`."""

    def __init__(self, budget: Budget | None, allow: Allow | None) -> None:
        self._budget = budget
        self._allow = allow
        self._credit = 0
        self._taken = 0
        self._announced = 0
        if allow is not None:
            allow(BODY_GRACE_S)

    def announce(self, n: int) -> None:
        """`n` more bytes are on their way (a Content-Length, a chunk's size): more time for them."""
        self._announced += n
        if self._allow is not None:
            self._allow(BODY_GRACE_S + self._announced / MIN_BODY_RATE)

    def use(self, n: int) -> None:
        """Count `n` bytes about to be buffered; raises `RefusedError` when they may not be."""
        if self._budget is None:
            return
        self._budget.received(n)
        if n > self._credit:
            more = max(n - self._credit, CREDIT_BLOCK)
            self._budget.take(more)
            self._taken += more
            self._credit += more
        self._credit -= n

    def release(self) -> None:
        """Give back everything counted (the body is refused: nothing of it is kept)."""
        if self._budget is not None and self._taken:
            self._budget.give(self._taken)
        self._taken = self._credit = 0


def read_body(
    rfile: BufferedIOBase,
    headers: Message,
    limit: int,
    *,
    drain: int = 0,
    http10: bool = False,
    budget: Budget | None = None,
    allow: Allow | None = None,
) -> bytes | bytearray:
    """The request's body, at most `limit` bytes, framed by `Content-Length` or chunked (then in
    the `bytearray` it was gathered in, not copied).

    A body over the limit raises 413 after up to `drain` bytes were read and discarded, so that a
    client still sending can read the answer. With a `budget`, every piece is counted in it as it
    arrives, before it is buffered (a client holds only what it sent); should the budget refuse,
    what was counted is given back, the rest of the body is read and discarded as for one too
    large, and its refusal raised as a `BodyError`. With `allow`, the time the body may take is
    told as it becomes known (`_Counted`), and a read past it (a `TimeoutError` from the reader)
    is a `BodyError` (`receive_timeout`). `http10` marks an HTTP/1.0 request, which may not be
    chunked."""
    counted = _Counted(budget, allow)
    try:
        return _read_body(rfile, headers, limit, drain, http10, counted, budget is not None)
    except TimeoutError:
        counted.release()
        if allow is None:
            raise
        raise BodyError(
            "receive_timeout",
            f"the body did not arrive in time: at least {MIN_BODY_RATE >> 10} KiB/s on average after the first "
            f"{BODY_GRACE_S:.0f} s",
        ) from None
    except BaseException:
        counted.release()
        raise


def _read_body(
    rfile: BufferedIOBase, headers: Message, limit: int, drain: int, http10: bool, counted: _Counted, piecewise: bool
) -> bytes | bytearray:
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
        return _read_chunked(rfile, limit, drain, counted)
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
    counted.announce(length)
    if not piecewise:
        body = rfile.read(length)
        if len(body) != length:
            raise _malformed(f"the body ended after {len(body):,} of {length:,} bytes")
        return body
    return _read_counted(rfile, length, drain, counted)


def _read_counted(rfile: BufferedIOBase, length: int, drain: int, counted: _Counted) -> bytearray:
    """`length` bytes, each piece counted as it arrives."""
    body = bytearray()
    while len(body) < length:
        piece = rfile.read1(min(length - len(body), _PIECE))
        if not piece:
            raise _malformed(f"the body ended after {len(body):,} of {length:,} bytes")
        try:
            counted.use(len(piece))
        except RefusedError as e:
            counted.release()
            received = len(body) + len(piece)
            del body, piece
            if length <= drain:
                _discard(rfile, length - received)
            raise BodyError(e.reason, e.message) from None
        body += piece
    return body


def _line(rfile: BufferedIOBase, what: str) -> bytes:
    line = rfile.readline(MAX_LINE + 1)
    if not line.endswith(b"\r\n"):
        problem = "too long" if len(line) > MAX_LINE else "not ended by CRLF" if line else "missing"
        raise _malformed(f"chunked body: {what} line {problem}")
    return line[:-2]


def _read_chunked(rfile: BufferedIOBase, limit: int, drain: int, counted: _Counted) -> bytearray:
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
        counted.announce(size)
        if total + size > limit:
            discarding, refused = True, None  # 413, whatever else was wrong
            body = bytearray()  # what was read is no longer needed
            counted.release()
        total += size
        if discarding:
            if total > drain:
                raise refused or _too_large(None, limit)
            _discard(rfile, size)
        else:
            left = size
            while left:  # a large chunk in pieces, each counted as it comes: no copy of it beside the buffer
                piece = rfile.read1(min(left, _PIECE))
                if not piece:
                    raise _malformed(f"chunked body: a chunk ended after {size - left:,} of {size:,} bytes")
                left -= len(piece)
                try:
                    counted.use(len(piece))
                except RefusedError as e:
                    discarding, refused = True, BodyError(e.reason, e.message)
                    body = bytearray()
                    counted.release()
                    _discard(rfile, left)
                    break
                body += piece
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
        piece = rfile.read(min(n, _PIECE))
        if not piece:
            return
        n -= len(piece)
