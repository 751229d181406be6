"""Change events: a deploy, a model version, a flag or rule change, a setting, recorded as one
`clinotel.change` span of its own (its own trace), so the dashboards can annotate it and pages can
say what changed before they fired."""

from __future__ import annotations

from typing import Final

from opentelemetry import context as otel_context

from clinotel.instrumentation._internal.fields import FieldSet
from clinotel.instrumentation._internal.record import validate
from clinotel.instrumentation._internal.runtime import Runtime, current, given_time, guarded
from clinotel.semconv import AttributeValue
from clinotel.semconv import attributes as A

__all__ = ["CHANGE", "record_change"]

CHANGE: Final = FieldSet.of(
    "change",
    {
        "kind": A.CHANGE_KIND,
        "name": A.CHANGE_NAME,
        "version": A.CHANGE_VERSION,
        "actor": A.CHANGE_ACTOR,
        "site": A.SITE,
        "department": A.DEPARTMENT,
        "workflow_kind": A.CHANGE_WORKFLOW_KIND,
        "stage": A.CHANGE_STAGE,
        "result": A.CHANGE_RESULT,
    },
    required=frozenset({"kind", "name"}),
)
"""What a change event may carry; `kind` and `name` are required."""


def record_change(
    kind: str,
    name: str,
    *,
    version: str | None = None,
    actor: str | None = None,
    scope: dict[str, str] | None = None,
    result: str | None = None,
    at_ns: int | None = None,
) -> None:
    """Record that something changed: `kind` (deploy, model, flag, rule, config), `name` (what),
    `version` (what it is now: a version, or a flag state such as `off`), `actor` (who: `role:…`,
    `pipeline:…`, `service:…` or `rule:…`, never a person), `scope` (where: any of `site`,
    `department`, `workflow_kind`, `stage`; the tenant is the service's). `at_ns`: when, in
    nanoseconds since the epoch (default: now). Invalid fields raise in strict mode and are
    dropped and counted otherwise; an event without a valid kind and name is not recorded."""
    rt = current()
    guarded(rt, _record, rt, kind, name, version, actor, dict(scope or {}), result, at_ns)


def _record(
    rt: Runtime,
    kind: str,
    name: str,
    version: str | None,
    actor: str | None,
    scope: dict[str, str],
    result: str | None,
    at_ns: int | None,
) -> None:
    unknown = sorted(set(scope) - {"site", "department", "workflow_kind", "stage"})
    fields: dict[str, object] = {"kind": kind, "name": name, "version": version, "actor": actor, "result": result}
    for key in unknown:
        fields[f"scope.{key}"] = scope.pop(key)  # refused by name below, as an unknown field
    fields.update(scope)
    attrs: dict[str, AttributeValue] = validate(rt, CHANGE, fields)
    if A.CHANGE_KIND.key not in attrs or A.CHANGE_NAME.key not in attrs:
        return
    when = given_time(rt, at_ns, "at_ns") if at_ns is not None else rt.now()
    if when is None:  # a change at a time it did not happen would mislead: not recorded
        return
    span = rt.tracer.start_span(A.CHANGE_SPAN_NAME, context=otel_context.Context(), attributes=attrs, start_time=when)
    span.end(end_time=when)
