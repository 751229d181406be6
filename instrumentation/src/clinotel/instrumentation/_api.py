"""Workflows and stages: the calls a clinical service makes. Uses only the OpenTelemetry API."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, Span

from clinotel.instrumentation._models import Action, Cohort, Decision, FlagEvaluation, Outcome, Review, TelemetryModel
from clinotel.instrumentation._runtime import Runtime, contain, current, refuse
from clinotel.instrumentation._sanitize import _DROP, check, check_many
from clinotel.instrumentation._scope import Scope
from clinotel.instrumentation.errors import TelemetryValidationError
from clinotel.semconv import CODE_PATTERN, AttributeDef, AttributeValue, InvalidAttributeError, Stage
from clinotel.semconv import attributes as A

__all__ = [
    "StageHandle",
    "StageScope",
    "WorkflowContext",
    "WorkflowHandle",
    "WorkflowScope",
    "current_stage",
    "current_workflow",
    "record_action",
    "record_decision",
    "record_flag",
    "record_review",
    "record_shadow",
    "set_attribute",
    "stage",
    "workflow",
]

WORKFLOW_KEY: Final = otel_context.create_key("clinotel-workflow")
_is_code: Final = re.compile(CODE_PATTERN, re.ASCII).fullmatch
_WHERE_KEYS: Final = (A.SITE.key, A.DEPARTMENT.key, A.SERVICE_LINE.key)
M = TypeVar("M", bound=TelemetryModel)

AttrKey = str | AttributeDef


def _key(k: AttrKey) -> str:
    return k if isinstance(k, str) else k.key


@dataclass(frozen=True, slots=True)
class WorkflowContext:
    """What every stage of a workflow repeats: kind, site, department, service line."""

    kind: str
    attributes: dict[str, AttributeValue]
    """The workflow-context attributes, validated once; never mutated (shared between runs)."""

    @property
    def span_name(self) -> str:
        return f"workflow {self.kind}"


_contexts: dict[tuple[str, tuple[str | None, ...]], WorkflowContext] = {}
_CONTEXTS_LIMIT: Final = 4096


def _context_for(rt: Runtime, kind: str, where: tuple[str | None, str | None, str | None]) -> WorkflowContext:
    """The validated context of a workflow; a hospital has few kinds and places, so the
    validated result is kept and reused (only when nothing was refused, so refusals are
    counted, or raised, every time)."""
    cache_key = (kind, where)
    hit = _contexts.get(cache_key)
    if hit is not None:
        return hit
    clean = True
    if not _is_code(kind):
        refuse(rt, "invalid", f"workflow kind must be a lower-case code matching {CODE_PATTERN}")
        kind, clean = "unknown", False
    attrs: dict[str, AttributeValue] = {A.WORKFLOW_KIND.key: kind}
    for key, value in zip(_WHERE_KEYS, where, strict=True):
        if value is not None:
            v = check(rt, key, value)
            if v is _DROP:
                clean = False
            else:
                attrs[key] = v  # type: ignore[assignment]
    wf = WorkflowContext(kind, attrs)
    if clean:
        if len(_contexts) >= _CONTEXTS_LIMIT:
            _contexts.clear()
        _contexts[cache_key] = wf
    return wf


def _workflow_context() -> WorkflowContext | None:
    wf = otel_context.get_value(WORKFLOW_KEY)
    return wf if isinstance(wf, WorkflowContext) else None


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
        _guarded(self._rt, _set, self._rt, self._span, _key(key), value)

    def set_many(self, attributes: Mapping[AttrKey, AttributeValue]) -> None:
        """Set several registered attributes."""
        _guarded(self._rt, _set_many, self._rt, self._span, attributes)

    def record_decision(self, decision: Decision | None = None, /, **fields: Any) -> None:
        """Record the live decision: a `Decision`, or its fields as keywords."""
        _guarded(self._rt, _record, self._rt, self._span, Decision, decision, fields)

    def record_shadow(self, decision: Decision | None = None, /, **fields: Any) -> None:
        """Record a shadow prediction beside the live decision: a child `decide` span marked
        `clinical.decision.shadow`, so shadow agreement can be measured without acting on it."""
        _guarded(self._rt, _record_shadow, self._rt, self._span, decision, fields)

    def record_review(self, review: Review | None = None, /, **fields: Any) -> None:
        """Record what the clinician did: a `Review`, or its fields as keywords."""
        _guarded(self._rt, _record, self._rt, self._span, Review, review, fields)

    def record_action(self, action: Action | None = None, /, **fields: Any) -> None:
        """Record the action executed downstream."""
        _guarded(self._rt, _record, self._rt, self._span, Action, action, fields)

    def record_outcome(self, outcome: Outcome | None = None, /, **fields: Any) -> None:
        """Record how the workflow ended (on the `complete` stage)."""
        _guarded(self._rt, _record, self._rt, self._span, Outcome, outcome, fields)

    def record_flag(
        self, key: str, variant: str | None = None, *, provider: str | None = None, reason: str | None = None
    ) -> None:
        """Record a feature-flag evaluation (OpenTelemetry's `feature_flag.*`; never its context)."""
        _guarded(self._rt, _record_flag, self._rt, self._span, key, variant, provider, reason)


class WorkflowHandle(StageHandle):
    """What `with workflow(...)` gives: the root span, its identity and the queue hand-off."""

    __slots__ = ("kind", "workflow_id")

    def __init__(self, rt: Runtime, span: Span, kind: str, workflow_id: str | None) -> None:
        super().__init__(rt, span, f"workflow {kind}")
        self.kind = kind
        self.workflow_id = workflow_id
        """The pseudonymous id, or None when none was given."""

    @property
    def traceparent(self) -> str:
        """The W3C traceparent of the root span: store it to link a late outcome to this run."""
        sc = self._span.get_span_context()
        return f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{int(sc.trace_flags):02x}"

    def enqueue(self, queue: str, *, depth: int | None = None) -> dict[str, str]:
        """Hand the workflow to a queue; see `clinotel.instrumentation.enqueue`."""
        from clinotel.instrumentation._queue import enqueue

        token = otel_context.attach(trace.set_span_in_context(self._span))
        try:
            return enqueue(queue, depth=depth)
        finally:
            otel_context.detach(token)


def _guarded(rt: Runtime, fn: Callable[..., None], *args: Any) -> None:
    try:
        fn(*args)
    except TelemetryValidationError:
        raise
    except Exception as e:  # noqa: BLE001 - telemetry must not break the workflow
        contain(rt, e)


def _set(rt: Runtime, span: Span, key: str, value: AttributeValue) -> None:
    v = check(rt, key, value)
    if v is not _DROP:
        span.set_attribute(key, v)  # type: ignore[arg-type]


def _set_many(rt: Runtime, span: Span, attributes: Mapping[AttrKey, AttributeValue]) -> None:
    span.set_attributes(check_many(rt, ((_key(k), v) for k, v in attributes.items())))


def _model_attributes(rt: Runtime, cls: type[M], obj: M | None, fields: Mapping[str, Any]) -> dict[str, AttributeValue]:
    """The attributes of a typed model, or of its fields given as keywords.

    Keywords are checked field by field with the registry's validators (the same rules the
    model applies), so in production the valid fields of a partly invalid record survive.
    """
    if obj is not None:
        if fields:
            raise TypeError(f"pass a {cls.__name__} or its fields, not both")
        return obj.to_attributes()
    missing = cls.REQUIRED.difference(fields)
    if missing:
        refuse(rt, "invalid", f"{cls.__name__} needs {', '.join(sorted(missing))}")
    out: dict[str, AttributeValue] = {}
    checks = cls.FIELD_CHECKS
    for name, value in fields.items():
        found = checks.get(name)
        if found is None:
            refuse(rt, "unregistered", f"{cls.__name__} has no field {name!r}")
            continue
        if value is None:
            continue
        key, validate = found
        try:
            out[key] = validate(value.value if isinstance(value, StrEnum) else value)
        except InvalidAttributeError as e:
            refuse(rt, "phi" if e.looks_like_phi else "invalid", str(e))
    return out


def _record(rt: Runtime, span: Span, cls: type[M], obj: M | None, fields: Mapping[str, Any]) -> None:
    span.set_attributes(_model_attributes(rt, cls, obj, fields))


def _record_shadow(rt: Runtime, parent: Span, obj: Decision | None, fields: Mapping[str, Any]) -> None:
    attrs = _model_attributes(rt, Decision, obj, fields)
    wf = _workflow_context()
    base = dict(wf.attributes) if wf is not None else {}
    base[A.WORKFLOW_STAGE.key] = Stage.DECIDE.value
    base[A.DECISION_SHADOW.key] = True
    base.update(attrs)
    now = rt.now()
    ctx = trace.set_span_in_context(parent)
    span = rt.tracer.start_span(Stage.DECIDE.value, context=ctx, attributes=base, start_time=now)
    span.end(end_time=now)


def _record_flag(
    rt: Runtime, span: Span, key: str, variant: str | None, provider: str | None, reason: str | None
) -> None:
    fields = {"key": key, "variant": variant, "provider": provider, "reason": reason}
    attrs = _model_attributes(rt, FlagEvaluation, None, {k: v for k, v in fields.items() if v is not None})
    if attrs:
        span.set_attributes(attrs)
        span.add_event("feature_flag.evaluation", attrs)


# -- scopes ------------------------------------------------------------------------------------


IdentifierArg = str | Callable[..., str] | None


class WorkflowScope(Scope[WorkflowHandle]):
    """A workflow instance: the root span `workflow <kind>` of one trace."""

    __slots__ = ("_attributes", "_cohort", "_identifier", "_kind", "_start_time", "_where", "_workflow_id")

    def __init__(
        self,
        kind: str,
        identifier: IdentifierArg,
        workflow_id: str | None,
        where: tuple[str | None, str | None, str | None],
        cohort: Cohort | None,
        attributes: Mapping[AttrKey, AttributeValue] | None,
        start_time: int | None,
    ) -> None:
        super().__init__()
        self._kind = kind
        self._identifier = identifier
        self._workflow_id = workflow_id
        self._where = where
        self._cohort = cohort
        self._attributes = attributes
        self._start_time = start_time

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> WorkflowScope:
        ident = self._identifier
        if callable(ident):
            try:
                ident = ident(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - a failing extractor must not fail the call
                contain(current(), e)
                ident = None
        return WorkflowScope(
            self._kind, ident, self._workflow_id, self._where, self._cohort, self._attributes, self._start_time
        )

    def _noop_handle(self) -> WorkflowHandle:
        return WorkflowHandle(current(), INVALID_SPAN, self._kind, None)

    def _start(self, rt: Runtime) -> tuple[Span, otel_context.Context, WorkflowHandle]:
        wf = _context_for(rt, self._kind, self._where)
        kind = wf.kind
        root = dict(wf.attributes)
        ident = self._identifier
        workflow_id = workflow_id_for(rt, None if callable(ident) else ident, self._workflow_id, required=False)
        if workflow_id is not None:
            root[A.WORKFLOW_ID.key] = workflow_id
        if self._cohort is not None:
            root.update(self._cohort.to_attributes())
        if self._attributes:
            root.update(check_many(rt, ((_key(k), v) for k, v in self._attributes.items())))
        start = self._start_time if self._start_time is not None else (rt.clock() if rt.clock else None)
        parent = otel_context.get_current()
        span = rt.tracer.start_span(wf.span_name, context=parent, attributes=root, start_time=start)
        ctx = trace.set_span_in_context(span, otel_context.set_value(WORKFLOW_KEY, wf, parent))
        return span, ctx, WorkflowHandle(rt, span, kind, workflow_id)


class StageScope(Scope[StageHandle]):
    """One stage of the current workflow: a child span named after the stage."""

    __slots__ = ("_attributes", "_name", "_start_time")

    def __init__(self, name: str, attributes: Mapping[AttrKey, AttributeValue] | None, start_time: int | None) -> None:
        super().__init__()
        self._name = name
        self._attributes = attributes
        self._start_time = start_time

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> StageScope:
        return StageScope(self._name, self._attributes, self._start_time)

    def _noop_handle(self) -> StageHandle:
        return StageHandle(current(), INVALID_SPAN, self._name)

    def _start(self, rt: Runtime) -> tuple[Span, otel_context.Context, StageHandle]:
        name = self._name
        if not _is_code(name):
            refuse(rt, "invalid", f"stage names are lower-case codes matching {CODE_PATTERN}")
            name = "invalid_stage"
        parent = otel_context.get_current()
        wf = otel_context.get_value(WORKFLOW_KEY, parent)
        if isinstance(wf, WorkflowContext):
            attrs = dict(wf.attributes)
        else:
            refuse(rt, "invalid", f"stage {name!r} started outside a workflow")
            attrs = {}
        attrs[A.WORKFLOW_STAGE.key] = name
        if self._attributes:
            attrs.update(check_many(rt, ((_key(k), v) for k, v in self._attributes.items())))
        start = self._start_time if self._start_time is not None else (rt.clock() if rt.clock else None)
        span = rt.tracer.start_span(name, context=parent, attributes=attrs, start_time=start)
        return span, trace.set_span_in_context(span, parent), StageHandle(rt, span, name)


def workflow_id_for(rt: Runtime, identifier: str | None, workflow_id: str | None, *, required: bool) -> str | None:
    """The pseudonymous id: a given pseudonym (validated) or the HMAC of a raw identifier."""
    if workflow_id is not None:
        v = check(rt, A.WORKFLOW_ID.key, workflow_id)
        return None if v is _DROP else str(v)
    if identifier is None:
        if required:
            refuse(rt, "invalid", "an identifier or a workflow_id is needed to join the workflow")
        return None
    if rt.pseudonymizer is None:
        refuse(rt, "invalid", "an identifier was given but no pseudonym key is configured")
        return None
    try:
        return rt.pseudonymizer(identifier)
    except ValueError as e:
        refuse(rt, "invalid", str(e))
        return None


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
    rt = current()
    return StageHandle(rt, trace.get_current_span(), "")


def current_workflow() -> WorkflowContext | None:
    """The workflow the current context belongs to, or None outside any workflow."""
    return _workflow_context()


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
