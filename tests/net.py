"""Loopback helpers for tests that start servers in other processes."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback port free right now (a child process binds it next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
