"""The attribute registry: one definition per attribute, validators derived from it."""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from clinotel.semconv._phi import PHI_PATTERN, scrub

__all__ = [
    "AttrType",
    "AttributeDef",
    "AttributeValue",
    "InvalidAttributeError",
    "PhiClass",
    "Registry",
    "Scope",
]

AttributeValue = str | bool | int | float

_INT64_MIN: Final = -(1 << 63)
_INT64_MAX: Final = (1 << 63) - 1


class AttrType(StrEnum):
    """The OpenTelemetry attribute type a key carries."""

    STRING = "string"
    BOOLEAN = "boolean"
    INT = "int"
    DOUBLE = "double"


class PhiClass(StrEnum):
    """What a value may reveal about a patient, and so how it is checked before export."""

    NONE = "none"
    """A coded value or a number; cannot identify anyone."""
    QUASI = "quasi"
    """A coded quasi-identifier (cohort slices): harmless alone, identifying when combined
    with rare values; only the coded values are accepted."""
    PSEUDONYM = "pseudonym"
    """An HMAC-SHA256 pseudonym of an identifier; only the pseudonym form is accepted."""
    FREE_TEXT = "free_text"
    """Text a program produced (messages, host names); PHI patterns in it are redacted."""


class Scope(StrEnum):
    """Where an attribute is set."""

    RESOURCE = "resource"
    SPAN = "span"
    EVENT = "event"


class InvalidAttributeError(ValueError):
    """A value that the registry refuses for its key.

    The message never repeats a value that looks like PHI.
    """

    def __init__(self, key: str, reason: str, *, looks_like_phi: bool = False) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason
        self.looks_like_phi = looks_like_phi


CODE_PATTERN: Final = r"[a-z][a-z0-9_]{0,47}"
"""Lower-case codes: workflow kinds, stage names, reason codes."""
LABEL_PATTERN: Final = r"[A-Za-z0-9][A-Za-z0-9_.:/+ -]{0,63}"
"""Coded labels that keep their source's spelling: ESI-2, model names, site codes."""
PSEUDONYM_PATTERN: Final = r"[0-9a-f]{32}"
"""The form of `clinical.workflow.id`: 128 bits of HMAC-SHA256, lower-case hex."""

_CACHE_LIMIT: Final = 4096
"""Values remembered per attribute, so repeated codes and messages cost one dict lookup."""
_PHI_PROBE: Final = 256
"""How much of a refused value is read to say whether it looked like PHI (the flag of a refusal;
the value is refused either way)."""


@dataclass(frozen=True, slots=True)
class AttributeDef:
    """One registered attribute: its key, type, allowed values and PHI class."""

    key: str
    type: AttrType
    brief: str
    group: str
    scope: tuple[Scope, ...] = (Scope.SPAN,)
    values: tuple[str, ...] = ()
    """Allowed values of a string (closed set), or its well-known values when `pattern` is set."""
    pattern: str | None = None
    """A string value outside `values` is accepted when it matches this regex (RE2-compatible)."""
    minimum: float | None = None
    maximum: float | None = None
    phi: PhiClass = PhiClass.NONE
    stages: tuple[str, ...] = ()
    examples: tuple[str, ...] = field(default=())

    @property
    def closed(self) -> bool:
        """True when only `values` are accepted."""
        return bool(self.values) and self.pattern is None and self.type is AttrType.STRING

    def validator(self) -> Callable[[object], AttributeValue]:
        """A function returning the value to export, or raising InvalidAttributeError.

        Free-text values come back with PHI redacted; every other kind of value is either
        accepted whole or refused, because a partly redacted code is misleading.
        """
        return _build_validator(self)


def _build_validator(d: AttributeDef) -> Callable[[object], AttributeValue]:
    key = d.key
    if d.type is AttrType.BOOLEAN:

        def check_bool(v: object) -> AttributeValue:
            if type(v) is bool:
                return v
            raise InvalidAttributeError(key, f"expected a boolean, got {type(v).__name__}")

        return check_bool

    if d.type in (AttrType.INT, AttrType.DOUBLE):
        lo, hi, want_int = d.minimum, d.maximum, d.type is AttrType.INT
        accepted: tuple[type, ...] = (int,) if want_int else (int, float)
        kind = "an integer" if want_int else "a number"

        def check_number(v: object) -> AttributeValue:
            if type(v) not in accepted:
                v = _plain_number(key, v, want_int, kind)
            n: float = v  # type: ignore[assignment]
            if type(v) is int and not _INT64_MIN <= v <= _INT64_MAX:
                # OTLP carries an integer as int64 (the encoder drops a larger one, logging an error
                # for every span); and a float cannot hold 10**400, which made isnan() raise
                raise InvalidAttributeError(key, "an integer outside the 64-bit range OTLP carries")
            if math.isnan(n):
                raise InvalidAttributeError(key, "NaN is not a value")
            if (lo is not None and n < lo) or (hi is not None and n > hi):
                raise InvalidAttributeError(key, f"a value outside {_range_text(lo, hi)}")
            return v  # type: ignore[return-value]

        return check_number

    allowed = frozenset(d.values)
    if d.phi is PhiClass.FREE_TEXT:
        scrubbed: dict[str, str] = {}

        def check_text(v: object) -> AttributeValue:
            if type(v) is not str:
                raise InvalidAttributeError(key, f"expected a string, got {type(v).__name__}")
            hit = scrubbed.get(v)
            if hit is not None:
                return hit
            out = scrub(v)
            if len(v) <= 256:
                if len(scrubbed) >= _CACHE_LIMIT:
                    scrubbed.clear()
                scrubbed[v] = out
            return out

        return check_text

    if d.phi is PhiClass.PSEUDONYM:
        matcher = re.compile(d.pattern or PSEUDONYM_PATTERN, re.ASCII).fullmatch

        def check_pseudonym(v: object) -> AttributeValue:
            if type(v) is str and matcher(v):
                return v
            raise InvalidAttributeError(
                key,
                "expected an HMAC pseudonym (32 lower-case hex digits); never a raw identifier",
                looks_like_phi=True,
            )

        return check_pseudonym

    if d.pattern is None:
        shown = ", ".join(d.values)

        def check_closed(v: object) -> AttributeValue:
            if type(v) is str and v in allowed:
                return v
            looks = isinstance(v, str) and PHI_PATTERN.search(v, 0, _PHI_PROBE) is not None
            raise InvalidAttributeError(key, f"{preview(v)} is not one of: {shown}", looks_like_phi=looks)

        return check_closed

    fullmatch = re.compile(d.pattern, re.ASCII).fullmatch
    phi_search = PHI_PATTERN.search
    seen: set[str] = set(allowed)

    def check_code(v: object) -> AttributeValue:
        if type(v) is str and v in seen:
            return v
        if type(v) is not str:
            raise InvalidAttributeError(key, f"expected a string, got {type(v).__name__}")
        # the code's own pattern first: it is bounded, so a model's paragraph or a 5 MB blob where a
        # code belongs is refused in microseconds (searched for PHI whole first, 10,000 characters
        # took 0.5 s in the caller's thread: a 2026-12-07 review)
        code = fullmatch(v) is not None
        if phi_search(v, 0, len(v) if code else _PHI_PROBE):
            raise InvalidAttributeError(key, "value looks like PHI and is not a code", looks_like_phi=True)
        if not code:
            raise InvalidAttributeError(key, f"{preview(v)} is not a code matching {d.pattern}")
        if len(seen) < _CACHE_LIMIT:
            seen.add(v)
        return v

    return check_code


def _plain_number(key: str, v: object, want_int: bool, kind: str) -> int | float:
    """A number of another type as the plain int or float OTLP carries: numpy's (`proba.max()` is
    an `np.float64`, refused until a 2026-12-07 review dropped every model's confidence), a
    Fraction. A bool is refused on purpose, and so is anything that is not a real number."""
    try:
        if not isinstance(v, bool):
            if isinstance(v, numbers.Integral):
                return int(v)
            if not want_int and isinstance(v, numbers.Real):
                return float(v)
    except Exception:  # noqa: BLE001 - a number type whose conversion raises is refused like any other
        pass
    raise InvalidAttributeError(key, f"expected {kind}, got {type(v).__name__}")


def preview(v: object) -> str:
    """A refused value described without its content, so the message is safe to log: a refused
    value is untrusted, and a name or an identifier need not look like PHI to be one."""
    if isinstance(v, str):
        return f"a string of {len(v)} characters"
    return f"a value of type {type(v).__name__}"


def _range_text(lo: float | None, hi: float | None) -> str:
    if lo is not None and hi is not None:
        return f"{lo:g}..{hi:g}"
    if lo is not None:
        return f">= {lo:g}"
    return f"<= {hi:g}"


class Registry:
    """The registered attributes, by key. Registration order is documentation order."""

    def __init__(self) -> None:
        self._defs: dict[str, AttributeDef] = {}

    def add(self, d: AttributeDef) -> AttributeDef:
        """Register a definition; a key may be registered once."""
        if d.key in self._defs:
            raise ValueError(f"attribute {d.key} is registered twice")
        if d.pattern is not None:
            re.compile(d.pattern)
        self._defs[d.key] = d
        return d

    def get(self, key: str) -> AttributeDef | None:
        """The definition of `key`, or None when it is not registered."""
        return self._defs.get(key)

    def __getitem__(self, key: str) -> AttributeDef:
        return self._defs[key]

    def __contains__(self, key: object) -> bool:
        return key in self._defs

    def __iter__(self) -> Iterator[AttributeDef]:
        return iter(self._defs.values())

    def __len__(self) -> int:
        return len(self._defs)

    def keys(self, scope: Scope | None = None) -> frozenset[str]:
        """The registered keys, optionally only those allowed in `scope`."""
        return frozenset(k for k, d in self._defs.items() if scope is None or scope in d.scope)
