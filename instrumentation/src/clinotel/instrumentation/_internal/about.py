"""Records about a workflow rather than inside it: a clinician's coded feedback and the rework a
workflow created. Each is a short span of its own trace (`FEEDBACK_SPAN_NAME`,
`REWORK_SPAN_NAME`) linked to the workflow when its trace is known, and carrying the workflow's
pseudonymous id, kind (as `clinical.about.kind`) and place. They never carry
`clinical.workflow.kind`, so the clinical views never count them as workflows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from clinotel.instrumentation._internal.context import is_code, workflow_context, workflow_id_for
from clinotel.instrumentation._internal.fields import WHERE, FieldSet
from clinotel.instrumentation._internal.queue import unrecorded
from clinotel.instrumentation._internal.record import validate
from clinotel.instrumentation._internal.runtime import Runtime, current, guarded, refuse
from clinotel.semconv import CODE_PATTERN, AttributeValue
from clinotel.semconv import attributes as A

if TYPE_CHECKING:
    from clinotel.instrumentation._internal.api import WorkflowHandle

__all__ = ["FEEDBACK", "REWORK", "record_feedback", "record_rework"]

FEEDBACK: Final = FieldSet.of(
    "feedback",
    {"category": A.FEEDBACK_CATEGORY, "severity": A.FEEDBACK_SEVERITY, "actor_role": A.FEEDBACK_ACTOR_ROLE},
    required=frozenset(("category", "severity")),
)
"""Coded feedback: what it is about, how much it matters, who (by role) gave it."""
REWORK: Final = FieldSet.of(
    "rework",
    {
        "kind": A.REWORK_KIND,
        "minutes": A.EFFORT_MINUTES,
        "touches": A.EFFORT_TOUCHES,
        "actor_role": A.EFFORT_ACTOR_ROLE,
    },
    required=frozenset(("kind",)),
)
"""Rework: what was done again, and the human effort it took."""


def record_feedback(
    category: str,
    severity: str,
    *,
    workflow: WorkflowHandle | None = None,
    kind: str | None = None,
    identifier: str | int | None = None,
    workflow_id: str | None = None,
    link: str | Mapping[str, str] | None = None,
    actor_role: str | None = None,
    site: str | None = None,
    department: str | None = None,
) -> None:
    """Record a clinician's feedback on a workflow's automation, as codes only: `category`
    (`FeedbackCategory`: wrong_priority, missing_context, confusing_explanation, too_slow, …) and
    `severity` (`FeedbackSeverity`). There is no free-text field, on purpose.

    The workflow is `workflow` (a handle), else the current one (inside `with workflow(...)`), else
    the one named by `kind` with `identifier` or `workflow_id` (and its `traceparent` as `link`)."""
    rt = current()
    fields = {"category": category, "severity": severity, "actor_role": actor_role}
    where = (site, department)
    guarded(
        rt, _record, rt, A.FEEDBACK_SPAN_NAME, FEEDBACK, fields, workflow, kind, identifier, workflow_id, link, where
    )


def record_rework(
    rework: str,
    *,
    workflow: WorkflowHandle | None = None,
    kind: str | None = None,
    identifier: str | int | None = None,
    workflow_id: str | None = None,
    link: str | Mapping[str, str] | None = None,
    minutes: float | None = None,
    touches: int | None = None,
    actor_role: str | None = None,
    site: str | None = None,
    department: str | None = None,
) -> None:
    """Record rework a workflow created after it ended: `rework` (`ReworkKind`: reopened,
    rescheduled, retriaged, callback) and the human `minutes` and `touches` it took, by role.
    The workflow is found as for `record_feedback`."""
    rt = current()
    fields = {"kind": rework, "minutes": minutes, "touches": touches, "actor_role": actor_role}
    where = (site, department)
    guarded(rt, _record, rt, A.REWORK_SPAN_NAME, REWORK, fields, workflow, kind, identifier, workflow_id, link, where)


def _record(
    rt: Runtime,
    name: str,
    field_set: FieldSet,
    fields: dict[str, Any],
    workflow: WorkflowHandle | None,
    kind: str | None,
    identifier: str | int | None,
    workflow_id: str | None,
    link: str | Mapping[str, str] | None,
    where: tuple[str | None, str | None],
) -> None:
    attrs: dict[str, AttributeValue] = {}
    links: list[Link] = []
    if workflow is not None:
        kind, place, pseudonym = workflow.kind, dict(workflow.place), workflow.workflow_id
        linked = workflow.span.get_span_context()
        if linked.is_valid:
            links.append(Link(linked))
    elif kind is None and (wf := workflow_context()) is not None:
        kind, pseudonym = wf.kind, None
        place = {k: v for k, v in wf.attributes.items() if k != A.WORKFLOW_KIND.key}
        linked = trace.get_current_span().get_span_context()
        if linked.is_valid:
            links.append(Link(linked))
    else:
        if kind is None:
            refuse(rt, "invalid", f"{field_set.name} outside a workflow needs kind= and identifier= or workflow_id=")
            return
        place = {}
        pseudonym = workflow_id_for(rt, identifier, workflow_id, required=link is None)
        carrier = {"traceparent": link} if isinstance(link, str) else link
        if carrier is not None and not unrecorded(carrier):
            found = trace.get_current_span(TraceContextTextMapPropagator().extract(carrier)).get_span_context()
            if found.is_valid:
                links.append(Link(found))
            else:
                refuse(rt, "invalid", f"{field_set.name}(link=...) is not a W3C traceparent")
        if pseudonym is None and not links:
            return
    if not is_code(kind):
        refuse(rt, "invalid", f"workflow kind must be a lower-case code matching {CODE_PATTERN}")
        return
    attrs[A.ABOUT_KIND.key] = kind
    if pseudonym is not None:
        attrs[A.WORKFLOW_ID.key] = pseudonym
    site, department = where
    attrs.update(place)
    attrs.update(validate(rt, WHERE, {"site": site, "department": department}))
    attrs.update(validate(rt, field_set, fields))
    if any(k not in attrs for k in (field_set.checks[f][0] for f in field_set.required)):
        return  # a required code was refused (and counted): nothing to record
    now = rt.now()
    span = rt.tracer.start_span(name, context=otel_context.Context(), attributes=attrs, links=links, start_time=now)
    span.end(end_time=now)
