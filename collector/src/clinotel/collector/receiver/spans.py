"""Which spans of a request are refused one by one (partial success), and their removal.

A span is refused for invalid ids or for a start or end time outside the window the collector
accepts around its arrival (`Limits.start_window`); each reason is a `spans_refused` label.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Final

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

__all__ = ["refusal", "refuse_in_scope", "refuse_spans"]


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


def refuse_in_scope(spans: Any, window: tuple[int, int], removed: Counter[str]) -> int:
    """Remove the refused spans of one scope's repeated `spans`, counting them in `removed` by
    reason; returns how many are kept.

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
    return len(spans)


def refuse_spans(request: ExportTraceServiceRequest, window: tuple[int, int]) -> tuple[int, Counter[str]]:
    """Remove the spans of `request` with invalid ids or times outside `window` (`refuse_in_scope`);
    returns (kept, removed by reason)."""
    kept = 0
    removed: Counter[str] = Counter()
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            kept += refuse_in_scope(ss.spans, window, removed)
    return kept, removed
