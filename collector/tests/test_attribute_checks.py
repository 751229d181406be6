"""The engine's allowlist and PHI rules (`phi_sql.attribute_map`) against the rules written out
in Python, for every registered key of every scope and values of every kind a raw OTLP sender
can send: each attribute kept, scrubbed or dropped exactly as the rules say."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest

from clinotel.collector.store import phi_sql
from clinotel.collector.store.pipeline import SEGMENT_STRUCTURE
from clinotel.model.sql import literal
from clinotel.semconv import PHI_PATTERN, PSEUDONYM_PATTERN, REGISTRY, AttrType, PhiClass, Scope, scrub

SCOPES = {"resource": (Scope.RESOURCE,), "span": (Scope.SPAN,), "event": (Scope.EVENT, Scope.SPAN)}
KV_TYPE = SEGMENT_STRUCTURE.split("resource Tuple(attributes ", 1)[1].split("), scope_spans", 1)[0]
"""The segment's attribute array type, `Array(Tuple(key String, value AnyValue))`."""

PSEUDONYM = "0123456789abcdef0123456789abcdef"
TEXTS = (
    "",
    "abc",
    "triage",
    "ESI-2",
    "model-7:v1.2",
    "MRN 00123456",
    "Mr Smith",
    "jane@example.org",
    "mrn1234567",
    "2026-01-02",
    "123-45-6789",
    "1234567",
    "3",
    "-1",
    "0.5",
    "1440",
    "1441",
    "10001",
    "nan",
    "inf",
    "1e309",
    PSEUDONYM,
    PSEUDONYM.upper(),
    "role:charge-nurse",
    "line one\nline two",
    "x" * 70,
)
NUMBERS: tuple[int | float, ...] = (
    *(0, 3, -1, 1440, 10_001, 1234567, 0.5, 1.5, -0.25, math.nan, math.inf),
    *(123456789, 5558675309, 5558675309.0),  # an SSN's and a phone number's digits, as numbers
    *(4.0, 1e19, -(2.0**63)),  # a whole double; one past int64; int64's least
)


def _any_value(value: object) -> str:
    """An OTLP AnyValue tuple literal (string, bool, int, double, bytes, which one is set)."""
    if isinstance(value, bool):
        return f"('', {str(value).lower()}, 0, 0, '', 'bool_value')"
    if isinstance(value, int):
        return f"('', false, {value}, 0, '', 'int_value')"
    if isinstance(value, float):
        text = "nan" if math.isnan(value) else ("inf" if math.isinf(value) else repr(value))
        return f"('', false, 0, {text}, '', 'double_value')"
    if isinstance(value, bytes):
        return f"('', false, 0, 0, {literal(value.decode())}, 'bytes_value')"
    return f"({literal(str(value))}, false, 0, 0, '', 'string_value')"


def _as_text(value: object) -> str:
    """The contrib exporter's string form, for the kinds whose form Python and SQL share."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))  # the engine writes a whole double's digits: 1e19 is twenty of them
    return str(value)


def _number(text: str) -> float | None:
    try:
        return float(text) if re.fullmatch(r"[-+]?[0-9.]+(e[-+]?[0-9]+)?|[-+]?(nan|inf)", text, re.I) else None
    except ValueError:
        return None


def _expected(key: str, value: object, scopes: tuple[Scope, ...]) -> str | None:
    """What the rules keep of `value` under `key`: its stored text, or None when dropped."""
    d = next((d for d in REGISTRY if d.key == key and any(s in d.scope for s in scopes)), None)
    if d is None or isinstance(value, bytes):
        return None
    text, is_string = _as_text(value), isinstance(value, str)
    numeric_key = d.type in (AttrType.INT, AttrType.DOUBLE) and not d.pattern and not d.closed
    # a number's text is read as PHI too, unless its key is a number held to a range
    looks_like_phi = (is_string or not numeric_key) and PHI_PATTERN.search(text) is not None
    if d.phi is PhiClass.PSEUDONYM:
        return text if re.fullmatch(PSEUDONYM_PATTERN, text) else None
    if d.phi is PhiClass.FREE_TEXT:
        return scrub(text)
    if d.closed:
        return text if text in d.values else None
    if d.pattern:
        return text if re.fullmatch(d.pattern, text) and not looks_like_phi else None
    if d.type in (AttrType.INT, AttrType.DOUBLE):
        # an OTLP number (a count's whole, in 64 bits), as the library and the contrib rules take it
        if isinstance(value, (str, bool)):
            return None
        if d.type is AttrType.INT and not (
            isinstance(value, int) or (math.isfinite(value) and value.is_integer() and abs(value) < 2**63)
        ):
            return None
        n = _number(text)
        in_range = (
            n is not None
            and math.isfinite(n)
            and (d.minimum is None or n >= d.minimum)
            and (d.maximum is None or n <= d.maximum)
        )
        return text if in_range and not looks_like_phi else None
    if d.type is AttrType.BOOLEAN:  # an OTLP boolean: "TRUE", 1 or "true" read as false in the views
        return text if isinstance(value, bool) else None
    return None if looks_like_phi else text


def _candidates(scopes: tuple[Scope, ...]) -> list[tuple[str, object]]:
    keys = [d.key for d in REGISTRY if any(s in d.scope for s in scopes)] + ["patient.name", "note"]
    out: list[tuple[str, object]] = []
    for key in keys:
        d = next((d for d in REGISTRY if d.key == key), None)
        registered = d.values[:3] if d is not None else ()
        out += [(key, v) for v in (*TEXTS, *registered)]
        out += [(key, v) for v in (*NUMBERS, True, False, b"MRN 00123456")]
    return out


@pytest.mark.parametrize("scope", list(SCOPES))
def test_every_key_and_kind_of_value_kept_scrubbed_or_dropped_as_the_rules_say(client: Any, scope: str) -> None:
    scopes = SCOPES[scope]
    cases = _candidates(scopes)
    attrs = "[" + ", ".join(f"({literal(k)}, {_any_value(v)})" for k, v in cases) + "]"
    got = client.query(
        f"SELECT n, {phi_sql.attribute_map('[a[n]]', scopes)} "
        f"FROM (SELECT CAST({attrs}, {literal(KV_TYPE)}) AS a) ARRAY JOIN arrayEnumerate(a) AS n ORDER BY n",
        settings={"max_query_size": 4 * len(attrs)},
    ).result_rows
    assert len(got) == len(cases)
    wrong = []
    for (key, value), (_, stored) in zip(cases, got, strict=True):
        want = _expected(key, value, scopes)
        have = stored.get(key)
        comparable = not isinstance(value, float)  # a double's text is the engine's own formatting
        if (have is None) != (want is None) or (comparable and want is not None and have != want):
            wrong.append((key, value, want, have))
    assert not wrong, f"{len(wrong)} of {len(cases)} attributes not as the rules say, e.g. {wrong[:5]}"
    kept = sum(1 for _, m in got if m)
    assert 0 < kept < len(cases), "the cases keep some attributes and drop others"


def test_no_registered_closed_value_looks_like_phi() -> None:
    """A closed set's values are not matched against the PHI patterns in the engine: none may."""
    assert not [(d.key, v) for d in REGISTRY if d.closed for v in d.values if PHI_PATTERN.search(v)]


def _proto_value(value: object) -> Any:
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue

    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    return AnyValue(string_value=str(value))


def test_a_spans_events_and_links_attributes_are_each_held_to_their_own_scope(
    client: Any, options: Any, pipeline: Any, tmp_path: Path
) -> None:
    """The flattening judges the attributes of a span, its events and its links in one pass (one
    expression for all, planned once an insert) and gives each owner its own map back: each as the
    rules of its own scope say (an event keeps `exception.message`, a span or link drops it), in
    its own place, for spans with empty, one and several events and links. Drop counts cover all
    three."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    from clinotel.collector.log import record as otlp_proto
    from clinotel.collector.store import schema

    span_cases, event_cases = _candidates(SCOPES["span"]), _candidates(SCOPES["event"])
    per_span = 3  # events a span carries (one of them empty, between the others), and links (one empty)
    count = max(len(span_cases), -(-len(event_cases) // (per_span - 1)))
    events_of = {k: event_cases[k * (per_span - 1) : (k + 1) * (per_span - 1)] for k in range(count)}
    links_of = {k: span_cases[(k * (per_span - 1)) % len(span_cases) :][: per_span - 1] for k in range(count)}

    def kv(case: tuple[str, object]) -> KeyValue:
        return KeyValue(key=case[0], value=_proto_value(case[1]))

    def span(k: int) -> Span:
        events = [Span.Event(time_unix_nano=1, name="e", attributes=[kv(c)]) for c in events_of[k]]
        events.insert(1, Span.Event(time_unix_nano=1, name="empty"))
        links = [Span.Link(trace_id=b"\x09" * 16, span_id=b"\x01" * 8, attributes=[kv(c)]) for c in links_of[k]]
        links.insert(k % (len(links) + 1), Span.Link(trace_id=b"\x09" * 16, span_id=(2).to_bytes(8, "big")))
        own = [kv(span_cases[k])] if k < len(span_cases) else []
        return Span(
            trace_id=k.to_bytes(16, "big"), span_id=(k + 1).to_bytes(8, "big"), name="s",
            start_time_unix_nano=1_700_000_000_000_000_000, end_time_unix_nano=1_700_000_000_000_000_000 + k,
            attributes=own, events=events, links=links,
        )  # fmt: skip

    body = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span(k) for k in range(count)])])]
    ).SerializeToString()
    segment = tmp_path / "scopes.wal"
    segment.write_bytes(otlp_proto.frame(body + otlp_proto.envelope("t", "b", 1)))
    client.command(pipeline.insert_from_file(str(segment), "scopes", str(pipeline.write_proto(tmp_path))))
    rows = client.query(
        "SELECT SpanAttributes, Events.Name, Events.Attributes, Links.SpanId, Links.Attributes, "
        f"AttributesDroppedUnregistered + AttributesDroppedInvalid + AttributesDroppedPhi "
        f"FROM {options.name(schema.TRACES)} ORDER BY Duration"
    ).result_rows
    assert len(rows) == count
    wrong = []

    def check(case: tuple[str, object], stored: dict[str, str], scope: str) -> bool:
        key, value = case
        want, have = _expected(key, value, SCOPES[scope]), stored.get(key)
        comparable = not isinstance(value, float)
        if (have is None) != (want is None) or (comparable and want is not None and have != want):
            wrong.append((scope, key, value, want, have))
        return have is None

    dropped_in_all = 0
    for k, (own, names, event_maps, link_ids, link_maps, dropped) in enumerate(rows):
        expected_names = ["e"] * len(events_of[k])
        expected_names.insert(1, "empty")
        assert names == expected_names, names
        dropped_in_all += dropped
        drops = 0
        if k < len(span_cases):
            drops += check(span_cases[k], own, "span")
        else:
            assert own == {}
        quiet = names.index("empty")
        assert event_maps[quiet] == {}, "the empty event keeps no attribute of its neighbours"
        for case, stored in zip(events_of[k], event_maps[:quiet] + event_maps[quiet + 1 :], strict=True):
            drops += check(case, stored, "event")
        empty = link_ids.index("0000000000000002")
        assert link_maps[empty] == {}, "the empty link keeps no attribute of its neighbours"
        for case, stored in zip(links_of[k], link_maps[:empty] + link_maps[empty + 1 :], strict=True):
            drops += check(case, stored, "span")
        assert dropped == drops, (k, dropped, drops)
    assert not wrong, f"{len(wrong)} attributes not as their scope's rules say, e.g. {wrong[:5]}"
    assert dropped_in_all > count, "events' and links' drops are counted too"
    assert any(m.get("exception.message") for _, _, maps, _, _, _ in rows for m in maps), "events keep theirs"
