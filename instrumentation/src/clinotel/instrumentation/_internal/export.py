"""The export-side PHI gate: every span leaves through SanitizingSpanExporter.

The API already validates what clinotel's own calls set. This gate also covers what it cannot
see: spans from other instrumentations sharing the provider, exception messages and stack traces,
span and event names, status messages and resource attributes from the environment. Clean spans
pass through untouched, so the usual cost is a dict lookup per attribute.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from itertools import chain, islice, repeat, starmap
from operator import attrgetter, is_, itemgetter
from typing import Any, Final, Generic, TypeVar

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, Status, TraceFlags, TraceState
from opentelemetry.trace.span import DEFAULT_TRACE_STATE

from clinotel.instrumentation._internal.gate import CLEAN_NAMES, RESOURCE_GATE, SPAN_GATE, clean_text, plain
from clinotel.instrumentation._internal.runtime import INSTRUMENTATION_NAME, Counters, log_once
from clinotel.semconv import REDACTED
from clinotel.semconv import attributes as A

__all__ = ["SanitizingSpanExporter"]

_T = TypeVar("_T")

_HEALTH_KEYS: Final = {reason: d.key for reason, d in A.HEALTH_COUNTERS.items()}
_SCOPE: Final = InstrumentationScope(INSTRUMENTATION_NAME)

# What `_clean` reads of one span, read for a whole batch by C-level maps (`_all_clean`).
_RESOURCE: Final = attrgetter("_resource")
_NAME: Final = attrgetter("_name")
_EVENTS: Final = attrgetter("_events")
_LINKS: Final = attrgetter("_links")
_STATUS_TEXT: Final = attrgetter("_status._description")
_ATTRIBUTES: Final = attrgetter("_attributes")
_INNER_LIST: Final = attrgetter("_dq")
_INNER_DICT: Final = attrgetter("_dict")
_CONTEXT: Final = attrgetter("_context")
_INSTRUMENTATION_SCOPE: Final = attrgetter("_instrumentation_scope")
_TRACE_STATE: Final = itemgetter(4)
"""A SpanContext's trace state: the tuple's fifth item, what its `trace_state` property returns."""


def _all_of_type(kind: type, objects: Iterable[object]) -> bool:
    """Every object's type is `kind` itself (by identity: a type may claim to equal another)."""
    return all(map(is_, map(type, objects), repeat(kind)))


class SanitizingSpanExporter(SpanExporter):
    """Wraps any SpanExporter: allowlist and PHI scrubbing on every span before it is handed on.

    Spans created by the application's other instrumentations are cleaned too. What was dropped
    or redacted is counted, and the counts since the last export travel with the batch as a
    `clinotel.telemetry` span, so the health dashboard sees them.
    """

    def __init__(self, inner: SpanExporter, counters: Counters | None = None) -> None:
        self._inner = inner
        self._counters = counters if counters is not None else Counters()
        self._resources: _Judged[Resource] = _Judged()
        self._clean_resource: Resource | None = None
        """The last resource found clean: spans of one provider share it."""
        self._scopes: _Judged[InstrumentationScope] = _Judged()
        """The spans of one tracer share its scope, and a service's other instrumentations have
        their own: the batch path looks each span's scope up among the clean ones, by id."""

    @property
    def counters(self) -> Counters:
        return self._counters

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        counts: dict[str, int] = {}
        if type(spans) is not list and type(spans) is not tuple:
            spans = list(spans)  # read twice below: an iterator would be used up by the first pass
        if self._all_clean(spans):
            cleaned = list(spans)
        else:
            clean, sanitize = self._clean, self._sanitize
            cleaned, with_phi = [], []
            for span in spans:
                if clean(span):
                    cleaned.append(span)
                    continue
                phi = counts.get("phi", 0)
                out = sanitize(span, counts)
                cleaned.append(out)
                if counts.get("phi", 0) != phi:
                    with_phi.append(out.name)
            if with_phi:
                _log_phi(counts["phi"], with_phi)
        for reason, n in counts.items():
            self._counters.add(reason, n)
        if cleaned:
            self._report(cleaned, cleaned[0].resource)
        # A span the encoder cannot carry (a float or negative time, a kind given as a string, an
        # id past its bits, set through the raw API) fails the whole batch: the OTLP/HTTP exporter
        # logs it and returns FAILURE, the gRPC one raises. Then the spans the encoder refuses are
        # dropped and counted, and the rest exported once more.
        try:
            result = self._inner.export(cleaned)
        except Exception:
            kept = _encodable(cleaned)
            if kept is None:
                raise
        else:
            kept = None if result is SpanExportResult.SUCCESS else _encodable(cleaned)
            if kept is None:
                return result
        self._counters.add("invalid", len(cleaned) - len(kept))
        self._report(kept, cleaned[0].resource)
        return self._inner.export(kept)

    def _report(self, spans: list[ReadableSpan], resource: Resource) -> None:
        """Append the counts not reported yet to `spans`, as a health span of `resource`."""
        delta = self._counters.take_unreported()
        if delta:
            spans.append(_health_span(delta, resource))

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def _resource(self, resource: Resource, counts: dict[str, int]) -> Resource:
        clean = self._resources.judge(resource, clean_resource, counts)
        if clean is resource:
            self._clean_resource = resource
        return clean

    def _clean(self, span: ReadableSpan) -> bool:
        """True when `_sanitize` would hand `span` on unchanged, decided by set lookups on what the
        gate has already confirmed (the usual case); False sends the span through `_sanitize`.
        Only the SDK's own spans are read this way (behind their public views)."""
        if type(span) is not ReadableSpan:
            return False
        try:
            events, links = span._events, span._links
            # The SDK's containers answer len() and iteration in Python; what is behind them, in C.
            if type(events) is BoundedList:
                events = events._dq  # type: ignore[attr-defined]
            if type(links) is BoundedList:
                links = links._dq  # type: ignore[attr-defined]
            if (
                span._resource is not self._clean_resource
                or id(span._instrumentation_scope) not in self._scopes.clean
                or span._name not in CLEAN_NAMES
                or events
                or links
                or span._status._description
                or not _clean_state(span._context.trace_state)  # type: ignore[union-attr]
            ):
                return False
            attributes = span._attributes
            if type(attributes) is BoundedAttributes:
                attributes = attributes._dict
        except Exception:  # noqa: BLE001 - a span made some other way, a value whose hash raises: the general path
            return False
        return not attributes or SPAN_GATE.passes(attributes)

    def _all_clean(self, spans: Sequence[ReadableSpan]) -> bool:
        """True when `_clean` holds for every span of the batch (the usual batch), decided by
        C-level passes over the batch, field by field, and one over all its attributes (0.66
        against 0.78 us a span of the benchmark's workflow, 2026-12-06). Any other batch goes
        span by span."""
        resource = self._clean_resource
        if resource is None or not spans or not _all_of_type(ReadableSpan, spans):
            return False
        try:
            if not all(map(is_, map(_RESOURCE, spans), repeat(resource))):
                return False
            # by id alone: a scope found clean is held, so no other object alive has its id
            if not set(map(id, map(_INSTRUMENTATION_SCOPE, spans))) <= self._scopes.clean.keys():
                return False
            if not CLEAN_NAMES.issuperset(map(_NAME, spans)) or any(map(_STATUS_TEXT, spans)):
                return False
            contexts = list(map(_CONTEXT, spans))  # each span's trace state the SDK's empty one
            if not _all_of_type(SpanContext, contexts) or not all(
                map(is_, map(_TRACE_STATE, contexts), repeat(DEFAULT_TRACE_STATE))
            ):
                return False
            for lists in (list(map(_EVENTS, spans)), list(map(_LINKS, spans))):
                if not _all_of_type(BoundedList, lists) or any(map(_INNER_LIST, lists)):
                    return False
            attributes: list[Any] = list(map(_ATTRIBUTES, spans))
            if not _all_of_type(BoundedAttributes, attributes):
                return False
            # plain dicts only: dict.items would read a subclass's own storage, which its methods
            # (what the span-by-span path and the exporter read) may not show
            dicts = list(map(_INNER_DICT, attributes))
            if not _all_of_type(dict, dicts):
                return False
            return SPAN_GATE.passes_items(chain.from_iterable(map(dict.items, dicts)))
        except Exception:  # noqa: BLE001 - spans made some other way, a value whose hash raises: span by span
            return False

    def _sanitize(self, span: ReadableSpan, counts: dict[str, int]) -> ReadableSpan:
        original_resource = span.resource
        resource = self._resource(original_resource, counts)
        original_scope = span.instrumentation_scope
        scope = self._scopes.judge(original_scope, _clean_scope, counts) if original_scope is not None else None
        original_name = span.name
        name = clean_text(original_name)
        if name != original_name:
            counts["redacted"] = counts.get("redacted", 0) + 1
        # The SDK's containers are slow to read through their public views (a copy or a locked
        # mapping per access); read what is behind them in the SDK's own spans, whose views show
        # just that. Any other span is read as an exporter reads it, through its public views.
        own = type(span) is ReadableSpan
        raw_attrs = span._attributes if own else None
        attrs = SPAN_GATE.sanitize(plain(span.attributes if raw_attrs is None else raw_attrs), counts)
        raw_events = span._events if own else span.events
        events = _events(raw_events, counts) if len(raw_events) else None
        raw_links = span._links if own else span.links
        links = _links(raw_links, counts) if len(raw_links) else None
        context = span.context
        if context is not None:
            context = _clean_context(context, counts)
        status = original_status = span.status
        if status.description:
            desc = clean_text(status.description)
            if desc != status.description:
                status = Status(status.status_code, desc)
        if (
            resource is original_resource
            and scope is original_scope
            and name == original_name
            and attrs is None
            and events is None
            and links is None
            and status is original_status
            and context is span.context
        ):
            return span
        return ReadableSpan(
            name=name,
            context=context,
            parent=span.parent,
            resource=resource,
            attributes=span.attributes if attrs is None else attrs,
            events=span.events if events is None else events,
            links=span.links if links is None else links,
            kind=span.kind,
            status=status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=scope,
        )


def _log_phi(dropped: int, span_names: list[str]) -> None:
    """Say (at most once a minute) that the gate dropped values that look like PHI, and from which
    spans (their scrubbed names): only spans set through the OpenTelemetry API or another
    instrumentation get here with them (clinotel's own calls refuse such a value where it is set,
    and say so), and the `sdk_phi_dropped` ticket names the service, not where its code sets them."""
    names = sorted(set(span_names))[:5]
    log_once(
        "export:phi",
        f"clinotel dropped {dropped} attribute value(s) that look like PHI from spans set through the "
        f"OpenTelemetry API or another instrumentation (spans named {', '.join(map(repr, names))}); "
        "they are counted as phi in clinotel.telemetry (the sdk_phi_dropped rule): set pseudonyms or codes "
        "through clinotel instead",
    )


class _Judged(Generic[_T]):
    """What the gate made of objects many spans share (resources, scopes), by identity: each
    judged once, until more than 64 have been seen; those that passed unchanged are held in
    `clean` by id (held, so no other object alive can take the id)."""

    def __init__(self) -> None:
        self._seen: dict[int, tuple[_T, _T]] = {}
        self.clean: dict[int, _T] = {}

    def judge(self, obj: _T, clean: Callable[[_T, dict[str, int]], _T], counts: dict[str, int]) -> _T:
        """What may leave in `obj`'s place (`clean`'s answer, changes counted the first time)."""
        hit = self._seen.get(id(obj))
        if hit is not None and hit[0] is obj:
            return hit[1]
        out = clean(obj, counts)
        if len(self._seen) > 64:
            self._seen.clear()
            self.clean.clear()
        self._seen[id(obj)] = (obj, out)
        if out is obj:
            self.clean[id(obj)] = obj
        return out


def clean_resource(resource: Resource, counts: dict[str, int]) -> Resource:
    """A resource as it may leave: its attributes through the resource gate, its schema URL
    scrubbed; the same object when clean."""
    attrs = RESOURCE_GATE.sanitize(plain(resource.attributes), counts)
    url = resource.schema_url
    clean_url = clean_text(url) if url else url
    if clean_url != url:
        counts["redacted"] = counts.get("redacted", 0) + 1
    if attrs is None and clean_url == url:
        return resource
    return Resource(resource.attributes if attrs is None else attrs, clean_url)


def _clean_scope(scope: InstrumentationScope, counts: dict[str, int]) -> InstrumentationScope:
    """A tracer's scope as it may leave: its name, version and schema URL (set by code in the
    process) scrubbed, no attributes (no scope attribute is registered, and the collector keeps
    none), each change counted; the same object when clean."""
    if type(scope) is not InstrumentationScope:
        counts["redacted"] = counts.get("redacted", 0) + 1
        return InstrumentationScope(REDACTED)
    texts = (scope.name, scope.version, scope.schema_url)
    name, version, schema_url = (text if text is None else clean_text(text) for text in texts)
    dropped = len(scope.attributes or ())
    redacted = sum(a != b for a, b in zip(texts, (name, version, schema_url), strict=True))
    if not dropped and not redacted:
        return scope
    if redacted:
        counts["redacted"] = counts.get("redacted", 0) + redacted
    if dropped:
        counts["unregistered"] = counts.get("unregistered", 0) + dropped
    return InstrumentationScope(name, version, schema_url)  # type: ignore[arg-type]


def _encodable(spans: list[ReadableSpan]) -> list[ReadableSpan] | None:
    """The spans the OTLP encoder takes one by one, when it refuses the batch; None when it takes
    the batch (it failed for another reason, and may have been sent: not sent again) or is not
    installed."""
    try:
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    except ImportError:  # pragma: no cover - the `sdk` extra installs it
        return None

    def takes(batch: list[ReadableSpan]) -> bool:
        try:
            encode_spans(batch).SerializeToString()
        except Exception:  # noqa: BLE001 - whatever the encoder refuses
            return False
        return True

    if takes(spans):
        return None
    return [span for span in spans if takes([span])]


def _events(events: Sequence[Event], counts: dict[str, int]) -> list[Event] | None:
    out: list[Event] | None = None
    for i, ev in enumerate(events):
        name = clean_text(ev.name)
        attrs = SPAN_GATE.sanitize(plain(ev.attributes), counts)
        if name == ev.name and attrs is None:
            if out is not None:
                out.append(ev)
            continue
        if name != ev.name:
            counts["redacted"] = counts.get("redacted", 0) + 1
        if out is None:
            out = list(islice(events, i))
        out.append(Event(name, ev.attributes if attrs is None else attrs, ev.timestamp))
    return out


def _links(links: Sequence[Link], counts: dict[str, int]) -> list[Link] | None:
    out: list[Link] | None = None
    for i, link in enumerate(links):
        attrs = SPAN_GATE.sanitize(plain(link.attributes), counts)
        context = _clean_context(link.context, counts)
        if attrs is None and context is link.context:
            if out is not None:
                out.append(link)
            continue
        if out is None:
            out = list(islice(links, i))
        out.append(Link(context, link.attributes if attrs is None else attrs))
    return out


def _clean_state(state: TraceState) -> bool:
    """True when `_clean_context` keeps a trace state as it is (the SDK's kind, every entry clean)."""
    return state is DEFAULT_TRACE_STATE or (type(state) is TraceState and all(starmap(_clean_entry, state.items())))


def _clean_entry(key: object, value: object) -> bool:
    """A trace-state entry the PHI rules leave alone, judged as it is exported (`key=value`: a
    label in the key and a number in the value are an MRN together), and of plain strings (the
    exporter formats what it is given)."""
    if type(key) is not str or type(value) is not str:
        return False
    entry = f"{key}={value}"
    return clean_text(entry) == entry


def _clean_context(context: SpanContext, counts: dict[str, int]) -> SpanContext:
    """`context` without the trace-state entries (W3C `tracestate`, which can come from a caller's
    request) that hold what the PHI rules redact, each counted as redacted (a state that is not
    the SDK's kind, dropped whole); the same object when there is none."""
    state = context.trace_state
    if state is DEFAULT_TRACE_STATE:
        return context
    entries = list(state.items()) if type(state) is TraceState else None
    kept = [(k, v) for k, v in entries if _clean_entry(k, v)] if entries is not None else []
    if entries is not None and len(kept) == len(entries):
        return context
    counts["redacted"] = counts.get("redacted", 0) + (len(entries) - len(kept) if entries is not None else 1)
    return SpanContext(context.trace_id, context.span_id, context.is_remote, context.trace_flags, TraceState(kept))


def _health_span(delta: dict[str, int], resource: Resource) -> ReadableSpan:
    now = time.time_ns()
    ctx = SpanContext(
        trace_id=int.from_bytes(os.urandom(16), "big") or 1,
        span_id=int.from_bytes(os.urandom(8), "big") or 1,
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    return ReadableSpan(
        name=A.HEALTH_SPAN_NAME,
        context=ctx,
        resource=resource,
        attributes={_HEALTH_KEYS[k]: v for k, v in delta.items()},
        start_time=now,
        end_time=now,
        instrumentation_scope=_SCOPE,
    )
