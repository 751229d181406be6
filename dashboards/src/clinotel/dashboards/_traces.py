"""Filters and panels over `otel_traces` rows (issue 17's signals, drift and feedback), whose
attributes are read from the span's map rather than from a view's columns."""

from __future__ import annotations

from typing import Final

from clinotel.model.signals import KIND, Signal, attr
from clinotel.semconv import attributes as A

__all__ = ["TRACE_FILTERS", "signal_series", "trace_filters"]

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
