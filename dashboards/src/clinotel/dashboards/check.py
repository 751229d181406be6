"""Run every panel's SQL as Grafana would send it: the panel's interval as Grafana computes it
(`interval.panel_interval`), macros and variables expanded by `macros.expand` with All selected,
against the embedded store or a server (a collector's --http port)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from clinotel.dashboards.interval import IntervalError, panel_interval
from clinotel.dashboards.macros import ALL, MacroError, TimeRange, expand
from clinotel.model.store import first_line

__all__ = ["PanelQuery", "PanelResult", "data_range", "panel_queries", "panel_range", "run"]


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    sql: str
    grid: Mapping[str, Any] | None = None
    """The panel's JSON fields that decide its interval (`maxDataPoints`, `interval`, `gridPos`);
    None for a template variable's query, which has no interval."""
    variables: tuple[str, ...] = field(default=())
    """The dashboard's template variables (each checked with All selected)."""


@dataclass(frozen=True)
class PanelResult:
    query: PanelQuery
    rows: int
    ms: float
    error: str | None = None


def panel_queries(dashboards: dict[str, dict[str, Any]]) -> Iterator[PanelQuery]:
    """Every panel target's SQL (and every template variable's and annotation's), unexpanded."""
    for name, data in dashboards.items():
        names = tuple(v["name"] for v in data.get("templating", {}).get("list", []))
        for variable in data.get("templating", {}).get("list", []):
            query = variable.get("query")
            if isinstance(query, dict):
                yield PanelQuery(name, f"${variable['name']}", query["rawSql"], None, names)
        for annotation in data.get("annotations", {}).get("list", []):
            target = annotation.get("target")
            if isinstance(target, dict) and "rawSql" in target:
                yield PanelQuery(name, f"annotation {annotation['name']}", target["rawSql"], None, names)
        for panel in data.get("panels", []):
            grid = {k: panel[k] for k in ("maxDataPoints", "interval", "gridPos") if k in panel}
            for target in panel.get("targets", []):
                if "rawSql" in target:
                    yield PanelQuery(name, panel.get("title", "?"), target["rawSql"], grid, names)


def panel_range(grid: Mapping[str, Any] | None, variables: tuple[str, ...], tr: TimeRange) -> TimeRange:
    """`tr` for one query: the interval Grafana gives its panel (`grid`: the panel's JSON, None
    for a variable's query) and its dashboard's `variables`, All unless `tr` selects something."""
    interval = None if grid is None else panel_interval(grid, tr.start, tr.end).ms
    if not variables:
        return replace(tr, interval_ms=interval)
    chosen = tr.variables or {}
    return replace(tr, interval_ms=interval, variables={name: chosen.get(name, [ALL]) for name in variables})


def data_range(client: Any, database: str) -> tuple[datetime, datetime] | None:
    """The data's own range: from the first workflow's start to the end of the last clinical span
    (a late outcome included), rounded out to whole seconds, so every span of every workflow is
    inside (`$__timeFilter` compares whole seconds); None for a store without workflows. Raises
    what the store raises."""
    from clinotel.model import clinical
    from clinotel.model.sql import identifier

    db = identifier(database)
    (first,) = client.query(f"SELECT min(StartTime) FROM {db}.{identifier(clinical.WORKFLOWS)}").result_rows[0]
    (last,) = client.query(
        "SELECT max(Timestamp + toIntervalNanosecond(toInt64(DurationMs * 1e6))) "
        f"FROM {db}.{identifier(clinical.STAGE_SPANS)}"
    ).result_rows[0]
    if first is None or first.year < 2000:
        return None
    start = first.replace(tzinfo=UTC, microsecond=0)
    end = last.replace(tzinfo=UTC)
    end = end.replace(microsecond=0) + timedelta(seconds=1 if end.microsecond else 0)
    return start, max(end, start + timedelta(seconds=1))


def run(client: Any, queries: list[PanelQuery], tr: TimeRange) -> Iterator[PanelResult]:
    """Each query expanded and run; an error is reported, not raised."""
    for q in queries:
        started = time.perf_counter()
        try:
            sql = expand(q.sql, panel_range(q.grid, q.variables, tr))
            rows = len(client.query(sql).result_rows)
        except (MacroError, IntervalError) as e:
            yield PanelResult(q, 0, 0.0, f"macro: {e}")
            continue
        except Exception as e:  # noqa: BLE001 - every database error is a finding to report
            yield PanelResult(q, 0, (time.perf_counter() - started) * 1000, first_line(e))
            continue
        yield PanelResult(q, rows, (time.perf_counter() - started) * 1000)
