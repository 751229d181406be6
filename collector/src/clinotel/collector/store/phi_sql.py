"""clinotel.semconv rendered as ClickHouse SQL: the allowlist and the PHI rules the library
applies in Python, applied again inside the engine to every span, whichever SDK sent it."""

from __future__ import annotations

from typing import Final

from clinotel.model.sql import literal, string_array
from clinotel.semconv import PHI_REGEX, PSEUDONYM_PATTERN, REDACTED, REGISTRY, UUID_PATTERN, AttrType, PhiClass, Scope

__all__ = [
    "PHI_SQL",
    "allowed_keys",
    "attribute_map",
    "closed_values",
    "patterned_sql",
    "ranged_sql",
    "scrub_sql",
    "value_sql",
]


PHI_SQL: Final = literal(PHI_REGEX)
"""The PHI alternation of clinotel.semconv as a literal for ClickHouse's RE2 functions."""


_UUID_SQL: Final = literal(f"^{UUID_PATTERN}$")


def scrub_sql(expr: str) -> str:
    """`expr` with every PHI match replaced, exactly as `clinotel.semconv.scrub` does (a whole
    UUID kept)."""
    return f"if(match({expr}, {_UUID_SQL}), {expr}, replaceRegexpAll({expr}, {PHI_SQL}, {literal(REDACTED)}))"


def allowed_keys(scopes: tuple[Scope, ...], phi: PhiClass | None = None) -> list[str]:
    """Registered keys allowed in any of `scopes`, optionally only those of one PHI class."""
    return [d.key for d in REGISTRY if any(s in d.scope for s in scopes) and (phi is None or d.phi is phi)]


def closed_values(scopes: tuple[Scope, ...]) -> tuple[list[str], list[str]]:
    """(keys, `key=value` pairs) of the registered closed sets allowed in `scopes`: any other value
    of such a key (free text in a feedback category, say) is dropped at ingest, as the library
    refuses it."""
    defs = [d for d in REGISTRY if d.closed and any(s in d.scope for s in scopes)]
    return [d.key for d in defs], [f"{d.key}={v}" for d in defs for v in d.values]


_ONEOF: Final = "kind"


def patterned_sql(scopes: tuple[Scope, ...]) -> str:
    """multiIf branches (`condition, NULL, ` each, over `t = (key, value, …)`) dropping a value
    that does not match its key's registered pattern, as the library refuses it: a raw OTLP sender
    cannot store a person's name as a change's actor, or lines of its own in a coded label."""
    by_pattern: dict[str, list[str]] = {}
    for d in REGISTRY:
        if d.pattern and not d.closed and d.phi is not PhiClass.PSEUDONYM and any(s in d.scope for s in scopes):
            by_pattern.setdefault(d.pattern, []).append(d.key)
    return "".join(
        f"has({string_array(keys)}, t.1) AND NOT match(t.2, {literal(f'^(?:{pattern})$')}), NULL, "
        for pattern, keys in by_pattern.items()
    )


def ranged_sql(scopes: tuple[Scope, ...]) -> str:
    """multiIf branches, like `patterned_sql`'s, dropping a registered number that is not a finite
    number within its key's range (a raw sender's NaN confidence would turn a tenant's averages
    and quantiles into NaN, and a rule compared with NaN never fires)."""
    by_range: dict[tuple[float | None, float | None], list[str]] = {}
    for d in REGISTRY:
        if d.type in (AttrType.INT, AttrType.DOUBLE) and any(s in d.scope for s in scopes):
            by_range.setdefault((d.minimum, d.maximum), []).append(d.key)
    x = "ifNull(toFloat64OrNull(t.2), nan)"
    out = []
    for (low, high), keys in by_range.items():
        bounds = "".join(
            [
                f" AND {x} >= {float(low)!r}" if low is not None else "",
                f" AND {x} <= {float(high)!r}" if high is not None else "",
            ]
        )
        out.append(f"has({string_array(keys)}, t.1) AND NOT (isFinite({x}){bounds}), NULL, ")
    return "".join(out)


def value_sql(v: str) -> str:
    """An OTLP AnyValue tuple as the contrib exporter's string form."""
    return (
        f"multiIf({v}.{_ONEOF} = 'string_value', {v}.string_value, "
        f"{v}.{_ONEOF} = 'bool_value', if({v}.bool_value, 'true', 'false'), "
        f"{v}.{_ONEOF} = 'int_value', toString({v}.int_value), "
        f"{v}.{_ONEOF} = 'double_value', toString({v}.double_value), "
        f"{v}.{_ONEOF} = 'bytes_value', base64Encode({v}.bytes_value), '')"
    )


def attribute_map(expr: str, scopes: tuple[Scope, ...]) -> str:
    """SQL turning an OTLP attribute array into the `Map(LowCardinality(String), String)` the
    contrib schema stores, keeping only registered keys for `scopes` and applying the PHI rules:
    pseudonyms must have the pseudonym form, free text is scrubbed, and a coded string that looks
    like PHI, or a value outside its key's closed set, is dropped whole. Numbers and booleans are
    kept as the exporter would write them; bytes are dropped (no registered key is bytes, and their
    base64 form would carry text past every PHI pattern)."""
    allowed = string_array(allowed_keys(scopes))
    closed_keys, closed_pairs = (string_array(x) for x in closed_values(scopes))
    pseudonyms = string_array(allowed_keys(scopes, PhiClass.PSEUDONYM))
    free = string_array(allowed_keys(scopes, PhiClass.FREE_TEXT))
    # t = (key, value as text, value is a string)
    typed = f"arrayMap(a -> (a.key, {value_sql('a.value')}, a.value.{_ONEOF} = 'string_value'), " + (
        f"arrayFilter(a -> has({allowed}, a.key) AND a.value.{_ONEOF} != 'bytes_value', {expr}))"
    )
    checked = (
        f"arrayMap(t -> (t.1, multiIf("
        f"has({pseudonyms}, t.1), if(match(t.2, {literal('^' + PSEUDONYM_PATTERN + '$')}), t.2, NULL), "
        f"has({free}, t.1), {scrub_sql('t.2')}, "
        f"has({closed_keys}, t.1) AND NOT has({closed_pairs}, concat(t.1, '=', t.2)), NULL, "
        f"{patterned_sql(scopes)}{ranged_sql(scopes)}"
        f"t.3 AND match(t.2, {PHI_SQL}), NULL, t.2)), {typed})"
    )
    kept = f"arrayFilter(p -> p.2 IS NOT NULL, {checked})"
    return f"CAST(arrayMap(p -> (p.1, assumeNotNull(p.2)), {kept}), 'Map(LowCardinality(String), String)')"
