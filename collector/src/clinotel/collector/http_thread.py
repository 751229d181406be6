"""A ThreadingHTTPServer run in a background thread, for the collector's HTTP ports."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer

__all__ = ["ServerThread"]


class ServerThread:
    """Runs `server` in a daemon thread; `stop` shuts it down and closes its socket."""

    def __init__(self, server: ThreadingHTTPServer, name: str) -> None:
        self._server = server
        self._name = name
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=self._name, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
