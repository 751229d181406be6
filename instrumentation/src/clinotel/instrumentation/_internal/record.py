"""The one recording path: every public call that records attributes validates them here.

`validate` turns what a caller passed (a typed model instance, its fields as keywords, or
registered attributes by key) into span attributes under the rules of its `FieldSet`: strict mode
raises TelemetryValidationError; production mode drops the offending field, counts it under its
reason (the keys of `HEALTH_COUNTERS`) and keeps the valid ones. `put` sets the result on a
span for the handles' record methods. Calls that open a span of their own (a shadow decision, a
late outcome, the queue wait) pass the result as the span's starting attributes instead, so
samplers see them.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Final

from opentelemetry.trace import Span

from clinotel.instrumentation._internal.fields import FieldSet, FieldValues
from clinotel.instrumentation._internal.models import TelemetryModel
from clinotel.instrumentation._internal.runtime import Runtime, contain, refuse
from clinotel.instrumentation.errors import TelemetryValidationError
from clinotel.semconv import AttributeValue, InvalidAttributeError

__all__ = ["Model", "put", "validate", "validate_shared"]

_MEMO_TEXT: Final = 256
"""Records with a longer string are not remembered (free text rarely repeats)."""

Model = type[TelemetryModel] | FieldSet
"""A typed model class, or the field set of a record that has no public model."""
Fields = Mapping[str, Any] | FieldValues


def validate(
    rt: Runtime, model: Model, fields: Fields, given: TelemetryModel | None = None
) -> dict[str, AttributeValue]:
    """The attributes of a record of kind `model`: `given` (a model instance, checked when it was
    built) or `fields` by name, never both. None means unset. The dict is the caller's own."""
    if given is not None:
        return _given(model, fields, given)
    return dict(_checked(rt, model if type(model) is FieldSet else model.field_set, fields))  # type: ignore[union-attr]


def validate_shared(rt: Runtime, field_set: FieldSet, fields: Fields) -> dict[str, AttributeValue]:
    """`validate` for fields by name, without the copy: the dict may be shared, so read it and
    never mutate it."""
    return _checked(rt, field_set, fields)


def put(rt: Runtime, span: Span, model: Model, fields: Fields, given: TelemetryModel | None = None) -> None:
    """Validate a record as `model` (see `validate`) and set the attributes that pass on `span`.
    Refusals raise as they should (strict mode); any other error is contained, so telemetry never
    breaks the workflow. One attribute goes through the SDK's `set_attribute`, a third of the
    cost of `set_attributes` with one entry."""
    try:
        if given is not None:
            attributes = _given(model, fields, given)
        else:
            attributes = _checked(rt, model if type(model) is FieldSet else model.field_set, fields)  # type: ignore[union-attr]
        if len(attributes) == 1:
            ((key, value),) = attributes.items()
            span.set_attribute(key, value)
        elif attributes:
            span.set_attributes(attributes)
    except TelemetryValidationError:
        raise
    except Exception as e:  # noqa: BLE001 - telemetry must not break the workflow
        contain(rt, e)


def _checked(rt: Runtime, field_set: FieldSet, fields: Fields) -> dict[str, AttributeValue]:
    """The validated attributes of `fields`; shared with the field set's memo, so not to be
    mutated. A record that passed whole is remembered (`fields.Memo`), so a repeat costs one
    lookup. A record with a refusal is never kept, so every refusal is raised or counted as
    before."""
    flat = (*fields, *fields.values())
    memo_key: tuple[object, ...] | None = flat
    try:
        hit = field_set.memo.recall(flat)
    except TypeError:  # an unhashable value: validated (and refused) the long way
        memo_key = hit = None
    if hit is not None:
        return hit
    clean = True
    for needed in field_set.required:
        if needed not in fields:
            missing = sorted(field_set.required.difference(fields))
            refuse(rt, "invalid", f"{field_set.name} needs {', '.join(missing)}")
            clean = False
            break
    checks = field_set.checks
    out: dict[str, AttributeValue] = {}
    for name, value in fields.items():
        if value is None:
            continue
        field = name if type(name) is str else name.key  # type: ignore[union-attr]
        found = checks.get(field)
        if found is None:
            refuse(rt, "unregistered", field_set.unknown(field))
            clean = False
            continue
        key, check = found
        if type(value) is str and len(value) > _MEMO_TEXT:
            memo_key = None  # long free text: kept out of the memo's memory
        try:
            out[key] = check(value.value if type(value) is not str and isinstance(value, StrEnum) else value)
        except InvalidAttributeError as e:
            refuse(rt, "phi" if e.looks_like_phi else "invalid", str(e))
            clean = False
    if clean and memo_key is not None and field_set.unmemoized.isdisjoint(fields):
        field_set.memo.keep(memo_key, out)
    return out


def _given(model: Model, fields: Fields, given: TelemetryModel) -> dict[str, AttributeValue]:
    if fields:
        raise TypeError(f"pass a {_name(model)} or its fields, not both")
    if type(given) is not model and (isinstance(model, FieldSet) or not isinstance(given, model)):
        raise TypeError(f"expected a {_name(model)}, got a {type(given).__name__}")
    return given.to_attributes()


def _name(model: Model) -> str:
    return model.name if isinstance(model, FieldSet) else model.__name__
