"""clinotel.semconv rendered as ClickHouse SQL: the allowlist and the PHI rules the library
applies in Python, applied again inside the engine to every span, whichever SDK sent it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from clinotel.model.sql import literal, string_array
from clinotel.semconv import (
    INVISIBLE,
    MAX_TEXT,
    PHI_REGEX,
    PSEUDONYM_PATTERN,
    REDACTED,
    REGISTRY,
    TEXT_FOLD_BOUND,
    TEXT_WINDOW,
    UUID_PATTERN,
    AttrType,
    PhiClass,
    Scope,
    ascii_folds,
)

__all__ = [
    "PHI_SQL",
    "allowed_keys",
    "attribute_map",
    "checked_attributes",
    "closed_values",
    "drops_of_checked",
    "judged_attributes",
    "map_of_checked",
    "only_allowed",
    "scrub_sql",
    "value_sql",
]


PHI_SQL: Final = literal(PHI_REGEX)
"""The PHI alternation of clinotel.semconv as a literal for ClickHouse's RE2 functions."""


_UUID_SQL: Final = literal(f"^{UUID_PATTERN}$")


_HIDDEN_SQL: Final = literal("[\\p{M}" + "".join(f"\\x{{{lo:04X}}}-\\x{{{hi:04X}}}" for lo, hi in INVISIBLE) + "]")
"""What the fold drops, as `clinotel.semconv.scrub` does: combining marks and invisible characters."""


_LOOKAHEAD: Final = TEXT_WINDOW - MAX_TEXT
_REDACTED_CHARS: Final = len(REDACTED)


def _read_sql(expr: str) -> str:
    """(the text, where it is cut) as `clinotel.semconv.scrub` reads `expr`: an ASCII text's first
    `TEXT_WINDOW` characters, cut at `MAX_TEXT`; a text with a character past ASCII folded to its
    first `TEXT_FOLD_BOUND` characters (NFKD, without combining marks (RE2's `\\p{M}`) or invisible
    characters, dashes, other scripts' digits and Latin lookalikes read as ASCII:
    `semconv.ascii_folds`) and, when that form differs and shows PHI anywhere in it
    (`MRN 0012\u200b3456`, full-width digits, `123–45–6789`), the window and the cut taken in the
    folded form, a cut `_LOOKAHEAD` short of its end when the text went past the fold's bound;
    else the text as written. Text that is not valid UTF-8 (the engine's normalisation refuses it,
    and would fail the insert) is read as written; the receiver's protobuf parser lets none
    through anyway."""
    source, target = ascii_folds()
    written = f"(leftUTF8({expr}, {TEXT_WINDOW}), {MAX_TEXT})"
    marks_out = f"replaceRegexpAll(normalizeUTF8NFKD(h), {_HIDDEN_SQL}, '')"
    folded = f"translateUTF8({marks_out}, {literal(source)}, {literal(target)})"
    cut = (
        f"if(lengthUTF8({expr}) > {TEXT_FOLD_BOUND}, "
        f"toUInt64(greatest(0, least({MAX_TEXT}, toInt64(lengthUTF8(f)) - {_LOOKAHEAD}))), toUInt64({MAX_TEXT}))"
    )
    # PHI anywhere in the folded form, as the library reads it: what the written window holds may
    # sit past the folded form's window when the text before it grew (U+FDFA is 18 characters)
    shown = f"if(f != h AND match(f, {PHI_SQL}), (leftUTF8(f, e + {_LOOKAHEAD}), e), {written})"
    per_fold = f"arrayElement(arrayMap(f -> arrayElement(arrayMap(e -> {shown}, [{cut}]), 1), [{folded}]), 1)"
    unfolded = f"arrayElement(arrayMap(h -> {per_fold}, [leftUTF8({expr}, {TEXT_FOLD_BOUND})]), 1)"
    return f"if(length({expr}) = lengthUTF8({expr}) OR NOT isValidUTF8({expr}), {written}, {unfolded})"


def scrub_sql(expr: str) -> str:
    """`expr` as `clinotel.semconv.scrub` leaves it: read as the library reads it (`_read_sql`),
    every PHI match replaced (a whole UUID kept), and of a text longer than its cut the head before
    it, a match that starts before the cut redacted whole. The engine cannot say where each match
    was, so the head kept is shorter than the library's by what the window's redactions saved
    (each match's length past the redaction's): a prefix of the library's text, never a character
    past its cut. Text past the window is never scrubbed nor kept: 10 spans of 3.2 MB of free text
    each took an insert past the engine's cap, and their acknowledged segment was set aside (a Go
    team's review); and a first form of the cut kept a partial SSN past it (a negative length, and
    lengthening redactions, counted against shortening ones: a review)."""
    saved = f"arraySum(m -> greatest(0, toInt64(lengthUTF8(m)) - {_REDACTED_CHARS}), extractAll(c.1, {PHI_SQL}))"
    head = f"if(lengthUTF8(c.1) <= c.2, s, leftUTF8(s, toUInt64(greatest(0, toInt64(c.2) - {saved}))))"
    scrubbed = f"arrayElement(arrayMap(s -> {head}, [replaceRegexpAll(c.1, {PHI_SQL}, {literal(REDACTED)})]), 1)"
    read = f"arrayElement(arrayMap(c -> {scrubbed}, [{_read_sql(expr)}]), 1)"
    return f"if(match({expr}, {_UUID_SQL}), {expr}, {read})"


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


class _Check(IntEnum):
    """What an allowed key's value is checked by (a key has one; 0 is not allowed)."""

    PSEUDONYM = 1
    FREE_TEXT = 2
    CLOSED = 3
    OTHER = 4
    BOOLEAN = 5
    """An OTLP boolean (a string `"TRUE"` from a hand-set attribute read as false in the views)."""
    PATTERN = 16
    """The first registered pattern; the i-th distinct pattern is PATTERN + i."""
    RANGE = 128
    """The first registered range; the j-th distinct range is RANGE + j."""


@dataclass(frozen=True)
class _Classes:
    """The allowed keys of some scopes, each with its `_Check` code, and what the codes stand for."""

    codes: dict[str, int]
    patterns: list[str]
    ranges: list[tuple[bool, float | None, float | None]]
    """(an integer, low, high) of each registered number."""


def _classes(scopes: tuple[Scope, ...]) -> _Classes:
    codes: dict[str, int] = {}
    patterns: list[str] = []
    ranges: list[tuple[bool, float | None, float | None]] = []
    for d in REGISTRY:
        if not any(s in d.scope for s in scopes):
            continue
        if d.phi is PhiClass.PSEUDONYM:
            code = int(_Check.PSEUDONYM)
        elif d.phi is PhiClass.FREE_TEXT:
            code = int(_Check.FREE_TEXT)
        elif d.closed:
            code = int(_Check.CLOSED)
        elif d.pattern:
            if d.pattern not in patterns:
                patterns.append(d.pattern)
            code = _Check.PATTERN + patterns.index(d.pattern)
        elif d.type in (AttrType.INT, AttrType.DOUBLE):
            kind = (d.type is AttrType.INT, d.minimum, d.maximum)
            if kind not in ranges:
                ranges.append(kind)
            code = _Check.RANGE + ranges.index(kind)
        elif d.type is AttrType.BOOLEAN:
            code = int(_Check.BOOLEAN)
        else:
            code = int(_Check.OTHER)
        codes[d.key] = code
    if len(patterns) > _Check.RANGE - _Check.PATTERN or len(ranges) > 255 - _Check.RANGE:
        raise ValueError("too many distinct registered patterns or ranges for one UInt8 code")
    return _Classes(codes, patterns, ranges)


def _in_range(x: str, integer: bool, low: float | None, high: float | None) -> str:
    """`x`, a value's number, within its key's range; an integer's a whole number in 64 bits
    (`4.5` or `1e19` for a count was stored as text the views read as NULL)."""
    whole = " AND toInt64OrNull(t.2) IS NOT NULL" if integer else ""
    bounds = whole + "".join(
        [
            f" AND {x} >= {float(low)!r}" if low is not None else "",
            f" AND {x} <= {float(high)!r}" if high is not None else "",
        ]
    )
    return f"isFinite({x}){bounds}"


def value_sql(v: str, cut: int | None = None) -> str:
    """An OTLP AnyValue tuple as the contrib exporter's string form; with `cut`, a string's or
    bytes' first `cut` characters or bytes (read before anything is copied)."""
    text, raw = f"{v}.string_value", f"{v}.bytes_value"
    if cut is not None:
        text, raw = f"leftUTF8({text}, {cut})", f"substring({raw}, 1, {cut})"
    return (
        f"multiIf({v}.{_ONEOF} = 'string_value', {text}, "
        f"{v}.{_ONEOF} = 'bool_value', if({v}.bool_value, 'true', 'false'), "
        f"{v}.{_ONEOF} = 'int_value', toString({v}.int_value), "
        f"{v}.{_ONEOF} = 'double_value', toString({v}.double_value), "
        f"{v}.{_ONEOF} = 'bytes_value', base64Encode({raw}), '')"
    )


def attribute_map(expr: str, scopes: tuple[Scope, ...]) -> str:
    """SQL turning an OTLP attribute array into the `Map(LowCardinality(String), String)` the
    contrib schema stores, keeping only registered keys for `scopes` and applying the PHI rules:
    pseudonyms must have the pseudonym form, free text is scrubbed, and a coded string that looks
    like PHI, or a value outside its key's closed set, registered pattern or range, is dropped
    whole, whatever its OTLP type (a number sent for a coded key is read as its text). A boolean key
    takes an OTLP boolean and a number key an OTLP number (an integer key's whole and in 64 bits),
    as the library and the contrib collector's rules require: a hand-set `"TRUE"` for
    `clinical.decision.shadow` was stored, and the views read that shadow decision as a live one.
    Numbers and booleans are kept as the exporter would write them; bytes, arrays and maps are
    dropped (no registered key is one; bytes' base64 form would carry text past every PHI pattern).

    Each attribute's key is looked up once (`transform`) for what checks its value, so the
    expression stays small: the engine plans it again for every block it inserts, and per
    attribute it runs the one check its key has. A closed set's registered values are not matched
    against the PHI patterns (`test_attribute_checks` proves none would match)."""
    return map_of_checked(checked_attributes(expr, scopes))


def map_of_checked(checked: str) -> str:
    """SQL of the stored map from `checked` (`checked_attributes`): what passed, free text scrubbed."""
    value = f"if(t.4 = {int(_Check.FREE_TEXT)}, {scrub_sql('t.2')}, t.2)"
    kept = f"arrayFilter(t -> t.5 = 0, {checked})"
    return f"CAST(arrayMap(t -> (t.1, {value}), {kept}), 'Map(LowCardinality(String), String)')"


def drops_of_checked(total: str, checked: str) -> tuple[str, str, str]:
    """SQL counting what the maps of `checked` (an array of judged attribute arrays, each
    `checked_attributes` of one OTLP attribute array; `total` attributes in those arrays in all)
    leave out: (unregistered keys, registered keys whose value fails its check or is an array, map
    or bytes, registered values that look like PHI), each a `UInt32`. Name `checked` once in a
    query (a column of a subquery): each use of its SQL may compute it again."""
    return (
        f"toUInt32({total} - arraySum(arrayMap(x -> length(x), {checked})))",
        f"toUInt32(arraySum(arrayMap(x -> arrayCount(t -> t.5 = {_INVALID}, x), {checked})))",
        f"toUInt32(arraySum(arrayMap(x -> arrayCount(t -> t.5 = {_PHI}, x), {checked})))",
    )


_INVALID: Final = 1
_PHI: Final = 2
"""An attribute's verdict (`checked_attributes`): 0 kept, `_INVALID` (its value fails its key's
check, or is no scalar), `_PHI` (it passes, but its text looks like PHI)."""


def only_allowed(expr: str, scopes: tuple[Scope, ...]) -> str:
    """SQL of the OTLP attribute array `expr` without the keys not registered for `scopes`."""
    return f"arrayFilter(a -> has({string_array(sorted(_classes(scopes).codes))}, a.key), {expr})"


def checked_attributes(expr: str, scopes: tuple[Scope, ...]) -> str:
    """SQL of the registered attributes of the OTLP attribute array `expr`, each judged:
    (key, value as text, which OTLP value it is (the enum's number: 1 a string, 2 a boolean, 3 an
    integer, 4 a double), check code, verdict: 0 kept, `_INVALID`, `_PHI`)."""
    # Unregistered keys are dropped before anything is built for them: the typed tuples of a
    # request of millions of tiny unregistered attributes took the insert past the engine's cap
    # at about half the request size (16 MiB instead of 26-29), and such a segment is retried,
    # not quarantined.
    return judged_attributes(only_allowed(expr, scopes), scopes)


def judged_attributes(allowed: str, scopes: tuple[Scope, ...]) -> str:
    """`checked_attributes` of `allowed`, an attribute array whose keys are all registered for
    `scopes` (`only_allowed`, of these scopes or of some of them: a key's check is its own in any
    scope, so the attributes of a span, its events and its links are judged in one pass)."""
    c = _classes(scopes)
    keys = sorted(c.codes)
    # An array or map value (no scalar: `none`, 0) is invalid as bytes are (7), not kept as '' for
    # its key. A value is read to `TEXT_WINDOW` characters and no further: a coded value that long
    # fails its check anyway, free text keeps `MAX_TEXT` of it.
    typed = (
        f"arrayMap(a -> (a.key, {value_sql('a.value', TEXT_WINDOW)}, toUInt8(a.value.{_ONEOF}), "
        f"transform(a.key, {string_array(keys)}, [{', '.join(str(c.codes[k]) for k in keys)}], 0)), {allowed})"
    )
    closed_keys, closed_pairs = closed_values(scopes)
    number = "ifNull(toFloat64OrNull(t.2), nan)"
    own = [
        f"t.4 = {int(_Check.PSEUDONYM)}, match(t.2, {literal('^' + PSEUDONYM_PATTERN + '$')})",
        f"t.4 = {int(_Check.FREE_TEXT)}, 1",
        f"t.4 = {int(_Check.CLOSED)}, has({string_array(closed_pairs)}, concat(t.1, '=', t.2))" if closed_keys else "",
        *(f"t.4 = {_Check.PATTERN + i}, match(t.2, {literal(f'^(?:{p})$')})" for i, p in enumerate(c.patterns)),
        f"t.4 = {int(_Check.BOOLEAN)}, t.3 = 2",
        *(f"t.4 = {_Check.RANGE + j}, t.3 >= 3 AND {_in_range(number, *r)}" for j, r in enumerate(c.ranges)),
    ]
    own_check = f"multiIf({', '.join(b for b in own if b)}, 1)"
    # a value that passed its own check is still dropped if its text looks like PHI: a string's,
    # and a number's or boolean's sent for a key that is not a number (`clinical.site` as the
    # int 5558675309 is stored as that text); free text is scrubbed instead, pseudonyms and closed
    # values cannot look like it, and a number of a numeric key is held to its range
    looks_like_phi = f"(t.3 = 1 OR t.4 < {int(_Check.RANGE)}) AND match(t.2, {PHI_SQL})"
    phi_free = f"t.4 <= {int(_Check.CLOSED)} OR NOT ({looks_like_phi})"
    # a dropped value counts as PHI as the library's gate counts it: a pseudonym key's that is no
    # pseudonym, or a text that looks like PHI whatever check it failed (a raw MRN for the
    # workflow id, an e-mail for a closed set's key: counted invalid, they never opened the
    # sdk_phi_dropped ticket in a review); any other is invalid
    phi = f"t.4 = {int(_Check.PSEUDONYM)} OR (t.4 != {int(_Check.FREE_TEXT)} AND {looks_like_phi})"
    verdict = (
        f"multiIf(t.3 NOT BETWEEN 1 AND 4 OR t.4 = 0, {_INVALID}, {own_check} AND ({phi_free}), 0, "
        f"{phi}, {_PHI}, {_INVALID})"
    )
    return f"arrayMap(t -> (t.1, t.2, t.3, t.4, {verdict}), {typed})"
