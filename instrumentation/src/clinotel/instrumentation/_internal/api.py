"""Workflows and stages: the calls a clinical service makes. Uses only the OpenTelemetry API.

Every record method of a handle is one call of `record.put` (or, for the shadow decision that
opens a span of its own, `validate`); the module-level functions are the same methods on the
current stage. A scope is its own handle: `with stage(...) as st` gives the scope.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, Span

from clinotel.instrumentation._internal.context import (
    WORKFLOW_KEY,
    Where,
    WorkflowContext,
    context_for,
    is_code,
    workflow_context,
    workflow_id_for,
)
from clinotel.instrumentation._internal.fields import SPAN_ATTRIBUTES
from clinotel.instrumentation._internal.models import (
    Action,
    Cohort,
    DataQuality,
    Decision,
    Effort,
    FlagEvaluation,
    Inputs,
    Outcome,
    Review,
)
from clinotel.instrumentation._internal.queue import enqueue
from clinotel.instrumentation._internal.record import put, validate, validate_shared
from clinotel.instrumentation._internal.runtime import Runtime, contain, current, given_time, guarded, refuse
from clinotel.instrumentation._internal.scope import FRESH, Scope
from clinotel.semconv import CODE_PATTERN, AttributeDef, AttributeValue, Stage
from clinotel.semconv import attributes as A

__all__ = [
    "AttrKey",
    "StageHandle",
    "StageScope",
    "WorkflowHandle",
    "WorkflowScope",
    "current_stage",
    "current_workflow",
    "record_action",
    "record_data_quality",
    "record_decision",
    "record_effort",
    "record_flag",
    "record_inputs",
    "record_review",
    "record_shadow",
    "set_attribute",
    "stage",
    "workflow",
]

AttrKey = str | AttributeDef
_INVALID_STAGE: Final = "invalid_stage"
_NOWHERE: Final[Mapping[str, AttributeValue]] = MappingProxyType({})


# -- handles ----------------------------------------------------------------------------------


class StageHandle:
    """What `with stage(...)` gives: records attributes and typed events on the stage's span."""

    __slots__ = ("_rt", "_span", "name")

    def __init__(self, rt: Runtime, span: Span, name: str) -> None:
        self._rt = rt
        self._span = span
        self.name = name

    @property
    def span(self) -> Span:
        """The underlying OpenTelemetry span."""
        return self._span

    def set(self, key: AttrKey, value: AttributeValue) -> None:
        """Set one registered attribute; invalid values raise (strict) or are dropped and counted."""
        put(self._rt, self._span, SPAN_ATTRIBUTES, {key: value})

    def set_many(self, attributes: Mapping[AttrKey, AttributeValue]) -> None:
        """Set several registered attributes."""
        put(self._rt, self._span, SPAN_ATTRIBUTES, attributes)

    def record_decision(self, decision: Decision | None = None, /, **fields: Any) -> None:
        """Record the live decision: a `Decision`, or its fields as keywords."""
        put(self._rt, self._span, Decision, fields, decision)

    def record_shadow(self, decision: Decision | None = None, /, **fields: Any) -> None:
        """Record a shadow prediction beside the live decision: a child `decide` span marked
        `clinical.decision.shadow`, so shadow agreement can be measured without acting on it."""
        guarded(self._rt, _record_shadow, self._rt, self._span, decision, fields)

    def record_review(self, review: Review | None = None, /, **fields: Any) -> None:
        """Record what the clinician did: a `Review`, or its fields as keywords."""
        put(self._rt, self._span, Review, fields, review)

    def record_action(self, action: Action | None = None, /, **fields: Any) -> None:
        """Record the action executed downstream."""
        put(self._rt, self._span, Action, fields, action)

    def record_outcome(self, outcome: Outcome | None = None, /, **fields: Any) -> None:
        """Record how the workflow ended (on the `complete` stage)."""
        put(self._rt, self._span, Outcome, fields, outcome)

    def record_inputs(self, inputs: Inputs | None = None, /, **fields: Any) -> None:
        """Record what the decision was made from, as coded bands and presence flags (`Inputs`):
        the distributions `clinotel drift check` compares with a reference."""
        put(self._rt, self._span, Inputs, fields, inputs)

    def record_data_quality(self, quality: DataQuality | None = None, /, **fields: Any) -> None:
        """Record whether the decision's data was complete, fresh and mapped (`DataQuality`)."""
        put(self._rt, self._span, DataQuality, fields, quality)

    def record_effort(self, effort: Effort | None = None, /, **fields: Any) -> None:
        """Record the human effort this stage took: `minutes`, `touches`, `actor_role` (`Effort`)."""
        put(self._rt, self._span, Effort, fields, effort)

    def record_flag(
        self, key: str, variant: str | None = None, *, provider: str | None = None, reason: str | None = None
    ) -> None:
        """Record a feature-flag evaluation (OpenTelemetry's `feature_flag.*`; never its context)."""
        passed = {"key": key, "variant": variant, "provider": provider, "reason": reason}
        fields = {k: v for k, v in passed.items() if v is not None}  # a missing key is refused
        guarded(self._rt, _record_flag, self._rt, self._span, fields)


class WorkflowHandle(StageHandle):
    """What `with workflow(...)` gives: the root span, its identity and the queue hand-off."""

    __slots__ = ("kind", "place", "workflow_id")

    def __init__(
        self,
        rt: Runtime,
        span: Span,
        kind: str,
        workflow_id: str | None,
        place: Mapping[str, AttributeValue] | None = None,
    ) -> None:
        super().__init__(rt, span, f"workflow {kind}")
        self.kind = kind
        self.workflow_id = workflow_id
        """The pseudonymous id, or None when none was given."""
        self.place: Mapping[str, AttributeValue] = place or _NOWHERE
        """Where the workflow runs (site, department, service line attributes, validated)."""

    @property
    def traceparent(self) -> str:
        """The W3C traceparent of the root span: store it to link a late outcome to this run."""
        sc = self._span.get_span_context()
        return f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{int(sc.trace_flags):02x}"

    def enqueue(self, queue: str, *, depth: int | None = None) -> dict[str, str]:
        """Hand the workflow to a queue; see `clinotel.instrumentation.enqueue`."""
        token = otel_context.attach(trace.set_span_in_context(self._span))
        try:
            return enqueue(queue, depth=depth)
        finally:
            otel_context.detach(token)


def _record_shadow(rt: Runtime, parent: Span, decision: Decision | None, fields: Mapping[str, Any]) -> None:
    attrs = validate(rt, Decision, fields, decision)
    wf = workflow_context()
    base = dict(wf.attributes) if wf is not None else {}
    base[A.WORKFLOW_STAGE.key] = Stage.DECIDE.value
    base[A.DECISION_SHADOW.key] = True
    base.update(attrs)
    now = rt.now()
    ctx = trace.set_span_in_context(parent)
    span = rt.tracer.start_span(Stage.DECIDE.value, context=ctx, attributes=base, start_time=now)
    span.end(end_time=now)


def _record_flag(rt: Runtime, span: Span, fields: dict[str, str]) -> None:
    attrs = validate(rt, FlagEvaluation, fields)
    if attrs:
        span.set_attributes(attrs)
        span.add_event("feature_flag.evaluation", attrs)


# -- scopes ------------------------------------------------------------------------------------


IdentifierArg = str | int | Callable[..., str | int] | None


class WorkflowScope(WorkflowHandle, Scope):
    """A workflow instance: the root span `workflow <kind>` of one trace, and its own handle."""

    __slots__ = ("_attributes", "_cohort", "_given_id", "_identifier", "_start_time", "_token", "_where")

    def __init__(
        self,
        kind: str,
        identifier: IdentifierArg,
        workflow_id: str | None,
        where: Where,
        cohort: Cohort | None,
        attributes: Mapping[AttrKey, AttributeValue] | None,
        start_time: int | None,
    ) -> None:
        # Until the span opens (or when it fails to), a handle that records nothing.
        self._rt = current()
        self._span = INVALID_SPAN
        self.name = f"workflow {kind}"
        self.kind = kind
        self.workflow_id = None
        self.place = _NOWHERE
        self._identifier = identifier
        self._given_id = workflow_id
        self._where = where
        self._cohort = cohort
        self._attributes = attributes
        self._start_time = start_time
        self._token = FRESH

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> WorkflowScope:
        ident = self._identifier
        if callable(ident):
            try:
                ident = ident(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - a failing extractor must not fail the call
                contain(current(), e)
                ident = None
        return WorkflowScope(
            self.kind, ident, self._given_id, self._where, self._cohort, self._attributes, self._start_time
        )

    def _begin(self, rt: Runtime) -> otel_context.Context:
        wf = context_for(rt, self.kind, self._where)
        ident, given_id, cohort, extra = self._identifier, self._given_id, self._cohort, self._attributes
        workflow_id = None
        if ident is not None or given_id is not None:
            workflow_id = workflow_id_for(rt, None if callable(ident) else ident, given_id, required=False)
        # the context's attributes as they are (the SDK copies what it is given), else a copy with the rest
        root = wf.attributes
        if workflow_id is not None or cohort is not None or extra:
            root = dict(root)
            if workflow_id is not None:
                root[A.WORKFLOW_ID.key] = workflow_id
            if cohort is not None:
                # a Cohort was checked when it was built; anything else is refused by `validate`
                root.update(cohort.to_attributes() if type(cohort) is Cohort else validate(rt, Cohort, {}, cohort))
            if extra:
                root.update(validate_shared(rt, SPAN_ATTRIBUTES, extra))
        parent = otel_context.get_current()
        given = self._start_time
        start = _given_start(rt, given) if given is not None else (rt.clock() if rt.clock else None)
        span = rt.tracer.start_span(wf.span_name, context=parent, attributes=root, start_time=start)
        ctx = trace.set_span_in_context(span, otel_context.set_value(WORKFLOW_KEY, wf, parent))
        self._span = span
        self.name = wf.span_name
        self.kind = wf.kind
        self.workflow_id = workflow_id
        self.place = wf.place
        return ctx


class StageScope(StageHandle, Scope):
    """One stage of the current workflow: a child span named after the stage, and its own handle."""

    __slots__ = ("_attributes", "_start_time", "_token")

    def __init__(self, name: str, attributes: Mapping[AttrKey, AttributeValue] | None, start_time: int | None) -> None:
        # Until the span opens (or when it fails to), a handle that records nothing.
        self._rt = current()
        self._span = INVALID_SPAN
        self.name = name
        self._attributes = attributes
        self._start_time = start_time
        self._token = FRESH

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> StageScope:
        return StageScope(self.name, self._attributes, self._start_time)

    def _begin(self, rt: Runtime) -> otel_context.Context:
        name = self.name
        if not is_code(name):
            refuse(rt, "invalid", f"stage names are lower-case codes matching {CODE_PATTERN}")
            name = _INVALID_STAGE
        parent = otel_context.get_current()
        wf = parent.get(WORKFLOW_KEY)
        attrs: dict[str, AttributeValue]
        if type(wf) is WorkflowContext:
            attrs = wf.stage_attributes(name)  # shared: the SDK copies what it is given
        else:
            refuse(rt, "invalid", f"stage {name!r} started outside a workflow")
            attrs = {A.WORKFLOW_STAGE.key: name}
        if self._attributes:
            attrs = {**attrs, **validate_shared(rt, SPAN_ATTRIBUTES, self._attributes)}
        given = self._start_time
        start = _given_start(rt, given) if given is not None else (rt.clock() if rt.clock else None)
        span = rt.tracer.start_span(name, context=parent, attributes=attrs, start_time=start)
        self._span = span
        self.name = name
        return trace.set_span_in_context(span, parent)


def _given_start(rt: Runtime, given: object) -> int | None:
    """A scope's start time when the caller gave one: it if OTLP can carry it, else (refused) the
    configured clock's, or None (the SDK's own)."""
    checked = given_time(rt, given, "start_time")
    if checked is not None:
        return checked
    return rt.clock() if rt.clock else None


# -- public functions ----------------------------------------------------------------------------


def workflow(
    kind: str,
    *,
    identifier: IdentifierArg = None,
    workflow_id: str | None = None,
    site: str | None = None,
    department: str | None = None,
    service_line: str | None = None,
    cohort: Cohort | None = None,
    attributes: Mapping[AttrKey, AttributeValue] | None = None,
    start_time: int | None = None,
) -> WorkflowScope:
    """A workflow instance of `kind`: use as `with workflow(...) as wf:` or as a decorator.

    `identifier` is the raw MRN, encounter or appointment id (or, for a decorator, a function of
    the call's arguments returning it); it is turned into `clinical.workflow.id` with the tenant's
    HMAC key and never exported itself. `workflow_id` passes a pseudonym computed elsewhere.
    """
    return WorkflowScope(
        kind, identifier, workflow_id, (site, department, service_line), cohort, attributes, start_time
    )


def stage(
    name: str | Stage,
    *,
    attributes: Mapping[AttrKey, AttributeValue] | None = None,
    start_time: int | None = None,
) -> StageScope:
    """A stage of the current workflow (`ingest`, `queue`, `decide`, `review`, `act`, `complete`,
    or a custom lower-case code): use as `with stage(...) as st:` or as a decorator."""
    return StageScope(name.value if isinstance(name, Stage) else name, attributes, start_time)


def current_stage() -> StageHandle:
    """A handle on the current span (the innermost stage or workflow)."""
    return StageHandle(current(), trace.get_current_span(), "")


def current_workflow() -> WorkflowContext | None:
    """The workflow the current context belongs to, or None outside any workflow."""
    return workflow_context()


def set_attribute(key: AttrKey, value: AttributeValue) -> None:
    """Set a registered attribute on the current stage."""
    current_stage().set(key, value)


def record_decision(decision: Decision | None = None, /, **fields: Any) -> None:
    """Record the live decision on the current stage."""
    current_stage().record_decision(decision, **fields)


def record_shadow(decision: Decision | None = None, /, **fields: Any) -> None:
    """Record a shadow prediction beside the current stage's decision."""
    current_stage().record_shadow(decision, **fields)


def record_review(review: Review | None = None, /, **fields: Any) -> None:
    """Record the clinician's review on the current stage."""
    current_stage().record_review(review, **fields)


def record_action(action: Action | None = None, /, **fields: Any) -> None:
    """Record the downstream action on the current stage."""
    current_stage().record_action(action, **fields)


def record_flag(
    key: str, variant: str | None = None, *, provider: str | None = None, reason: str | None = None
) -> None:
    """Record a feature-flag evaluation on the current stage."""
    current_stage().record_flag(key, variant, provider=provider, reason=reason)


def record_inputs(inputs: Inputs | None = None, /, **fields: Any) -> None:
    """Record the decision's inputs (coded bands, presence flags) on the current stage."""
    current_stage().record_inputs(inputs, **fields)


def record_data_quality(quality: DataQuality | None = None, /, **fields: Any) -> None:
    """Record the data quality of the current stage's inputs."""
    current_stage().record_data_quality(quality, **fields)


def record_effort(effort: Effort | None = None, /, **fields: Any) -> None:
    """Record the human effort the current stage took."""
    current_stage().record_effort(effort, **fields)
