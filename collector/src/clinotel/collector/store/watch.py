"""A watch on the embedded engine, so that the collector learns of its failure within a second.

A crash in one of the engine's own threads leaves it refusing every new query ("shutting down due
to a fatal error"), but a query already running may wait forever on the thread that crashed: an
insert that schedules the engine's background work did (seen in CI, the writer hung in its insert
and the metrics behind it). The writer then never meets the failure, and a collector with no other
query running would acknowledge on until its log filled. The watch asks the engine for `SELECT 1`
every `interval_s`, on a client of its own, and hands the first failure that means the engine is
lost to `on_lost`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Final

from clinotel.model.threads import guarded

__all__ = ["PROBE_INTERVAL_S", "EngineWatch"]

logger: Final = logging.getLogger("clinotel.collector")

PROBE_INTERVAL_S: Final = 1.0


class EngineWatch:
    """Probes the engine behind `client` until it is lost or the watch is stopped."""

    def __init__(
        self,
        client: Any,
        is_lost: Callable[[Exception], bool],
        on_lost: Callable[[Exception], None],
        interval_s: float = PROBE_INTERVAL_S,
    ) -> None:
        """`is_lost` tells a failure that means the engine takes nothing more from this process
        (`store.segments.engine_failed`) from one that passes (a probe at the memory cap)."""
        self.client = client
        self.is_lost = is_lost
        self.on_lost = on_lost
        self.interval_s = interval_s
        self.probes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def probe(self) -> Exception | None:
        """One probe now: the error that says the engine is lost, else None."""
        self.probes += 1
        try:
            self.client.command("SELECT 1")
        except Exception as e:  # noqa: BLE001 - only a lost engine matters here
            if self.is_lost(e):
                return e
            logger.debug("engine probe failed: %s", e)
        return None

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            if (lost := self.probe()) is not None:
                self.on_lost(lost)
                return

    def start(self, on_failure: Callable[[str], None]) -> None:
        """Probe in a thread; `on_failure` hears if that thread ever dies."""
        self._thread = guarded(self._run, "clinotel-engine-watch", on_failure)
        self._thread.start()

    def stop(self, wait: bool = True) -> None:
        """Stop probing; `wait` for a probe in flight (not when the engine is lost: it may never end)."""
        self._stop.set()
        if wait and self._thread is not None:
            self._thread.join(timeout=5)
