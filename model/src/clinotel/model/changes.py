"""Change events as the store holds them: `clinotel.change` spans in `otel_traces`, read by the
report, pages and tickets ("what changed in the last N hours") and the release gate; any OTLP
pipeline that fills `otel_traces` carries them. The dashboards' annotations read `clinotel_changes`
(migration 19): the same events, one row each with their fields as columns, recomputed from the
spans with the rollups (`refresh_select`): over `otel_traces` an annotation opened every
day-partition of the dashboard's range (270 parts at 10M spans over 8 months: 210-240 ms a load,
growing with retention, however few the changes). A change shows there one refresh later, as the
panels' figures do."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from clinotel.model.rollups import hour_of
from clinotel.model.sql import held_since, identifier, literal
from clinotel.model.tables import CHANGES, TRACES
from clinotel.model.terminal import printable
from clinotel.semconv import attributes as A

__all__ = [
    "COLUMNS",
    "SCOPE_COLUMNS",
    "Change",
    "annotation_sql",
    "changes_sql",
    "describe",
    "recent_changes",
    "refresh_select",
]

_ATTRS: Final = {
    "Kind": A.CHANGE_KIND,
    "Name": A.CHANGE_NAME,
    "Version": A.CHANGE_VERSION,
    "Actor": A.CHANGE_ACTOR,
    "Site": A.SITE,
    "Department": A.DEPARTMENT,
    "WorkflowKind": A.CHANGE_WORKFLOW_KIND,
    "Stage": A.CHANGE_STAGE,
    "Result": A.CHANGE_RESULT,
}
COLUMNS: Final = ("Timestamp", "TenantId", "ServiceName", *_ATTRS)
"""What `changes_sql` selects, in order."""
SCOPE_COLUMNS: Final = {"site": "Site", "department": "Department", "workflow_kind": "WorkflowKind", "stage": "Stage"}
"""A change's scope keys -> their columns; an empty column means every value."""


def _select(traces: str) -> str:
    """The change events in the qualified span table `traces`, `COLUMNS` each."""
    attrs = ", ".join(f"SpanAttributes[{literal(d.key)}] AS {identifier(c)}" for c, d in _ATTRS.items())
    return (
        f"SELECT Timestamp, TenantId, ServiceName, {attrs}\n"
        f"FROM {traces}\nWHERE SpanName = {literal(A.CHANGE_SPAN_NAME)}"
    )


def refresh_select(traces: str, since: str | None) -> str:
    """The `clinotel_changes` rows, in its columns' order, of the change events in the qualified
    span table `traces` at or after SQL instant `since` (every one when None) and within the years
    a DateTime holds."""
    after = f" AND {held_since('Timestamp', since)}"
    columns = ", ".join(identifier(c) for c in COLUMNS if c != "TenantId")
    return f"SELECT TenantId, {hour_of('Timestamp')}, {columns}\nFROM (\n{_select(traces)}{after}\n)"


def changes_sql(
    database: str,
    since: datetime,
    until: datetime,
    *,
    tenant: str | None = None,
    scope: Mapping[str, str] | None = None,
    kinds: tuple[str, ...] = (),
) -> str:
    """Changes in [since, until) for `tenant` (None: every tenant the reader may see) that apply
    to `scope` (a change scoped to nothing applies everywhere; one scoped to site `north` applies
    to `north` only), oldest first."""
    conditions = [
        f"Timestamp >= fromUnixTimestamp64Milli({_ms(since)})",
        f"Timestamp < fromUnixTimestamp64Milli({_ms(until)})",
    ]
    if tenant is not None:
        conditions.append(f"TenantId = {literal(tenant)}")
    for key, value in (scope or {}).items():
        if key not in SCOPE_COLUMNS:
            raise ValueError(f"unknown change scope {key!r}; known: {', '.join(SCOPE_COLUMNS)}")
        column = f"SpanAttributes[{literal(_ATTRS[SCOPE_COLUMNS[key]].key)}]"
        conditions.append(f"({column} = '' OR {column} = {literal(value)})")
    if kinds:
        conditions.append(f"SpanAttributes[{literal(A.CHANGE_KIND.key)}] IN ({', '.join(map(literal, kinds))})")
    traces = f"{identifier(database)}.{identifier(TRACES)}"
    return f"{_select(traces)} AND " + " AND ".join(conditions) + "\nORDER BY Timestamp"


def annotation_sql(database: str) -> str:
    """The Grafana annotation query (the ClickHouse plugin's: columns `time`, `title`, `text`,
    `tags`) of every change in the dashboard's range and filters; a change scoped to a site is
    shown unless the site filter excludes it."""
    where = ["$__conditionalAll(TenantId IN (${tenant:singlequote}), $tenant)"]
    for variable, column in (("site", "Site"), ("department", "Department"), ("kind", "WorkflowKind")):
        where.append(f"({column} = '' OR $__conditionalAll({column} IN (${{{variable}:singlequote}}), ${variable}))")
    # a kill switch's dry run, or one that failed, is not drawn as a change that happened
    outcome = "if(Result IN ('', 'applied'), '', concat(' [', replaceAll(Result, '_', ' '), ']'))"
    return (
        f"SELECT Timestamp AS time, concat(Kind, ': ', Name, if(Version = '', '', concat(' -> ', Version)), "
        f"{outcome}) AS title,\n  concat('by ', if(Actor = '', 'unknown', Actor), ' (', ServiceName, ')') AS text, "
        "[Kind, Name] AS tags\n"
        f"FROM {identifier(database)}.{identifier(CHANGES)}\n"
        # the hour too, which the table is partitioned by: a range reads its months' parts only
        "WHERE Hour >= toStartOfHour($__fromTime) AND Hour <= $__toTime AND $__timeFilter(Timestamp) AND "
        + " AND ".join(where) + "\nORDER BY time"
    )  # fmt: skip


@dataclass(frozen=True)
class Change:
    """One change event."""

    timestamp: datetime
    tenant: str
    service: str
    kind: str
    name: str
    version: str = ""
    actor: str = ""
    site: str = ""
    department: str = ""
    workflow_kind: str = ""
    stage: str = ""
    result: str = ""

    @property
    def scope(self) -> dict[str, str]:
        """The scope keys it was recorded with."""
        values = {"site": self.site, "department": self.department}
        values |= {"workflow_kind": self.workflow_kind, "stage": self.stage}
        return {k: v for k, v in values.items() if v}

    def line(self) -> str:
        """One line: when, what, to what, by whom, where."""
        what = f"{self.kind} {self.name}" + (f" -> {self.version}" if self.version else "")
        where = ", ".join(f"{k}={v}" for k, v in self.scope.items()) or "everywhere"
        extra = f" [{self.result}]" if self.result else ""
        by = self.actor or self.service
        # one line whatever the stored text holds (a service name's CR/LF forged a line of its own)
        return printable(f"{self.timestamp:%Y-%m-%d %H:%M} UTC {what} by {by} ({where}){extra}")

    def to_json(self) -> dict[str, Any]:
        return {
            "timestamp": self.timestamp.isoformat(), "tenant": self.tenant, "service": self.service,
            "kind": self.kind, "name": self.name, "version": self.version, "actor": self.actor,
            "scope": self.scope, "result": self.result,
        }  # fmt: skip


def recent_changes(
    client: Any,
    database: str,
    since: datetime,
    until: datetime,
    *,
    tenant: str | None = None,
    scope: Mapping[str, str] | None = None,
    limit: int = 200,
) -> list[Change]:
    """The changes `changes_sql` selects, through `client` (clickhouse-connect's `query`)."""
    sql = changes_sql(database, since, until, tenant=tenant, scope=scope) + f"\nLIMIT {int(limit)}"
    out = []
    for row in client.query(sql).result_rows:
        ts = row[0] if row[0].tzinfo is not None else row[0].replace(tzinfo=UTC)
        out.append(Change(ts, *(str(v) for v in row[1:])))
    return out


def describe(changes: list[Change], hours: float) -> str:
    """'What changed in the last N hours', one change a line (the newest ten)."""
    head = f"What changed in the last {hours:g} h"
    if not changes:
        return f"{head}: nothing recorded."
    shown = changes[-10:]
    more = f"\n(and {len(changes) - len(shown)} earlier)" if len(changes) > len(shown) else ""
    return f"{head}:\n" + "\n".join(f"- {c.line()}" for c in shown) + more


def _ms(t: datetime) -> int:
    return int((t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp() * 1000)
