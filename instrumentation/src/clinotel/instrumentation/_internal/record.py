"""The one recording path: every public call that records attributes validates them here.

`validate` turns what a caller passed (a typed model instance, its fields as keywords, or
registered attributes by key) into span attributes under the registry's rules: strict mode
raises TelemetryValidationError; production mode drops the offending field, counts it under its
reason (the keys of `HEALTH_COUNTERS`) and keeps the valid ones. `record` sets the result on a
span. Calls that open a span of their own (a shadow decision, a late outcome, the queue wait)
pass the result as the span's starting attributes instead, so samplers see them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.trace import Span

from clinotel.instrumentation._internal.fields import FieldSet, FieldValues
from clinotel.instrumentation._internal.models import TelemetryModel
from clinotel.instrumentation._internal.runtime import Runtime
from clinotel.semconv import AttributeValue

__all__ = ["Model", "record", "validate"]

Model = type[TelemetryModel] | FieldSet
"""A typed model class, or the field set of a record that has no public model."""


def validate(
    rt: Runtime,
    model: Model,
    fields: Mapping[str, Any] | FieldValues,
    given: TelemetryModel | None = None,
) -> dict[str, AttributeValue]:
    """The attributes of a record of kind `model`: `given` (a model instance, checked when it was
    built) or `fields` by name, never both."""
    if given is None:
        field_set = model if type(model) is FieldSet else model.field_set  # type: ignore[union-attr]
        return field_set.validate(fields, rt.refuse)
    if fields:
        raise TypeError(f"pass a {_name(model)} or its fields, not both")
    if type(given) is not model and (isinstance(model, FieldSet) or not isinstance(given, model)):
        raise TypeError(f"expected a {_name(model)}, got a {type(given).__name__}")
    return given.to_attributes()


def record(
    rt: Runtime,
    model: Model,
    span: Span,
    fields: Mapping[str, Any] | FieldValues,
    given: TelemetryModel | None = None,
) -> None:
    """Validate a record as `model` (see `validate`) and set the attributes that pass on `span`."""
    attributes = validate(rt, model, fields, given)
    if attributes:
        span.set_attributes(attributes)


def _name(model: Model) -> str:
    return model.name if isinstance(model, FieldSet) else model.__name__
