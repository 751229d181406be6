"""Exclusive listeners: a port another process listens on is refused with one clear line.

Every listener of the collector binds before anything else is created (the store, the log), so
a port clash stops `clinotel serve` with nothing left behind. None of them shares its port:
the HTTP servers bind without `SO_REUSEPORT`, and gRPC's default `SO_REUSEPORT` is turned off, so a
second collector on the same gRPC port is refused instead of silently taking half the exports.
"""

from __future__ import annotations

import errno
import socket
from typing import Final

__all__ = ["MAX_PORT", "ListenError", "check_free", "listen_error", "url_host"]

MAX_PORT: Final = 65535
_WHY: Final = {
    errno.EADDRINUSE: "the address is already in use (another collector or program listens there)",
    errno.EACCES: "permission denied (ports below 1024 need privileges)",
    errno.EADDRNOTAVAIL: "that address is not one of this machine's",
}


class ListenError(RuntimeError):
    """A listener that cannot be opened."""


def url_host(host: str) -> str:
    """`host` as a URL or `host:port` writes it: an IPv6 address in brackets (`[::1]`)."""
    return f"[{host}]" if ":" in host else host


def listen_error(label: str, host: str, port: int, error: OSError) -> ListenError:
    """The one-line refusal for `error` while binding `label` on host:port."""
    if isinstance(error, socket.gaierror):
        why = f"unknown host {host!r}"
    else:
        why = _WHY.get(error.errno or 0, error.strerror or str(error))
    return ListenError(f"cannot listen on {url_host(host)}:{port} for {label}: {why}")


def check_free(label: str, host: str, port: int) -> None:
    """Raise ListenError unless host:port can be bound exclusively now (for servers, such as
    gRPC's, that report a failed bind only as text)."""
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise listen_error(label, host, port, e) from None
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
            try:
                probe.bind(address)
            except OSError as e:
                raise listen_error(label, host, port, e) from None
