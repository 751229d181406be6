"""Run every panel's SQL as Grafana would send it: macros and variables expanded by
`macros.expand`, against the embedded store or a server (a collector's --http port)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from clinotel.dashboards.macros import MacroError, TimeRange, expand

__all__ = ["PanelQuery", "PanelResult", "interval_seconds", "panel_queries", "run"]


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    sql: str
    min_interval_s: int = 0
    """The panel's minimum interval (its `interval`), which Grafana's $__interval never goes under."""


def interval_seconds(interval: str | None) -> int:
    match = re.fullmatch(r"(\d+)([smhd])", interval or "")
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)] if match else 0


@dataclass(frozen=True)
class PanelResult:
    query: PanelQuery
    rows: int
    ms: float
    error: str | None = None


def panel_queries(dashboards: dict[str, dict[str, Any]]) -> Iterator[PanelQuery]:
    """Every panel target's SQL (and every template variable's), unexpanded."""
    for name, data in dashboards.items():
        for variable in data.get("templating", {}).get("list", []):
            query = variable.get("query")
            if isinstance(query, dict):
                yield PanelQuery(name, f"${variable['name']}", query["rawSql"])
        for panel in data.get("panels", []):
            for target in panel.get("targets", []):
                if "rawSql" in target:
                    yield PanelQuery(
                        name, panel.get("title", "?"), target["rawSql"], interval_seconds(panel.get("interval"))
                    )


def run(client: Any, queries: list[PanelQuery], tr: TimeRange) -> Iterator[PanelResult]:
    """Each query expanded and run; an error is reported, not raised."""
    for q in queries:
        started = time.perf_counter()
        try:
            sql = expand(q.sql, replace(tr, interval_s=max(tr.interval_s, q.min_interval_s)))
            rows = len(client.query(sql).result_rows)
        except MacroError as e:
            yield PanelResult(q, 0, 0.0, f"macro: {e}")
            continue
        except Exception as e:  # noqa: BLE001 - every database error is a finding to report
            yield PanelResult(q, 0, (time.perf_counter() - started) * 1000, str(e).strip().splitlines()[0][:300])
            continue
        yield PanelResult(q, rows, (time.perf_counter() - started) * 1000)
