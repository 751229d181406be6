"""clinotel.semconv rendered as OTTL for the OpenTelemetry Collector contrib's `transform`
processor: the allowlist and PHI rules that `clinotel serve` applies in SQL, for a deployment
where the contrib collector writes `otel_traces` instead (compose's contrib variant).

The same definitions as `clinotel.collector.sql`, in the collector's language: unregistered keys
are dropped (`keep_keys`), a pseudonym must have the pseudonym form, free text has PHI patterns
redacted (span and event names, status messages, tracestates, the scope's name and version, the
resource's free text), a value of another type than its key's is dropped (the SQL reads a number's
text against the PHI patterns instead), a number is held to its key's range, and a coded string
that looks like PHI, or lacks its key's registered form, is dropped whole. The
regular expressions are the RE2 subset Python and Go share. Links (their attributes and
tracestates) are outside the transform processor's contexts: the contrib variant leaves them to
the SDK-side gate."""

from __future__ import annotations

from typing import Final

from clinotel.collector.store.phi_sql import allowed_keys
from clinotel.semconv import (
    PHI_REGEX,
    PSEUDONYM_PATTERN,
    REDACTED,
    REGISTRY,
    UUID_PATTERN,
    AttrType,
    PhiClass,
    Scope,
)
from clinotel.semconv import attributes as A

__all__ = ["string", "transform_processor"]

_SPAN: Final = (Scope.SPAN,)
_EVENT: Final = (Scope.EVENT, Scope.SPAN)


def string(text: str) -> str:
    """An OTTL string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_PHI: Final = string(PHI_REGEX)
_KINDS: Final = {
    AttrType.STRING: ("IsString",),
    AttrType.BOOLEAN: ("IsBool",),
    AttrType.INT: ("IsInt", "IsDouble"),
    AttrType.DOUBLE: ("IsDouble", "IsInt"),
}
"""The OTTL type checks a registered type's value must pass (a number may come either way: a
JavaScript SDK sends whole doubles as ints)."""
_WHOLE_UUID: Final = string(f"^{UUID_PATTERN}$")


def _key_list(keys: list[str]) -> str:
    return "[" + ", ".join(string(k) for k in sorted(keys)) + "]"


def _scrub(path: str) -> str:
    """Redact PHI in a string field, keeping a whole UUID as `clinotel.semconv.scrub` does."""
    keep = f"{path} != nil and not IsMatch({path}, {_WHOLE_UUID})"
    return f"replace_pattern({path}, {_PHI}, {string(REDACTED)}) where {keep}"


def _attribute_rules(scopes: tuple[Scope, ...]) -> list[str]:
    out = [f"keep_keys(attributes, {_key_list(allowed_keys(scopes))})"]
    pseudonym = string(f"^{PSEUDONYM_PATTERN}$")
    free = set(allowed_keys(scopes, PhiClass.FREE_TEXT))
    pseudonyms = set(allowed_keys(scopes, PhiClass.PSEUDONYM))
    patterns = {d.key: d.pattern for d in REGISTRY if d.pattern and not d.closed}
    defs = {d.key: d for d in REGISTRY}
    for key in sorted(allowed_keys(scopes)):
        at = f"attributes[{string(key)}]"
        d = defs[key]
        # a value of another type than its key's goes, as the library refuses it: the checks below
        # read strings alone, and a number's text (`clinical.site` as the int 5558675309) was kept
        kinds = " or ".join(f"{check}({at})" for check in _KINDS[d.type])
        out.append(f"delete_key(attributes, {string(key)}) where {at} != nil and not ({kinds})")
        if d.type in (AttrType.INT, AttrType.DOUBLE):  # held to its range, as the SQL holds it
            bounds = [f"{at} < {d.minimum!r}"] if d.minimum is not None else []
            bounds += [f"{at} > {d.maximum!r}"] if d.maximum is not None else []
            if bounds:
                out.append(f"delete_key(attributes, {string(key)}) where {at} != nil and ({' or '.join(bounds)})")
        if key in pseudonyms:
            out.append(f"delete_key(attributes, {string(key)}) where {at} != nil and not IsMatch({at}, {pseudonym})")
        elif key in free:
            out.append(_scrub(at))
        else:
            out.append(f"delete_key(attributes, {string(key)}) where IsString({at}) and IsMatch({at}, {_PHI})")
            if key in patterns:  # a coded value must have its registered form, as the library checks it
                form = string(f"^(?:{patterns[key]})$")
                out.append(f"delete_key(attributes, {string(key)}) where IsString({at}) and not IsMatch({at}, {form})")
    return out


def transform_processor(tenant_env: str = "CLINOTEL_TENANT") -> dict[str, object]:
    """The `transform` processor's configuration. The contrib collector has no per-token tenancy:
    the tenant is one per collector deployment, from the environment variable `tenant_env`."""
    resource = [  # the allowlist, types and PHI rules of the resource's keys (service.name is free text)
        *_attribute_rules((Scope.RESOURCE,)),
        f'set(attributes[{string(A.TENANT_ID.key)}], "${{env:{tenant_env}}}")',
    ]
    span = [*_attribute_rules(_SPAN), _scrub("name"), _scrub("status.message"), _scrub("trace_state")]
    event = [*_attribute_rules(_EVENT), _scrub("name")]
    return {
        "error_mode": "ignore",
        "trace_statements": [
            {"context": "resource", "statements": resource},
            {"context": "scope", "statements": [_scrub("name"), _scrub("version")]},
            {"context": "span", "statements": span},
            {"context": "spanevent", "statements": event},
        ],
    }
