"""The change events' table (`clinotel_changes`, migration 19): recomputed from the spans with the
rollups, one row per `clinotel.change` span, and what the dashboards' annotation reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from clinotel.collector.store import rollups as refresher
from clinotel.collector.store import schema
from clinotel.dashboards.check import panel_range
from clinotel.dashboards.macros import TimeRange, expand
from clinotel.model.changes import annotation_sql
from clinotel.model.sql import literal
from clinotel.model.tables import CHANGES
from clinotel.semconv import attributes as A


def _change(client: Any, o: schema.SchemaOptions, tenant: str, at: str, name: str, **attrs: str) -> None:
    """A change span as any OTLP pipeline stores it, at `at` (a DateTime64 literal's text)."""
    attributes = {A.CHANGE_KIND.key: "deploy", A.CHANGE_NAME.key: name, **attrs}
    pairs = ", ".join(f"{literal(k)}, {literal(v)}" for k, v in attributes.items())
    trace = f"{abs(hash((tenant, at, name))):032x}"[:32]
    client.command(
        f"INSERT INTO {o.name(schema.TRACES)} (Timestamp, TraceId, SpanId, SpanName, ServiceName, "
        f"ResourceAttributes, SpanAttributes) VALUES (toDateTime64({literal(at)}, 9, 'UTC'), {literal(trace)}, 'aa', "
        f"{literal(A.CHANGE_SPAN_NAME)}, 'pipeline', map('clinical.tenant.id', {literal(tenant)}), map({pairs}))"
    )


def _stored(client: Any, o: schema.SchemaOptions) -> list[tuple[Any, ...]]:
    return [
        tuple(r)
        for r in client.query(
            f"SELECT TenantId, toString(Hour), Name, Site FROM {o.name(CHANGES)} ORDER BY Timestamp"
        ).result_rows
    ]


def test_the_changes_are_recomputed_from_the_spans_within_the_hours_a_datetime_holds(
    client: Any, options: schema.SchemaOptions
) -> None:
    """Every change span is one row, in its tenant's month; one stored by another pipeline outside
    the years a DateTime holds is left out (its hour would wrap into 1970's partition and take the
    place of the changes there at a windowed refresh of that month)."""
    now = datetime.now(UTC).replace(microsecond=0)
    recent = (now - timedelta(hours=2)).strftime("%Y-%m-%d %H:%M:%S")
    _change(client, options, "st-marys", "1970-01-01 00:30:00", "epoch")
    _change(client, options, "st-marys", "2106-03-01 00:00:00", "wraps")
    _change(client, options, "st-marys", "1969-12-31 23:00:00", "before")
    _change(client, options, "st-marys", recent, "ed-triage", **{A.SITE.key: "north"})
    _change(client, options, "general", recent, "other-tenant")
    refresher.refresh(client, options)
    hour = (now - timedelta(hours=2)).replace(minute=0, second=0).strftime("%Y-%m-%d %H:%M:%S")
    expected = [
        ("st-marys", "1970-01-01 00:00:00", "epoch", ""),
        ("st-marys", hour, "ed-triage", "north"),
        ("general", hour, "other-tenant", ""),
    ]
    assert sorted(_stored(client, options)) == sorted(expected)
    refresher.refresh(client, options, (now - timedelta(days=7)).date())  # a windowed refresh keeps them
    assert sorted(_stored(client, options)) == sorted(expected)

    # the annotation reads them, filtered by tenant and site as the dashboards' variables say
    def annotate(**variables: list[str]) -> list[str]:
        tr = panel_range(
            None, ("tenant", "site", "department", "kind"), TimeRange(now - timedelta(days=1), now, variables=variables)
        )
        return [str(r[1]) for r in client.query(expand(annotation_sql(options.database), tr)).result_rows]

    assert sorted(annotate()) == ["deploy: ed-triage", "deploy: other-tenant"]
    assert annotate(tenant=["st-marys"]) == ["deploy: ed-triage"]
    assert annotate(tenant=["st-marys"], site=["south"]) == []
