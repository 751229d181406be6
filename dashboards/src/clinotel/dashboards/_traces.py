"""Filters and panels over `otel_traces` rows (issue 17's signals, drift and feedback), whose
attributes are read from the span's map rather than from a view's columns."""

from __future__ import annotations

from typing import Final

from clinotel.dashboards._panels import where_filters
from clinotel.model import rollups
from clinotel.model.signals import KIND, Signal, attr
from clinotel.model.sql import literal
from clinotel.semconv import attributes as A

__all__ = ["TRACE_FILTERS", "rollup_filters", "signal_hours_series", "signal_series", "trace_filters"]

TRACE_FILTERS: Final = (
    ("tenant", "TenantId"),
    ("kind", KIND),
    ("site", attr(A.SITE.key)),
    ("department", attr(A.DEPARTMENT.key)),
)
"""The dashboards' template variables that `otel_traces` rows can answer: (name, SQL)."""


def trace_filters() -> str:
    """The template-variable conditions on `otel_traces` rows."""
    return " AND ".join(
        f"$__conditionalAll({sql} IN (${{{name}:singlequote}}), ${name})" for name, sql in TRACE_FILTERS
    )


def signal_series(s: Signal, table: str, by: str | None = None) -> str:
    """A signal per time interval (and per value of SQL `by`), intervals under 5 rows left out."""
    select_by = f", {by} AS grp" if by else ""
    group = ", grp" if by else ""
    return (
        f"SELECT $__timeInterval(Timestamp) AS time{select_by}, {s.value} AS `{s.title}`\n"
        f"FROM {table}\nWHERE $__timeFilter(Timestamp) AND ({s.where}) AND {trace_filters()}\n"
        f"GROUP BY time{group}\nHAVING {s.sample} >= 5\nORDER BY time"
    )


def rollup_filters(*, hours: bool = True) -> str:
    """The template-variable conditions on the signal rollup's columns, and (unless `hours` is
    false) the dashboard's range on its hours."""
    filters = where_filters(rollups.SIGNAL_DIMENSIONS)
    return f"{rollups.time_filter()} AND {filters}" if hours else filters


def signal_hours_series(s: Signal, table: str, by: str | None = None) -> str:
    """A data-quality signal per interval (and per value of the rollup's column `by`) from the
    qualified signal rollup `table`, intervals under 5 rows left out: `signal_series` from hours."""
    select_by = f", {by} AS grp" if by else ""
    group = ", grp" if by else ""
    return (
        f"SELECT $__timeInterval({rollups.TIME_COLUMN}) AS time{select_by}, "
        f"sum(Hits) / nullIf(sum(Rows), 0) AS `{s.title}`\n"
        f"FROM {table}\nWHERE Signal = {literal(s.name)} AND {rollup_filters()}\n"
        f"GROUP BY time{group}\nHAVING sum(Rows) >= 5\nORDER BY time"
    )
