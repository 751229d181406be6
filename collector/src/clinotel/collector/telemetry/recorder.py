"""The collector's figures as rows in ClickHouse, so the telemetry-health dashboard and the
alerts read them with the same SQL as everything else.

Every interval one row per sample goes to `clinotel_collector_metrics`: counters as their
increase since the previous row (so `sum(Value)` over any window is the count in that window,
across restarts), gauges and quantiles as they stand. Rows are collector-wide (`TenantId` is
empty): operators read them; a tenant's reader sees none.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from clinotel.collector.store import schema
from clinotel.collector.telemetry.metrics import Family
from clinotel.model.threads import guarded

__all__ = ["COLUMNS", "MetricsRecorder"]

logger: Final = logging.getLogger("clinotel.collector")
COLUMNS: Final = ("Timestamp", "TenantId", "Instance", "Metric", "Labels", "Kind", "Value")


class MetricsRecorder:
    """Writes `collect()` to `clinotel_collector_metrics` every `interval_s`, and once more on stop."""

    def __init__(
        self,
        client: Any,
        options: schema.SchemaOptions,
        collect: Callable[[], list[Family]],
        instance: str | None = None,
        interval_s: float = 10.0,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        """`on_error` hears every failed write (after it is logged): the collector learns from it
        that its embedded engine failed while nothing else was writing."""
        self.client = client
        self.on_error = on_error
        self.table = options.name(schema.COLLECTOR_METRICS)
        self.collect = collect
        self.instance = instance or socket.gethostname()
        self.interval_s = interval_s
        self._previous: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def rows(self, now: datetime) -> list[tuple[Any, ...]]:
        """This interval's rows; counters become increases since the last call."""
        rows = []
        for family in self.collect():
            for s in family.samples:
                key = (s.name, s.labels)
                if s.counter:
                    value = s.value - self._previous.get(key, 0.0)
                    self._previous[key] = s.value
                    kind = "counter"
                else:
                    value, kind = s.value, "gauge"
                rows.append((now, "", self.instance, s.name, dict(s.labels), kind, float(value)))
        return rows

    def record(self) -> int:
        """Write one interval's rows now; returns how many. A failure is logged, not raised: the
        increases are kept and land with the next interval."""
        with self._lock:
            previous = dict(self._previous)
            rows = self.rows(datetime.now(UTC))
            try:
                self.client.insert(self.table, rows, column_names=list(COLUMNS))
                return len(rows)
            except Exception as e:  # noqa: BLE001 - self-telemetry never stops the collector
                self._previous = previous
                logger.warning("could not record the collector's metrics: %s", e)
                failed = e
        if self.on_error is not None:  # outside the lock: the listener may stop the collector
            self.on_error(failed)
        return 0

    def _run(self) -> None:
        next_at = time.monotonic() + self.interval_s
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            self.record()
            next_at += self.interval_s

    def start(self, on_failure: Callable[[str], None] | None = None) -> None:
        """Record every interval in a thread; `on_failure` hears if that thread ever dies."""
        self._thread = guarded(self._run, "clinotel-self-telemetry", on_failure or (lambda reason: None))
        self._thread.start()

    def stop(self, record: bool = True, wait: bool = True) -> None:
        """Stop the thread (waiting for a write in flight unless not `wait`) and, with `record`,
        write the last interval's rows."""
        self._stop.set()
        if wait and self._thread is not None:
            self._thread.join(timeout=10)
        if record:
            self.record()
