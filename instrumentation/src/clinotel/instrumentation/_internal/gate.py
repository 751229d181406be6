"""The export-side PHI gate's rules: allowlist and PHI checks on whole attribute sets.

It applies the same registry validators as the recording path (`fields.SPAN_VALIDATORS`), to
what the recording path cannot see: attributes set by other instrumentations or straight on the
span, event and link attributes, resources from the environment, names and messages.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from itertools import filterfalse
from typing import Final

from clinotel.instrumentation._internal.fields import RESOURCE_VALIDATORS, SPAN_VALIDATORS, Validator
from clinotel.semconv import REDACTED, REGISTRY, AttributeValue, InvalidAttributeError, PhiClass, scrub

__all__ = ["CLEAN_NAMES", "RESOURCE_GATE", "SPAN_GATE", "AttributeGate", "clean_text", "plain"]

_clean: dict[str, str] = {}
_CLEAN_LIMIT: Final = 4096
CLEAN_NAMES: Final[set[str]] = set()
"""Texts `clean_text` returned unchanged (names repeat: one set lookup confirms them)."""


def clean_text(text: str) -> str:
    """`text` with PHI redacted; repeated names cost one dict lookup. Anything but a string (a
    span named None, 123 or b"MRN 00123456" through the raw API) is `REDACTED` whole: the
    patterns cannot read it, and an encoder may write it out as text."""
    if type(text) is not str:
        return REDACTED
    hit = _clean.get(text)
    if hit is not None:
        return hit
    out = scrub(text)
    if len(text) <= 256:
        if len(_clean) >= _CLEAN_LIMIT:
            _clean.clear()
            CLEAN_NAMES.clear()
        _clean[text] = out
        if out == text:
            CLEAN_NAMES.add(text)
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

    def __init__(
        self, validators: Mapping[str, Validator], unique: frozenset[str] = frozenset(), vouched_limit: int = 4096
    ) -> None:
        self._validators = validators
        # (key, text) pairs that passed unchanged: telemetry repeats its codes, so most string
        # values are confirmed by one set lookup. Only strings: True == 1 == 1.0 would let a
        # cached number vouch for a boolean.
        self._good: set[tuple[str, str]] = set()
        # (key, type, value) triples of numbers and booleans that passed: the type keeps True, 1
        # and 1.0 apart (equal, and equally hashed, but only one of them may be valid).
        self._numbers: set[tuple[str, type, object]] = set()
        self._unique = unique
        """Keys whose values rarely repeat (pseudonyms): validated each time unless vouched for
        (`vouch`), never remembered, so they do not crowd the codes out of `_good`."""
        self._vouched: deque[tuple[str, str]] = deque()
        self._vouched_limit = vouched_limit
        """Values vouched for at most (`vouch`): by default more workflows than the SDK's export
        queue holds."""

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
        if self.passes(attributes):
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

    def passes(self, attributes: Mapping[str, object]) -> bool:
        """True when every value passes unchanged (`sanitize` would return None). Known strings
        are confirmed by C-level set lookups, all at once when every value is one; known numbers
        and booleans by one lookup each; only new values meet a validator."""
        items = attributes.items()
        try:
            if self._good.issuperset(items):
                return True
        except Exception:  # noqa: BLE001 - unhashable, or a __hash__/__eq__ that raises: the general path judges it
            return False
        return self.passes_items(items)

    def passes_items(self, items: Iterable[tuple[str, object]]) -> bool:
        """`passes` for (key, value) pairs from any number of attribute sets, read once: the
        export gate confirms a whole batch's attributes in one C-level pass over them."""
        good = self._good
        numbers = self._numbers
        try:
            # Not `items - good`: a dict view's difference walks the whole of `good`.
            for key, value in filterfalse(good.__contains__, items):
                if type(value) is not str and (key, type(value), value) in numbers:
                    continue
                validate = self._validators.get(key)
                if validate is None:
                    return False
                try:
                    cleaned = validate(value)
                except InvalidAttributeError:
                    return False
                if cleaned is not value and not (type(cleaned) is type(value) and cleaned == value):
                    return False
                self._remember(key, value)
        except Exception:  # noqa: BLE001 - unhashable, or a __hash__/__eq__ that raises: the general path judges it
            return False
        return True

    def vouch(self, key: str, value: str) -> None:
        """Confirm a value the library itself made in the form its key's validator accepts by
        construction (the tenant's HMAC pseudonym of an identifier), so the span that carries it
        is confirmed by the set lookups instead of the validator. The latest `vouched_limit` are
        kept, oldest forgotten first; a value not (or no longer) vouched for meets its validator."""
        entry = (key, value)
        vouched = self._vouched
        if len(vouched) >= self._vouched_limit:
            self._good.discard(vouched.popleft())
        vouched.append(entry)
        self._good.add(entry)

    def _remember(self, key: str, value: object) -> None:
        """Keep a value that passed unchanged, so its next appearance costs one lookup."""
        if key in self._unique:
            return
        if type(value) is str:
            if len(self._good) >= self._LIMIT:
                self._good.clear()
            self._good.add((key, value))
        elif type(value) in (bool, int, float):
            if len(self._numbers) >= self._LIMIT:
                self._numbers.clear()
            self._numbers.add((key, type(value), value))


SPAN_GATE: Final = AttributeGate(
    SPAN_VALIDATORS, unique=frozenset(d.key for d in REGISTRY if d.phi is PhiClass.PSEUDONYM)
)
RESOURCE_GATE: Final = AttributeGate(RESOURCE_VALIDATORS)
