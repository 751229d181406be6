"""Allowlist and PHI rules applied to attributes (at the API) and to whole spans (at export).

Both paths use the validators that `clinotel.semconv` derives from its registry, so there is one
definition of what may leave the process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Final

from clinotel.instrumentation._runtime import Runtime, refuse
from clinotel.semconv import REGISTRY, AttributeValue, InvalidAttributeError, Scope, scrub

__all__ = [
    "RESOURCE_GATE",
    "RESOURCE_VALIDATORS",
    "SPAN_GATE",
    "SPAN_VALIDATORS",
    "AttributeGate",
    "check",
    "check_many",
    "clean_text",
    "plain",
]

Validator = Callable[[object], AttributeValue]

SPAN_VALIDATORS: Final[dict[str, Validator]] = {
    d.key: d.validator() for d in REGISTRY if Scope.SPAN in d.scope or Scope.EVENT in d.scope
}
RESOURCE_VALIDATORS: Final[dict[str, Validator]] = {d.key: d.validator() for d in REGISTRY if Scope.RESOURCE in d.scope}

_DROP: Final = object()


def check(rt: Runtime, key: str, value: object, validators: Mapping[str, Validator] = SPAN_VALIDATORS) -> object:
    """The value to set for `key`, or `_DROP`; strict mode raises instead of dropping."""
    validate = validators.get(key)
    if validate is None:
        refuse(rt, "unregistered", f"{key} is not a registered clinotel attribute for this place")
        return _DROP
    try:
        return validate(value)
    except InvalidAttributeError as e:
        refuse(rt, "phi" if e.looks_like_phi else "invalid", str(e))
        return _DROP


def check_many(rt: Runtime, attributes: Iterable[tuple[str, object]]) -> dict[str, AttributeValue]:
    """The attributes that pass `check`, as a dict ready for the span."""
    out: dict[str, AttributeValue] = {}
    for key, value in attributes:
        if value is None:
            continue
        v = check(rt, key, value)
        if v is not _DROP:
            out[key] = v  # type: ignore[assignment]
    return out


_clean: dict[str, str] = {}
_CLEAN_LIMIT: Final = 4096


def clean_text(text: str) -> str:
    """`text` with PHI redacted; repeated names cost one dict lookup."""
    hit = _clean.get(text)
    if hit is not None:
        return hit
    out = scrub(text)
    if len(text) <= 256:
        if len(_clean) >= _CLEAN_LIMIT:
            _clean.clear()
        _clean[text] = out
    return out


def plain(attributes: Mapping[str, object] | None) -> Mapping[str, object]:
    """The plain dict behind the SDK's attribute containers, which are slow to iterate."""
    if attributes is None:
        return {}
    inner = getattr(attributes, "_dict", None)
    return inner if type(inner) is dict else attributes


class AttributeGate:
    """Allowlist and PHI rules for one place (spans and events, or resources)."""

    _LIMIT: Final = 16384

    def __init__(self, validators: Mapping[str, Validator]) -> None:
        self._validators = validators
        # (key, text) pairs that passed unchanged: telemetry repeats its codes, so most string
        # values are confirmed by one set lookup. Only strings: True == 1 == 1.0 would let a
        # cached number vouch for a boolean.
        self._good: set[tuple[str, str]] = set()

    def sanitize(
        self, attributes: Mapping[str, object] | None, counts: dict[str, int]
    ) -> dict[str, AttributeValue] | None:
        """A cleaned copy of `attributes`, or None when nothing needed to change.

        Unknown keys and refused values are dropped and tallied in `counts` by reason; redacted
        free text is kept and tallied as `redacted`.
        """
        if not attributes:
            return None
        good = self._good
        validators = self._validators
        if self._all_clean(attributes):
            return None
        out: dict[str, AttributeValue] | None = None
        for key, value in attributes.items():
            if type(value) is str and (key, value) in good:
                if out is not None:
                    out[key] = value
                continue
            validate = validators.get(key)
            reason = None
            cleaned: object = None
            if validate is None:
                reason = "unregistered"
            else:
                try:
                    cleaned = validate(value)
                except InvalidAttributeError as e:
                    reason = "phi" if e.looks_like_phi else "invalid"
                else:
                    if cleaned is value or (type(cleaned) is type(value) and cleaned == value):
                        if type(value) is str:
                            self._remember(key, value)
                        if out is not None:
                            out[key] = cleaned
                        continue
                    reason = "redacted"
            if out is None:
                out = {}
                for k, v in attributes.items():
                    if k == key:
                        break
                    out[k] = v  # type: ignore[assignment]
            counts[reason] = counts.get(reason, 0) + 1
            if reason == "redacted":
                out[key] = cleaned  # type: ignore[assignment]
        return out

    def _all_clean(self, attributes: Mapping[str, object]) -> bool:
        """True when every value passes unchanged. The known strings are set aside in one
        C-level set difference; only numbers, booleans and new strings meet a validator."""
        try:
            pending = attributes.items() - self._good
        except TypeError:  # an unhashable value
            return False
        validators = self._validators
        for key, value in pending:
            validate = validators.get(key)
            if validate is None:
                return False
            try:
                cleaned = validate(value)
            except InvalidAttributeError:
                return False
            if cleaned is not value and not (type(cleaned) is type(value) and cleaned == value):
                return False
            if type(value) is str:
                self._remember(key, value)
        return True

    def _remember(self, key: str, value: str) -> None:
        if len(self._good) >= self._LIMIT:
            self._good.clear()
        self._good.add((key, value))


SPAN_GATE: Final = AttributeGate(SPAN_VALIDATORS)
RESOURCE_GATE: Final = AttributeGate(RESOURCE_VALIDATORS)
