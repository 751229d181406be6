"""The workflow a context belongs to, and its identity: kind, place and pseudonymous id.

The workflow's context travels in the OpenTelemetry context under `WORKFLOW_KEY`, so every stage,
in any thread or task (and, through a queue carrier, in any process), repeats it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from opentelemetry import context as otel_context

from clinotel.instrumentation._internal.fields import SPAN_ATTRIBUTES, WHERE
from clinotel.instrumentation._internal.gate import SPAN_GATE
from clinotel.instrumentation._internal.record import validate
from clinotel.instrumentation._internal.runtime import Runtime, refuse
from clinotel.semconv import CODE_PATTERN, AttributeValue
from clinotel.semconv import attributes as A

__all__ = [
    "WORKFLOW_CONTEXT_KEYS",
    "WORKFLOW_KEY",
    "Where",
    "WorkflowContext",
    "context_for",
    "is_code",
    "workflow_context",
    "workflow_id_for",
]

WORKFLOW_KEY: Final = otel_context.create_key("clinotel-workflow")
WORKFLOW_CONTEXT_KEYS: Final = frozenset(d.key for d in A.WORKFLOW_CONTEXT)
_code_match: Final = re.compile(CODE_PATTERN, re.ASCII).fullmatch
_codes: set[str] = set()
_CODES_LIMIT: Final = 4096
_STAGES_LIMIT: Final = 64


def is_code(name: str) -> bool:
    """True when a workflow kind or stage name is a lower-case code; names repeat, so a name
    seen before costs a set lookup."""
    if name in _codes:
        return True
    if type(name) is not str or _code_match(name) is None:
        return False
    if len(_codes) < _CODES_LIMIT:
        _codes.add(name)
    return True


Where = tuple[str | None, str | None, str | None]
"""site, department, service line."""


@dataclass(frozen=True, slots=True)
class WorkflowContext:
    """What every stage of a workflow repeats: kind, site, department, service line."""

    kind: str
    attributes: dict[str, AttributeValue]
    """The workflow-context attributes, validated once; never mutated (shared between runs)."""
    place: Mapping[str, AttributeValue] = field(default_factory=dict)
    """Its site, department and service line attributes (the kind left out), read-only."""
    _stages: dict[str, dict[str, AttributeValue]] = field(default_factory=dict, compare=False, repr=False)
    span_name: str = field(init=False, compare=False, repr=False)
    """The root span's name, `workflow <kind>`."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "span_name", f"workflow {self.kind}")

    @classmethod
    def of(cls, kind: str, attributes: dict[str, AttributeValue]) -> WorkflowContext:
        """The context of validated workflow-context `attributes` (the kind's among them)."""
        place = MappingProxyType({k: v for k, v in attributes.items() if k != A.WORKFLOW_KIND.key})
        return cls(kind, attributes, place)

    def stage_attributes(self, stage: str) -> dict[str, AttributeValue]:
        """The starting attributes of a stage span: these plus the stage's name. Built once per
        stage name and shared (a context is shared between runs): read it, never mutate it."""
        hit = self._stages.get(stage)
        if hit is not None:
            return hit
        attrs = {**self.attributes, A.WORKFLOW_STAGE.key: stage}
        if len(self._stages) < _STAGES_LIMIT:
            self._stages[stage] = attrs
        return attrs


def workflow_context(ctx: otel_context.Context | None = None) -> WorkflowContext | None:
    """The workflow `ctx` (default: the current context) belongs to, or None."""
    wf = otel_context.get_value(WORKFLOW_KEY, ctx)
    return wf if isinstance(wf, WorkflowContext) else None


_contexts: dict[tuple[str, Where], WorkflowContext] = {}
_CONTEXTS_LIMIT: Final = 4096


def context_for(rt: Runtime, kind: str, where: Where) -> WorkflowContext:
    """The validated context of a workflow; a hospital has few kinds and places, so the
    validated result is kept and reused (only when nothing was refused, so refusals are
    counted, or raised, every time)."""
    cache_key = (kind, where)
    hit = _contexts.get(cache_key)
    if hit is not None:
        return hit
    clean = True
    if not is_code(kind):
        refuse(rt, "invalid", f"workflow kind must be a lower-case code matching {CODE_PATTERN}")
        kind, clean = "unknown", False
    site, department, service_line = where
    place = validate(rt, WHERE, {"site": site, "department": department, "service_line": service_line})
    if len(place) != sum(v is not None for v in where):
        clean = False
    wf = WorkflowContext.of(kind, {A.WORKFLOW_KIND.key: kind, **place})
    if clean:
        if len(_contexts) >= _CONTEXTS_LIMIT:
            _contexts.clear()
        _contexts[cache_key] = wf
    return wf


def workflow_id_for(
    rt: Runtime, identifier: str | int | None, workflow_id: str | None, *, required: bool
) -> str | None:
    """The pseudonymous id: a given pseudonym (validated) or the HMAC of a raw identifier."""
    if workflow_id is not None:
        key = A.WORKFLOW_ID.key
        return validate(rt, SPAN_ATTRIBUTES, {key: workflow_id}).get(key)  # type: ignore[return-value]
    if identifier is None:
        if required:
            refuse(rt, "invalid", "an identifier or a workflow_id is needed to join the workflow")
        return None
    if rt.pseudonymizer is None:
        refuse(rt, "invalid", "an identifier was given but no pseudonym key is configured")
        return None
    try:
        pseudonym = rt.pseudonymizer(identifier)
    except ValueError as e:
        refuse(rt, "invalid", str(e))
        return None
    SPAN_GATE.vouch(A.WORKFLOW_ID.key, pseudonym)  # 32 hex digits by construction
    return pseudonym
