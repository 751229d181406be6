"""Panels built from the shared indicators, the dashboard filters, and a grid layout."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import grafanalib.core as g

from clinotel.dashboards._grafana import ClickHouseTarget, Variable, finish
from clinotel.dashboards.annotations import changes_annotation
from clinotel.model import rollups
from clinotel.model.indicators import INDICATORS, Indicator
from clinotel.model.sql import identifier, literal

__all__ = [
    "FILTERS",
    "Board",
    "Source",
    "indicator_series",
    "indicator_source",
    "indicator_stat",
    "variables",
    "where_filters",
]

FILTERS: Final = (
    ("tenant", "Tenant", "TenantId"),
    ("kind", "Workflow kind", "WorkflowKind"),
    ("site", "Site", "Site"),
    ("department", "Department", "Department"),
    ("model_version", "Model version", "ModelVersion"),
    ("cohort", "Rollout cohort", "RolloutCohort"),
)
"""Template variables: (name, label, column of the clinical views)."""


def variables(database: str) -> list[Variable]:
    """The template variables: each filter's values among the workflows of the range, read from the
    hourly rollup (every filter column is one of its dimensions)."""
    table = f"{identifier(database)}.{identifier(rollups.WORKFLOW_HOURS)}"
    return [
        Variable(
            name,
            label,
            f"SELECT DISTINCT {column} FROM {table} WHERE {rollups.time_filter()} AND {column} != '' ORDER BY 1",
        )
        for name, label, column in FILTERS
    ]


def where_filters(columns: Sequence[str] | None = None) -> str:
    """The template-variable conditions for the filters whose columns the table has."""
    return " AND ".join(
        f"$__conditionalAll({column} IN (${{{name}:singlequote}}), ${name})"
        for name, _, column in FILTERS
        if columns is None or column in columns
    )


def _columns(by: str | Sequence[str] | None) -> tuple[str, ...]:
    return () if by is None else (by,) if isinstance(by, str) else tuple(by)


@dataclass(frozen=True)
class Source:
    """Where a panel on an indicator reads it: the hourly rollup where it holds the indicator
    (`clinotel.model.rollups`), else the indicator's own view."""

    table: str
    time_column: str
    time_filter: str
    where: str
    value: str
    sample: str
    columns: dict[str, str] = field(default_factory=dict)
    """The SQL of a column `by` names, where it is not the column itself."""


def indicator_source(i: Indicator, database: str, by: Sequence[str] = ()) -> Source:
    """Where the panels on `i` (grouped by the columns `by`) read it."""
    if rollups.rolled_up(i, by):
        table = f"{identifier(database)}.{identifier(rollups.WORKFLOW_HOURS)}"
        return Source(table, rollups.TIME_COLUMN, rollups.time_filter(), "1", rollups.value(i), rollups.sample(i))
    dimension = rollups.cohort_dimension(i, by)
    if dimension is not None:
        table = f"{identifier(database)}.{identifier(rollups.COHORT_HOURS)}"
        return Source(table, rollups.TIME_COLUMN, rollups.time_filter(), f"Dimension = {literal(dimension)}",
                      rollups.value(i), rollups.sample(i), {dimension: "Grp"})  # fmt: skip
    table = f"{identifier(database)}.{identifier(i.table)}{i.final}"
    return Source(table, i.time_column, f"$__timeFilter({i.time_column})", i.where, i.value, i.sample)


def indicator_series(i: Indicator, database: str, by: str | Sequence[str] | None = None) -> str:
    """Time series of an indicator (optionally one series per value of the columns `by`, such as
    rollout cohort and language: rates are not pooled across what `by` separates); an interval
    with fewer rows than the indicator's minimum sample is left out rather than drawn."""
    columns = _columns(by)
    s = indicator_source(i, database, columns)
    group = "".join(f", {c}" for c in columns)
    select_by = "".join(f", {s.columns.get(c, c)} AS {identifier(c)}" for c in columns)
    return (
        f"SELECT $__timeInterval({s.time_column}) AS time{select_by}, {s.value} AS {identifier(i.title)}\n"
        f"FROM {s.table}\n"
        f"WHERE {s.time_filter} AND ({s.where}) AND {where_filters()}"
        + "".join(f" AND {c} != ''" for c in columns)
        + f"\nGROUP BY time{group}\n"
        + (f"HAVING {s.sample} >= {max(5, i.min_sample // 6)}\n" if i.unit == "percentunit" else "")
        + "ORDER BY time"
    )


def indicator_stat(i: Indicator, database: str) -> str:
    """The indicator over the whole range, NULL (shown as "too few") below its minimum sample."""
    s = indicator_source(i, database)
    return (
        f"SELECT if({s.sample} >= {i.min_sample}, {s.value}, NULL) AS {identifier(i.title)}, "
        f"{s.sample} AS n\nFROM {s.table}\n"
        f"WHERE {s.time_filter} AND ({s.where}) AND {where_filters()}"
    )


@dataclass
class Board:
    """A dashboard being laid out: rows of panels, left to right, 24 columns wide."""

    uid: str
    title: str
    description: str
    database: str
    tags: list[str] = field(default_factory=list)
    _panels: list[g.Panel] = field(default_factory=list)
    _x: int = 0
    _y: int = 0
    _row_h: int = 0

    def _place(self, w: int, h: int) -> g.GridPos:
        if self._x + w > 24:
            self._x, self._y, self._row_h = 0, self._y + self._row_h, 0
        pos = g.GridPos(h=h, w=w, x=self._x, y=self._y)
        self._x += w
        self._row_h = max(self._row_h, h)
        return pos

    def row(self, title: str) -> None:
        if self._x:
            self._x, self._y, self._row_h = 0, self._y + self._row_h, 0
        self._panels.append(g.RowPanel(title=title, gridPos=g.GridPos(h=1, w=24, x=0, y=self._y)))
        self._y += 1

    def stat(self, name: str, w: int = 4) -> None:
        i = INDICATORS[name]
        self._panels.append(
            g.Stat(
                title=i.title,
                description=f"{i.description} Of: {i.denominator}."
                + (f" Shown as 'too few' under {i.min_sample} rows." if i.min_sample > 0 else ""),
                targets=[ClickHouseTarget(indicator_stat(i, self.database), "table")],
                gridPos=self._place(w, 4),
                format=i.unit,
                reduceCalc="lastNotNull",
                graphMode="none",
                noValue="too few",
                extraJson={"options": {"reduceOptions": {"fields": f"/^{i.title}$/"}}},
            )
        )

    def series(self, name: str, w: int = 12, by: str | Sequence[str] | None = None, title: str | None = None) -> None:
        i = INDICATORS[name]
        # rates on late ground truth are sparse: wider buckets, so each holds enough workflows
        columns = _columns(by)
        # the rollup holds hours: a finer interval would draw its hours as one point each
        interval = (
            "1h"
            if i.needs_ground_truth or indicator_source(i, self.database, columns).time_column == rollups.TIME_COLUMN
            else None
        )
        default = f"{i.title} by {' and '.join(columns)}" if columns else i.title
        self.timeseries(title or default, f"{i.description} Of: {i.denominator}.",
                        indicator_series(i, self.database, by), i.unit, w, interval)  # fmt: skip

    def timeseries(
        self, title: str, description: str, sql: str, unit: str = "short", w: int = 12, interval: str | None = None
    ) -> None:
        self._panels.append(
            g.TimeSeries(
                title=title,
                description=description,
                targets=[ClickHouseTarget(sql, "timeseries")],
                gridPos=self._place(w, 8),
                interval=interval,
                unit=unit,
                spanNulls=True,
                extraJson={"options": {"legend": {"displayMode": "table", "placement": "right"}}}
                if "GROUP BY time," in sql
                else {},
            )
        )

    def table(self, title: str, description: str, sql: str, w: int = 12, h: int = 8) -> None:
        self._panels.append(
            g.Table(
                title=title,
                description=description,
                targets=[ClickHouseTarget(sql, "table")],
                gridPos=self._place(w, h),
            )
        )

    def build(self) -> dict[str, Any]:
        dashboard = g.Dashboard(
            title=self.title,
            uid=self.uid,
            description=self.description,
            tags=["clinotel", *self.tags],
            panels=self._panels,
            time=g.Time("now-6h", "now"),
            refresh="1m",
            timezone="utc",
        ).auto_panel_ids()
        return finish(dashboard, variables(self.database), [changes_annotation(self.database)])
