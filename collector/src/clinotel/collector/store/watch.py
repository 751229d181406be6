"""A watch on the embedded engine, so that the collector learns of its failure within seconds.

A crash in one of the engine's own threads leaves it refusing every new query ("shutting down due
to a fatal error"), but a query already running may wait forever on the thread that crashed: an
insert that schedules the engine's background work did (seen in CI, the writer hung in its insert
and the metrics behind it). The writer then never meets the failure, and a collector with no other
query running would acknowledge on until its log filled. The watch asks the engine for `SELECT 1`
every `interval_s`, on a client of its own: the first answer that means the engine is lost goes to
`on_lost`; a probe that has not come back after `stall_s` (an engine whose new queries hang too)
goes to `on_stalled`, from a second thread that only reads the clock. That thread counts the time
it saw one probe in flight tick by tick, and starts again after a tick that came late: a process
stopped meanwhile (SIGSTOP, `docker pause`, a debugger) has not seen its engine hang.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from clinotel.model.threads import guarded

__all__ = ["PROBE_INTERVAL_S", "STALL_S", "EngineWatch"]

logger: Final = logging.getLogger("clinotel.collector")

PROBE_INTERVAL_S: Final = 1.0
STALL_S: Final = 60.0
"""A `SELECT 1` this long in flight means the engine no longer answers (a busy engine answers it in
milliseconds: it reads no table and holds no lock)."""


class EngineWatch:
    """Probes the engine behind `client` until it is lost or the watch is stopped."""

    def __init__(
        self,
        client: Any,
        is_lost: Callable[[Exception], bool],
        on_lost: Callable[[Exception], None],
        on_stalled: Callable[[float], None],
        interval_s: float = PROBE_INTERVAL_S,
        stall_s: float = STALL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`is_lost` tells a failure that means the engine takes nothing more from this process
        (`store.segments.engine_failed`) from one that passes (a probe at the memory cap);
        `on_stalled` hears how long the probe in flight has waited."""
        self.client = client
        self.is_lost = is_lost
        self.on_lost = on_lost
        self.on_stalled = on_stalled
        self.interval_s = interval_s
        self.stall_s = stall_s
        self.clock = clock
        self.probes = 0
        self._asked_at: float | None = None
        """`clock()` when the probe in flight was sent; None between probes."""
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def probe(self) -> Exception | None:
        """One probe now: the error that says the engine is lost, else None."""
        self.probes += 1
        self._asked_at = self.clock()
        try:
            self.client.command("SELECT 1")
        except Exception as e:  # noqa: BLE001 - only a lost engine matters here
            if self.is_lost(e):
                return e
            logger.debug("engine probe failed: %s", e)
        finally:
            self._asked_at = None
        return None

    def stalled_for(self) -> float:
        """How long the probe in flight has waited by the clock (0 between probes)."""
        asked = self._asked_at
        return 0.0 if asked is None else self.clock() - asked

    def _probe_until_lost(self) -> None:
        while not self._stop.wait(self.interval_s):
            if (lost := self.probe()) is not None:
                self.on_lost(lost)
                return

    def _time_the_probes(self) -> None:
        tick = min(1.0, self.stall_s / 4)
        seen: int | None = None  # the probe in flight at the last tick
        waited = 0.0
        last = self.clock()
        while not self._stop.wait(tick):
            now = self.clock()
            on_time, last = now - last <= 2 * tick, now
            probe = self.probes if self._asked_at is not None else None
            if probe is None or probe != seen or not on_time:
                seen, waited = probe, 0.0
                continue
            waited += tick
            if waited >= self.stall_s:
                self.on_stalled(waited)
                return

    def start(self, on_failure: Callable[[str], None]) -> None:
        """Probe in a thread, and time the probes in another; `on_failure` hears if either dies."""
        self._threads = [
            guarded(self._probe_until_lost, "clinotel-engine-watch", on_failure),
            guarded(self._time_the_probes, "clinotel-engine-watch-timer", on_failure),
        ]
        for thread in self._threads:
            thread.start()

    @property
    def running(self) -> bool:
        """Whether a probe may still be in flight (the probing thread has not ended)."""
        return bool(self._threads) and self._threads[0].is_alive()

    def stop(self, wait: bool = True) -> None:
        """Stop probing; `wait` for a probe in flight (not when the engine is lost: it may never end)."""
        self._stop.set()
        if wait:
            for thread in self._threads:
                thread.join(timeout=5)
