"""clinotel's semantic conventions: the attribute registry, coded values and PHI rules.

This package is the single source of truth for every attribute key, allowed value and PHI pattern.
The instrumentation library validates against it, the collector renders its SQL allowlist and
scrubber from it, the dashboards read column names from it, and `docs/semantic-conventions.md` is
generated from it (`clinotel semconv docs`).
"""

from clinotel.semconv import attributes
from clinotel.semconv._docs import render_markdown
from clinotel.semconv._phi import (
    MIN_KEY_BYTES,
    PHI_PATTERN,
    PHI_PATTERNS,
    PHI_REGEX,
    REDACTED,
    UUID_PATTERN,
    PhiPattern,
    Pseudonymizer,
    contains_phi,
    phi_kinds,
    pseudonymize,
    scrub,
)
from clinotel.semconv._registry import (
    CODE_PATTERN,
    LABEL_PATTERN,
    PSEUDONYM_PATTERN,
    AttributeDef,
    AttributeValue,
    AttrType,
    InvalidAttributeError,
    PhiClass,
    Registry,
    Scope,
    preview,
)
from clinotel.semconv._values import (
    ActionStatus,
    ActorRole,
    Acuity,
    AgeBand,
    DecisionSource,
    IngestSource,
    Language,
    OutcomeStatus,
    PayerClass,
    RaceEthnicity,
    ReviewAction,
    Risk,
    RolloutCohort,
    RolloutMode,
    Sex,
    Stage,
)
from clinotel.semconv.attributes import HEALTH_SPAN_NAME, REGISTRY

__all__ = [
    "CODE_PATTERN",
    "HEALTH_SPAN_NAME",
    "LABEL_PATTERN",
    "MIN_KEY_BYTES",
    "PHI_PATTERN",
    "PHI_PATTERNS",
    "PHI_REGEX",
    "PSEUDONYM_PATTERN",
    "REDACTED",
    "REGISTRY",
    "UUID_PATTERN",
    "ActionStatus",
    "ActorRole",
    "Acuity",
    "AgeBand",
    "AttrType",
    "AttributeDef",
    "AttributeValue",
    "DecisionSource",
    "IngestSource",
    "InvalidAttributeError",
    "Language",
    "OutcomeStatus",
    "PayerClass",
    "PhiClass",
    "PhiPattern",
    "Pseudonymizer",
    "RaceEthnicity",
    "Registry",
    "ReviewAction",
    "Risk",
    "RolloutCohort",
    "RolloutMode",
    "Scope",
    "Sex",
    "Stage",
    "attributes",
    "contains_phi",
    "phi_kinds",
    "preview",
    "pseudonymize",
    "render_markdown",
    "scrub",
]
