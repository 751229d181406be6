"""The rollups hold the hours a DateTime holds (1970 to 2105): a span or workflow another pipeline
stored past them (`otel_traces` keeps DateTime64 instants up to 2262) is left out of every rollup,
not counted in a wrapped hour of 1970, nor joined to a workflow of now (its rework minutes, the
model version a report is judged against)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from clinotel.collector.service import Collector
from clinotel.collector.store import rollups as refresher
from clinotel.collector.store import schema
from clinotel.model.tables import ROLLUP_TABLES
from collector.tests.fixtures import WRITE_TOKEN
from collector.tests.test_workflow_hours import _rows
from dashboards.tests.demo_data import load_demo


def _rollups(client: Any, o: schema.SchemaOptions) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every rollup, each state as the figure it gives."""
    return {t: _rows(client, o, t) for t in ROLLUP_TABLES}


def _copy_years_on(client: Any, o: schema.SchemaOptions, years: int, tag: int) -> None:
    """Every span of this century again `years` later, with new trace ids (as another pipeline
    writing the same table would store them)."""
    shift = f"toIntervalYear({years})"
    trace = f"concat(substring(TraceId, 1, 24), leftPad(hex(toUInt32({tag})), 8, '0'))"
    rewrite = {
        "Timestamp": f"Timestamp + {shift}",
        "TraceId": trace,
        "Events.Timestamp": f"arrayMap(t -> t + {shift}, `Events.Timestamp`)",
        "Links.TraceId": f"arrayMap(t -> if(t = '', t, concat(substring(t, 1, 24), leftPad(hex(toUInt32({tag})), 8, "
        "'0'))), `Links.TraceId`)",
    }
    columns = ", ".join(f"`{c}`" for c in schema.TRACES_INSERT_COLUMNS)
    select = ", ".join(rewrite.get(c, f"`{c}`") for c in schema.TRACES_INSERT_COLUMNS)
    traces = o.name(schema.TRACES)
    client.command(
        f"INSERT INTO {traces} ({columns}) SELECT {select} FROM {traces} "
        "WHERE Timestamp < toDateTime64('2100-01-01', 9, 'UTC')"
    )


def test_spans_past_the_years_a_datetime_holds_leave_every_rollup_as_it_was(collector: Collector) -> None:
    load_demo(collector, WRITE_TOKEN, workflows=300)  # refreshes the rollups once everything is stored
    client, o = collector.client, collector.options
    before = _rollups(client, o)
    assert all(before.values()), [t for t, rows in before.items() if not rows]
    spans = int(client.command(f"SELECT count() FROM {o.name(schema.TRACES)}"))
    _copy_years_on(client, o, 80, 1)  # 2106: past a DateTime's last second (2106-02-07), wraps to 1970
    _copy_years_on(client, o, 176, 2)  # 2202: past a Date's last day too
    assert int(client.command(f"SELECT count() FROM {o.name(schema.TRACES)}")) == 3 * spans
    refresher.refresh(client, o)
    assert _rollups(client, o) == before
    refresher.refresh(client, o, (datetime.now(UTC) - timedelta(days=7)).date())
    assert _rollups(client, o) == before
