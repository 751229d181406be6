"""One evaluator at a time per store: a lease recorded in the audit trail itself.

An evaluator holds the lease while its latest `lease` row in `clinotel_alert_events` (Rule empty,
Receiver = the holder, Value = until when, in seconds since the epoch) has not expired and no
`lease_release` row of its own came after it. Before a pass an evaluator reads the other holders'
rows: while another one's lease runs, it skips the pass (the other evaluator does the work). Else
it writes its claim and reads again; if another claim appeared meanwhile, both withdraw (a
`lease_release` each) and try again at their next pass, so at most one evaluates: two evaluators on
one store never page twice. A holder renews its lease at every pass and releases it when it stops;
one that dies holding it is replaced once the lease expires.

Embedded store: the engine admits one process per data directory, so evaluators are already one
at a time (`serve --rules`, or `alerts evaluate --data-dir` when no collector runs); the lease
costs two rows per pass. ClickHouse server: the lease is what keeps a `serve --rules` and a cron
`alerts evaluate --server`, or two replicas of the evaluator, from both paging. It relies on a
row being readable once its INSERT returned (a single server, or a cluster whose inserts are
synchronous: `insert_quorum`, `select_sequential_consistency`).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from clinotel.model import tables
from clinotel.model.sql import identifier

__all__ = ["DEFAULT_LEASE_S", "LEASE", "RELEASE", "Lease", "LeaseHeld"]

logger: Final = logging.getLogger("clinotel.alerts")
LEASE: Final = "lease"
RELEASE: Final = "lease_release"
DEFAULT_LEASE_S: Final = 120.0
"""A single pass's lease (`--once`): long enough for a slow pass, short enough that a run that
crashed holding it delays the next cron run by two minutes at most."""


@dataclass(frozen=True)
class LeaseHeld:
    """Another evaluator's lease."""

    holder: str
    until: datetime


class Lease:
    """This evaluator's claim on `database`'s evaluation; `reader.query` reads, `writer.insert` writes."""

    def __init__(
        self,
        reader: Any,
        writer: Any,
        database: str,
        ttl_s: float,
        holder: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.table = f"{identifier(database)}.{identifier(tables.ALERT_EVENTS)}"
        self.ttl_s = ttl_s
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.clock = clock
        self.held = False

    def _others(self) -> list[LeaseHeld]:
        now = self.clock()
        rows = self.reader.query(
            f"SELECT Receiver, argMax(Event, Timestamp), argMax(Value, Timestamp) FROM {self.table} "
            f"WHERE Rule = '' AND Event IN ('{LEASE}', '{RELEASE}') "
            f"AND Timestamp >= fromUnixTimestamp64Milli(toInt64({int((now - 2 * self.ttl_s - 3600) * 1000)}), 'UTC') "
            "GROUP BY Receiver"
        ).result_rows
        return [
            LeaseHeld(str(holder), datetime.fromtimestamp(float(until), UTC))
            for holder, event, until in rows
            if holder != self.holder and event == LEASE and until is not None and float(until) > now
        ]

    def _write(self, event: str, until: float) -> None:
        now = datetime.fromtimestamp(self.clock(), UTC)
        detail = f"evaluator lease until {datetime.fromtimestamp(until, UTC):%Y-%m-%d %H:%M:%S} UTC"
        row: tuple[Any, ...] = (now, "", "", {}, event, "", until, 0, None, self.holder, 0, detail)
        self.writer.insert(self.table, [row], column_names=list(tables.ALERT_EVENT_COLUMNS))

    def acquire(self) -> LeaseHeld | None:
        """Claim (or renew) the lease: None when this evaluator holds it now, else who does."""
        others = self._others()
        if others:
            self.held = False
            return max(others, key=lambda o: o.until)
        self._write(LEASE, self.clock() + self.ttl_s)
        others = self._others()
        if others:  # claimed at the same moment: both withdraw, and try again next time
            self._write(RELEASE, self.clock())
            self.held = False
            return max(others, key=lambda o: o.until)
        self.held = True
        return None

    def release(self) -> None:
        """Give the lease up (an evaluator that stops)."""
        if self.held:
            try:
                self._write(RELEASE, self.clock())
            except Exception as e:  # noqa: BLE001 - it expires by itself
                logger.warning("could not release the evaluator lease (it expires in %.0f s): %s", self.ttl_s, e)
            self.held = False
