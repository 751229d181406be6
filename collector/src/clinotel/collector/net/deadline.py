"""A connection's reader with a deadline: every read waits at most what is left of it."""

from __future__ import annotations

import io
import socket
import time

__all__ = ["DeadlineReader"]


class DeadlineReader(io.BufferedIOBase):
    """A request's body stream that ends at `deadline` (monotonic): every read, lines included,
    waits at most what is left, however slowly the bytes trickle in (the socket's own timeout
    bounds each read alone: a byte every 29 s passed it for ever); past it, TimeoutError. The
    deadline may be moved (`deadline`) as more of the body is announced."""

    def __init__(self, rfile: object, connection: socket.socket, deadline: float) -> None:
        super().__init__()
        self._rfile: io.BufferedReader = rfile  # type: ignore[assignment]  # StreamRequestHandler's rfile
        self._connection = connection
        self.deadline = deadline
        self._per_read = connection.gettimeout()

    def readable(self) -> bool:
        return True

    def _arm(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request body took too long")
        self._connection.settimeout(left if self._per_read is None else min(left, self._per_read))

    def restore(self) -> None:
        """Give the connection its own timeout back (between requests)."""
        self._connection.settimeout(self._per_read)

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            raise ValueError("a request body is read in bounded pieces")
        out = bytearray()
        while len(out) < size:
            self._arm()
            piece = self._rfile.read1(size - len(out))
            if not piece:
                break
            out += piece
        return bytes(out)

    def read1(self, size: int = -1) -> bytes:
        self._arm()
        return self._rfile.read1(size if size >= 0 else 1 << 16)

    def readline(self, size: int | None = -1) -> bytes:
        limit = size if size is not None and size >= 0 else 1 << 62
        out = bytearray()
        while len(out) < limit:
            self._arm()
            buffered = self._rfile.peek(1)[: limit - len(out)]
            if not buffered:
                break
            newline = buffered.find(b"\n")
            out += self._rfile.read(newline + 1 if newline >= 0 else len(buffered))
            if newline >= 0:
                break
        return bytes(out)
