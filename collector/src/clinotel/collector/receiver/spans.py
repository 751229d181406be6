"""Which spans of a request are refused one by one (partial success), and their removal; and
the bound on the attributes a request may carry in all.

A span is refused for invalid ids or for a start or end time outside the window the collector
accepts around its arrival (`Limits.start_window`); each reason is a `spans_refused` label. A
request whose kept spans carry more than `MAX_REQUEST_ATTRIBUTES` attributes in all (their
events' and links', and their resource's once for each span, as the store copies it onto every
row) is refused whole (413): the engine flattens every attribute of a request in one insert, and
one request of 2.85 million registered attributes (62.7 MB) could never fit its memory: it held
every tenant's later segments back for 24 s while it was retried, then was set aside (an attack
review). An attribute takes at least two bytes of a request, so the spans' own are counted only
when the request is large enough to hold too many (a screened request, `bounded`): an exporter's
batch pays one multiplication a resource.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from typing import Any, Final

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from clinotel.collector.errors import RefusedError
from clinotel.collector.store.phi_sql import allowed_keys
from clinotel.semconv import TEXT_FOLD_BOUND, Scope

__all__ = [
    "MAX_REQUEST_ATTRIBUTES",
    "attribute_count",
    "check_attributes",
    "check_copies",
    "refusal",
    "refuse_in_scope",
    "refuse_spans",
    "resource_bytes",
    "scope_bytes",
    "span_copies",
    "text_growth",
]

MAX_REQUEST_ATTRIBUTES: Final = 500_000
"""Attributes (events and links count as one each) the kept spans of one request may carry in all
(an exporter's batch of 512 spans carries a few thousand; 750,000 registered attributes in 16.5 MB
were stored at the default engine cap, 2.85 million in 62.7 MB never fit it)."""
DAY_NS: Final = 86_400 * 10**9
_MIN_ATTRIBUTE_BYTES: Final = 2
"""An attribute's least encoding: its field's tag and length."""


def attribute_count(span: Any) -> int:
    """The attributes of a span, its events' and links' included, and its events and links: each
    is flattened in the engine as an attribute is (an empty link or event is 2 bytes of a request
    and 75-140 bytes at the insert's peak: 20 spans of 105,000 links and 104,500 events, 8.4 MB,
    took an insert to 646 MB, twice its share, in a review)."""
    n = len(span.attributes)
    if span.events:
        n += len(span.events) + sum(len(e.attributes) for e in span.events)
    if span.links:
        n += len(span.links) + sum(len(link.attributes) for link in span.links)
    return n


def check_attributes(attributes: int) -> None:
    """Refuse a request (too_large) whose kept spans carry more than `MAX_REQUEST_ATTRIBUTES`."""
    if attributes > MAX_REQUEST_ATTRIBUTES:
        raise RefusedError(
            "too_large",
            f"the request's spans carry {attributes:,} attributes, events and links (their resources' attributes "
            f"counted for each span), more than the {MAX_REQUEST_ATTRIBUTES:,} one request may: send smaller batches",
        )


_RESOURCE_KEYS: Final = frozenset(allowed_keys((Scope.RESOURCE,)))
"""The resource keys the engine keeps (`phi_sql.attribute_map`'s allowlist)."""
NFKD_GROWTH: Final = 11
"""The most a text's UTF-8 bytes grow when the engine's PHI check reads it in its NFKD form (and
stores that form when it shows PHI): U+FDFA, 3 bytes, is 33. A review sent `may 1` and 50,000 of
them as a 155 KB `service.name` over 100 spans: counted 15 MB, copied 165, past the engine's cap."""


def _text_bytes(text: str) -> int:
    """What the store may keep of a text: its bytes, or as many as its NFKD form may take."""
    size = len(text.encode("utf-8", "surrogatepass"))
    return size if text.isascii() else size * NFKD_GROWTH


_LEADS: Final = (
    (bytes(range(0xC2, 0xE0)), 4, 6),
    (bytes(range(0xE0, 0xF0)), 30, 3),
    (bytes(range(0xF0, 0xF5)), 8, 1),
)
"""For each length of a UTF-8 character (2, 3, 4 bytes): its first bytes, the most bytes its NFKD
form adds (U+0390, U+FDFA, U+1D160: a test checks Python's tables), and how many such bytes a span
is allowed without text (its ids and its times are random bytes: about 4.7, 2.5 and 0.8 of them
in 40). Ids and times of ASCII bytes leave the allowance to text, 122 bytes of growth a span at
most; an allowance of 48 bytes past ASCII of any kind hid 480 (an attack review)."""
_BELOW_LEADS: Final = bytes(range(0xC2))
_OTHER_THAN: Final = tuple(bytes(range(256)).translate(None, leads) for leads, _, _ in _LEADS)
"""For each length in `_LEADS`, every byte that is not one of its first bytes (to delete them)."""


def text_growth(
    raw: bytes | memoryview,
    spans: int,
    request: ExportTraceServiceRequest,
    stop_past: int | None = None,
    *,
    exact: bool = False,
) -> int:
    """The bytes the store's PHI check may add reading the spans' text in its NFKD form (each text's
    first `TEXT_FOLD_BOUND` characters), for `raw`, the encoded request of `spans` kept spans:
    counted like the resources' copies (`span_copies`), so a segment of such text is sealed
    before its insert passes the engine's cap. A tenant's requests of U+FDFA text (3 bytes, 33 in
    NFKD) were acknowledged, then set aside with every other tenant's spans in their segment (an
    attack review). `request` is the decoded request (or, for one screened in runs, `bounded`,
    a run of it). The first bytes of characters past ASCII beyond what a span's ids and times may
    hold, each at the most its character's form can add (`_LEADS`), bound it, counted in C; when
    that bound is more than a quarter of the request, each text is folded as the store folds it,
    so that text that does not grow (most scripts' letters) is not counted (with `exact`, whenever
    the bound is not 0: a large request's runs, whose few spans' ids and times vary more); the
    count may stop once past `stop_past` (the request is refused then)."""
    high = bytes(raw).translate(None, _BELOW_LEADS)  # what may start a character past ASCII, in one pass
    bound = 0
    for (_, growth, allowed), others in zip(_LEADS, _OTHER_THAN, strict=True):
        found = len(high.translate(None, others))
        bound += growth * max(0, found - allowed * spans)
    if bound == 0 or (bound <= len(raw) // 4 and not exact):
        return bound
    return _folded_growth(request, stop_past)


def _grows(text: str) -> int:
    if text.isascii():
        return 0
    head = text[:TEXT_FOLD_BOUND]
    folded = unicodedata.normalize("NFKD", head)
    return max(0, len(folded.encode("utf-8", "surrogatepass")) - len(head.encode("utf-8", "surrogatepass")))


def _attributes_grow(attributes: Any) -> int:
    return sum(_grows(kv.value.string_value) for kv in attributes if kv.value.WhichOneof("value") == "string_value")


def _folded_growth(request: ExportTraceServiceRequest, stop_past: int | None) -> int:
    """What folding adds to every text of the request's spans, their events' and links' (the
    resources' and scopes' are counted as copies: `resource_bytes`, `scope_bytes`), or a count
    past `stop_past`."""
    total = 0
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                if stop_past is not None and total > stop_past:
                    return total
                total += _grows(span.name) + _grows(span.trace_state) + _grows(span.status.message)
                total += _attributes_grow(span.attributes)
                for event in span.events:
                    total += _grows(event.name) + _attributes_grow(event.attributes)
                for link in span.links:
                    total += _grows(link.trace_state) + _attributes_grow(link.attributes)
    return total


def resource_bytes(resource: Any) -> int:
    """The bytes of a resource's registered attributes as the store may keep them on each of its
    spans' rows (the others are dropped before the copies are made)."""
    total = 0
    for kv in resource.attributes:
        if kv.key in _RESOURCE_KEYS:
            value = kv.value
            text = value.string_value if value.WhichOneof("value") == "string_value" else None
            total += len(kv.key) + (_text_bytes(text) if text is not None else value.ByteSize())
    return total


def scope_bytes(scope: Any) -> int:
    """The bytes of a scope's name and version as the store may keep them on each of its spans' rows."""
    return _text_bytes(scope.name) + _text_bytes(scope.version)


def span_copies(request: ExportTraceServiceRequest) -> int:
    """The bytes the store copies onto the request's span rows beyond the request itself: each
    resource's registered attributes and each scope's name and version, once for each of their
    spans (`WriteAheadLog.append`'s `copies`)."""
    total = 0
    for rs in request.resource_spans:
        resource = resource_bytes(rs.resource)
        for ss in rs.scope_spans:
            if ss.spans:
                total += (resource + scope_bytes(ss.scope)) * len(ss.spans)
    return total


def check_copies(copies: int, limit: int) -> None:
    """Refuse a request (too_large) whose resources and scopes copied onto its spans, and its text's
    growth when folded (`text_growth`), come to more than `limit` bytes (`COPIES_PER_REQUEST`
    segments)."""
    if copies > limit:
        raise RefusedError(
            "too_large",
            f"the request's resources and scopes, copied onto each of their spans as the store keeps them, and its "
            f"text read in its NFKD form (as the PHI rules read it) come to {copies:,} bytes, more than the "
            f"{limit:,} one request may: send smaller batches, or shorter resource attributes and scope names",
        )


def refusal(span: Any, window: tuple[int, int]) -> str | None:
    """Why one span is refused (its `spans_refused` label), or None."""
    if (
        len(span.trace_id) != 16
        or len(span.span_id) != 8
        or span.trace_id == b"\0" * 16
        or span.span_id == b"\0" * 8
        or len(span.parent_span_id) not in (0, 8)
    ):
        return "invalid_id"
    if not window[0] <= span.start_time_unix_nano <= window[1]:
        return "out_of_window"
    # a span that ends after the window has not ended yet: 2^64 - 1 as its end would be a
    # duration of centuries in every latency figure
    if span.end_time_unix_nano > window[1]:
        return "ends_after_window"
    return None


_FEW_REFUSED: Final = 16
"""Up to this many refused spans in a scope are deleted one by one (each a move of the spans after
it); more, and the scope's spans are compacted at once."""


def refuse_in_scope(spans: Any, window: tuple[int, int], removed: Counter[str], days: set[int] | None = None) -> int:
    """Remove the refused spans of one scope's repeated `spans`, counting them in `removed` by
    reason; returns how many are kept, and adds the days the kept ones start on to `days`.

    In time linear in the spans, each span's reason found once: with few refused spans they are
    deleted one by one. With more, a scope whose spans are all refused is emptied; one that keeps
    fewer than it refuses is emptied and given copies of the kept ones; else the kept spans are
    moved ahead of the refused ones by a stable sort (the order of the kept spans is unchanged;
    n log n comparisons of flags, in C) and the refused ones cut off the end in one deletion.
    Either way the Python objects held at once are for the kept spans, at most twice over, and a
    kept span has ids (at least 28 bytes of the body). Deleting each of many refused spans moved
    all the spans after it: 30 MiB of valid and invalid spans in turn held the interpreter for 25 s."""
    refused = 0
    few: list[int] = []
    reasons = [refusal(span, window) for span in spans]
    for i, reason in enumerate(reasons):
        if reason is not None:
            removed[reason] += 1
            refused += 1
            if refused <= _FEW_REFUSED:
                few.append(i)
    if refused <= _FEW_REFUSED:
        for i in reversed(few):
            del spans[i]
    elif refused == len(spans):
        del spans[:]
    elif 2 * refused > len(spans):
        keep = [span for span, reason in zip(spans, reasons, strict=True) if reason is None]
        del spans[:]
        spans.extend(keep)
        del keep
    else:
        # the container sorts a list of its elements (list.sort: the key is called once for each, in order)
        flags = iter([reason is not None for reason in reasons])
        spans.sort(key=lambda _span: next(flags))
        del spans[len(spans) - refused :]
    if days is not None and spans:
        days.update({span.start_time_unix_nano // DAY_NS for span in spans})
    return len(spans)


def refuse_spans(
    request: ExportTraceServiceRequest, window: tuple[int, int], size: int = 0, days: set[int] | None = None
) -> tuple[int, Counter[str]]:
    """Remove the spans of `request` (of `size` bytes) refused one by one (`refuse_in_scope`);
    returns (kept, removed by reason), and adds the days the kept ones start on to `days`. Raises
    `RefusedError` (too_large) when the kept spans carry more than `MAX_REQUEST_ATTRIBUTES`
    attributes: their resources' are always counted (one multiplication a resource), their own
    only when the request could hold that many."""
    kept = copied = 0
    removed: Counter[str] = Counter()
    for rs in request.resource_spans:
        here = 0
        for ss in rs.scope_spans:
            here += refuse_in_scope(ss.spans, window, removed, days)
        kept += here
        copied += len(rs.resource.attributes) * here
    if copied + size // _MIN_ATTRIBUTE_BYTES > MAX_REQUEST_ATTRIBUTES:
        own = sum(attribute_count(span) for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans)
        check_attributes(copied + own)
    return kept, removed
