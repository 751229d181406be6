"""What each kind of record may carry: field name -> registered attribute and its validator.

A `FieldSet` is the rule book of one kind of record: the typed models (`Decision`, `Review`, ...)
each have one, the workflow's place and the queue hand-off have one, and bare attributes set by
key are the field set whose field names are the registered keys themselves. All of them take
their validators from `clinotel.semconv`, so there is one definition of what may be recorded;
`record.validate` applies them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final, Generic, TypeVar

from clinotel.semconv import REGISTRY, AttributeDef, AttributeValue, PhiClass, Scope
from clinotel.semconv import attributes as A

__all__ = [
    "QUEUE",
    "RESOURCE_VALIDATORS",
    "SPAN_ATTRIBUTES",
    "SPAN_VALIDATORS",
    "WHERE",
    "FieldSet",
    "FieldValues",
    "Memo",
    "Validator",
    "validator_for",
]

Validator = Callable[[object], AttributeValue]
FieldValues = Mapping[str | AttributeDef, object]
"""Registered attributes keyed by name or by definition (`A.SITE`)."""

SPAN_VALIDATORS: Final[dict[str, Validator]] = {
    d.key: d.validator() for d in REGISTRY if Scope.SPAN in d.scope or Scope.EVENT in d.scope
}
RESOURCE_VALIDATORS: Final[dict[str, Validator]] = {d.key: d.validator() for d in REGISTRY if Scope.RESOURCE in d.scope}
_PSEUDONYM_KEYS: Final = frozenset(d.key for d in REGISTRY if d.phi is PhiClass.PSEUDONYM)


T = TypeVar("T")


class Memo(Generic[T]):
    """What a record validated to, by its field names and values, so that a repeat costs one
    lookup: clinical services record the same codes over and over.

    The key is the names and then the values in one flat tuple. True == 1 == 1.0 (equal, and
    equally hashed) and only one of them may be valid for a field, so the type of every value that
    is not a string is kept with the result and compared on recall. Strings are not: no other
    value equals one, a registry enum (a `str` subclass) validates as its text, and a value equal
    to a remembered code gives that code's validated text (as the export gate's set lookups
    confirm it). Calling type() on every value cost half of a repeated record. Forgotten all at
    once when full.
    """

    __slots__ = ("_entries", "limit")

    def __init__(self, limit: int = 1024) -> None:
        self._entries: dict[tuple[object, ...], tuple[T, tuple[tuple[int, type], ...]]] = {}
        self.limit = limit

    def recall(self, key: tuple[object, ...]) -> T | None:
        """The result kept for `key`, if its values had the same types. Raises TypeError for an
        unhashable value."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        result, typed = entry
        for i, kind in typed:
            if type(key[i]) is not kind:
                return None
        return result

    def keep(self, key: tuple[object, ...], result: T) -> None:
        """Remember `result` for `key` (see `recall`)."""
        if len(self._entries) >= self.limit:
            self._entries.clear()
        self._entries[key] = (result, tuple((i, type(v)) for i, v in enumerate(key) if not isinstance(v, str)))

    def keys(self) -> list[tuple[object, ...]]:
        """The keys kept (for tests)."""
        return list(self._entries)


def validator_for(d: AttributeDef) -> Validator:
    """The registry's validator for `d`, shared with the export gate (and its caches) when `d`
    may be set on spans."""
    return SPAN_VALIDATORS.get(d.key) or d.validator()


class FieldSet:
    """The fields one kind of record may carry, each checked by the registry's validator."""

    __slots__ = ("_unknown", "checks", "memo", "name", "required", "unmemoized")

    def __init__(
        self,
        name: str,
        checks: Mapping[str, tuple[str, Validator]],
        *,
        required: frozenset[str] = frozenset(),
        unknown: str = "{record} has no field {field!r}",
    ) -> None:
        self.name = name
        self.checks: Final = dict(checks)
        """Field name -> (attribute key, validator)."""
        self.required = required
        self._unknown = unknown
        self.memo: Final[Memo[dict[str, AttributeValue]]] = Memo()
        """Records that passed whole: what each validated to (`record.validate`)."""
        self.unmemoized: Final = frozenset(f for f, (key, _) in self.checks.items() if key in _PSEUDONYM_KEYS)
        """Fields whose values rarely repeat (pseudonyms): records with them are never kept."""

    @classmethod
    def of(cls, name: str, fields: Mapping[str, AttributeDef], *, required: frozenset[str] = frozenset()) -> FieldSet:
        """The field set of named registered attributes."""
        return cls(name, {f: (d.key, validator_for(d)) for f, d in fields.items()}, required=required)

    def unknown(self, field: str) -> str:
        """The refusal message for a field this set does not have."""
        return self._unknown.format(record=self.name, field=field)


SPAN_ATTRIBUTES: Final = FieldSet(
    "attributes",
    {key: (key, check) for key, check in SPAN_VALIDATORS.items()},
    unknown="{field} is not a registered clinotel attribute for this place",
)
"""Registered span attributes set by key (`set`, `set_many`, `attributes=`)."""

WHERE: Final = FieldSet.of("workflow", {"site": A.SITE, "department": A.DEPARTMENT, "service_line": A.SERVICE_LINE})
"""Where a workflow runs; repeated on every stage."""

QUEUE: Final = FieldSet.of("queue", {"name": A.QUEUE_NAME, "depth": A.QUEUE_DEPTH})
"""The queue a workflow waits in."""
