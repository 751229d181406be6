"""Late ground truth: an `outcome` span recorded days later, joined to its workflow."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from clinotel.instrumentation._internal.context import is_code, workflow_id_for
from clinotel.instrumentation._internal.models import Outcome
from clinotel.instrumentation._internal.queue import unrecorded
from clinotel.instrumentation._internal.record import validate
from clinotel.instrumentation._internal.runtime import Runtime, current, guarded, refuse
from clinotel.semconv import CODE_PATTERN, AttributeValue, Stage
from clinotel.semconv import attributes as A

__all__ = ["record_outcome"]


def record_outcome(
    kind: str,
    *,
    identifier: str | int | None = None,
    workflow_id: str | None = None,
    link: str | Mapping[str, str] | None = None,
    outcome: Outcome | None = None,
    **fields: Any,
) -> None:
    """Record late ground truth for a workflow, in any process, any time after it ran.

    The outcome span carries the workflow's pseudonymous id, computed from `identifier` with the
    tenant's key (or passed as `workflow_id`), which is how the collector joins it to the
    workflow's row. When the workflow's `traceparent` (or a queue carrier) was kept, pass it as
    `link` and the span also links to the workflow's root span. The fields are those of
    `Outcome`: `label` (the true value, e.g. the true acuity), `adverse_event`,
    `escalation_needed`, `status`.
    """
    rt = current()
    guarded(rt, _record_outcome, rt, kind, identifier, workflow_id, link, outcome, fields)


def _record_outcome(
    rt: Runtime,
    kind: str,
    identifier: str | int | None,
    workflow_id: str | None,
    link: str | Mapping[str, str] | None,
    outcome: Outcome | None,
    fields: Mapping[str, Any],
) -> None:
    if not is_code(kind):
        refuse(rt, "invalid", f"workflow kind must be a lower-case code matching {CODE_PATTERN}")
        return
    attrs: dict[str, AttributeValue] = {A.WORKFLOW_KIND.key: kind, A.WORKFLOW_STAGE.key: Stage.OUTCOME.value}
    pseudonym = workflow_id_for(rt, identifier, workflow_id, required=True)
    if pseudonym is None:
        return
    attrs[A.WORKFLOW_ID.key] = pseudonym
    attrs.update(validate(rt, Outcome, fields, outcome))
    links = []
    carrier = {"traceparent": link} if isinstance(link, str) else link
    if carrier is not None and not unrecorded(carrier):
        linked = trace.get_current_span(TraceContextTextMapPropagator().extract(carrier)).get_span_context()
        if linked.is_valid:
            links.append(Link(linked))
        else:
            refuse(rt, "invalid", "record_outcome(link=...) is not a W3C traceparent")
    now = rt.now()
    span = rt.tracer.start_span(
        Stage.OUTCOME.value, context=otel_context.Context(), attributes=attrs, links=links, start_time=now
    )
    span.end(end_time=now)
