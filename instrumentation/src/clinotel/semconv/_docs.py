"""Render the registry as the Markdown reference in docs/semantic-conventions.md."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from clinotel.semconv._phi import PHI_PATTERNS, REDACTED
from clinotel.semconv._registry import AttributeDef, AttrType, PhiClass

__all__ = ["render_markdown"]

_HEADER = """\
<!-- Generated from clinotel.semconv by `clinotel semconv docs`; do not edit by hand. -->
# clinotel semantic conventions

One workflow instance is one trace: a root span `workflow <kind>` and one child span per stage
(`ingest`, `queue`, `decide`, `review`, `act`, `complete`, or a custom lower-case stage). Late
ground truth arrives days later as an `outcome` span in a trace of its own, joined to the workflow
through `clinical.workflow.id` and a span link.

Only the attributes below are exported. Any other key is dropped before export and counted
(`clinotel.telemetry.dropped.unregistered`). Values are checked by their PHI class:

| PHI class | what is accepted |
|---|---|
| none | a code (registered, or matching the pattern) or a number in range and in 64 bits; PHI-like codes are dropped |
| quasi | only the listed codes: quasi-identifiers are safe only while coarse |
| pseudonym | only an HMAC-SHA256 pseudonym (32 lower-case hex digits), never a raw identifier |
| free_text | any text (its first 4,096 characters), every PHI match replaced by `{redacted}` |
"""

_CELL = str.maketrans({"\t": "\\t", "\n": "\\n", "\r": "\\r", "|": "\\|"})
"""An example as a table cell shows it: blanks escaped, a bar kept from ending the cell."""


def _allowed(d: AttributeDef) -> str:
    if d.type is AttrType.BOOLEAN:
        return "true, false"
    if d.type in (AttrType.INT, AttrType.DOUBLE):
        lo = "" if d.minimum is None else f"{d.minimum:g}"
        hi = "" if d.maximum is None else f"{d.maximum:g}"
        return f"{lo}..{hi}" if (lo or hi) else "any"
    parts = []
    if d.values:
        parts.append(", ".join(f"`{v}`" for v in d.values))
    if d.pattern:
        parts.append(f"or `{d.pattern}`" if d.values else f"`{d.pattern}`")
    if d.phi is PhiClass.FREE_TEXT and not parts:
        parts.append("text, PHI redacted")
    return " ".join(parts)


def render_markdown(registry: Iterable[AttributeDef], groups: Mapping[str, str]) -> str:
    """The reference page: one table per group, then the PHI patterns."""
    by_group: dict[str, list[AttributeDef]] = {}
    for d in registry:
        by_group.setdefault(d.group, []).append(d)
    out = [_HEADER.format(redacted=REDACTED)]
    for group, defs in by_group.items():
        out.append(f"\n## {group}\n\n{groups.get(group, '')}\n")
        out.append("| key | type | where | values | PHI class | meaning |\n|---|---|---|---|---|---|")
        for d in defs:
            where = ", ".join(s.value for s in d.scope)
            allowed = _allowed(d).replace("|", "\\|")
            out.append(f"| `{d.key}` | {d.type.value} | {where} | {allowed} | {d.phi.value} | {d.brief} |")
    out.append("\n## PHI patterns\n")
    out.append(
        "Every span name, event name, status message and free-text value is scrubbed with these "
        "patterns, in this order, in the library before export and again in the collector.\n"
    )
    out.append("| pattern | catches | examples |\n|---|---|---|")
    for p in PHI_PATTERNS:
        examples = ", ".join(f"`{e.translate(_CELL)}`" for e in p.examples)
        out.append(f"| {p.name} | {p.description} | {examples} |")
    return "\n".join(out) + "\n"
