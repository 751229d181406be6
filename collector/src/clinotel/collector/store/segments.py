"""How a log segment reaches ClickHouse: a `SegmentStore` per kind of store. The writer owns the
order, the retries and the quarantine; a store owns the INSERT and says which failures are
ClickHouse refusing the segment (retried a few times, then set aside) rather than ClickHouse
being out of reach (retried for as long as it lasts).
"""

from __future__ import annotations

from typing import Any, Protocol

from clinotel.collector.log.wal import Segment
from clinotel.collector.store.pipeline import Pipeline

__all__ = ["EmbeddedSegments", "SegmentStore", "ServerSegments"]


class SegmentStore(Protocol):
    def insert(self, segment: Segment) -> None:
        """Store one sealed segment (deduplicated by its token); raise what ClickHouse raised."""

    def is_refusal(self, error: Exception) -> bool:
        """True when ClickHouse ran the insert and refused it, False when it could not be reached."""


def _clickhouse_refused(error: Exception) -> bool:
    from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

    return isinstance(error, DatabaseError) and not isinstance(error, OperationalError)


class EmbeddedSegments:
    """The embedded engine reads the segment's file itself, with the .proto from a file beside the log."""

    def __init__(self, client: Any, pipeline: Pipeline, proto_file: str) -> None:
        self.client = client
        self.pipeline = pipeline
        self.proto_file = proto_file

    def insert(self, segment: Segment) -> None:
        self.client.command(self.pipeline.insert_from_file(str(segment.path.resolve()), segment.token, self.proto_file))

    def is_refusal(self, error: Exception) -> bool:
        return _clickhouse_refused(error)


class ServerSegments:
    """A server gets the segment's bytes as the INSERT's body, with the .proto inline (`proto_name`
    None) or named in its format_schemas directory."""

    def __init__(self, client: Any, pipeline: Pipeline, proto_name: str | None) -> None:
        self.client = client
        self.pipeline = pipeline
        self.proto_name = proto_name

    def insert(self, segment: Segment) -> None:
        settings = self.pipeline.settings(segment.token, self.proto_name)
        with segment.path.open("rb") as body:
            self.client.raw_insert(self.pipeline.table, None, body, settings=settings, fmt="Protobuf")

    def is_refusal(self, error: Exception) -> bool:
        return _clickhouse_refused(error)
