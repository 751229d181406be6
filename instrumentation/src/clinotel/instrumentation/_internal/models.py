"""Typed helpers for what a stage records: pydantic models whose rules come from the registry."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, ClassVar, Final, get_args

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.fields import FieldInfo

from clinotel.instrumentation._internal.fields import FieldSet, Memo, Validator
from clinotel.semconv import (
    ActionStatus,
    ActorRole,
    Acuity,
    AgeBand,
    ArrivalMode,
    AttributeDef,
    AttributeValue,
    DecisionSource,
    OutcomeStatus,
    PayerClass,
    RaceEthnicity,
    ReviewAction,
    Risk,
    RolloutCohort,
    RolloutMode,
    Sex,
    VitalBand,
)
from clinotel.semconv import attributes as A

__all__ = [
    "Action",
    "Cohort",
    "DataQuality",
    "Decision",
    "Effort",
    "FlagEvaluation",
    "Inputs",
    "Outcome",
    "Review",
    "TelemetryModel",
]


_BUILT: Final[dict[type, Memo[tuple[dict[str, Any], frozenset[str]]]]] = {}
"""Per model class: the validated state (fields and fields set) of each set of arguments seen.
A module dict, as pydantic's class attribute lookups take a detour."""
_set: Final = object.__setattr__


def _enum_annotated(f: FieldInfo) -> bool:
    return any(isinstance(t, type) and issubclass(t, StrEnum) for t in (f.annotation, *get_args(f.annotation)))


class TelemetryModel(BaseModel):
    """A group of attributes recorded together; each field maps to one registered attribute.

    The model's `field_set` holds the rules, and checks the values given to the constructor as
    it checks a record given as keywords: codes that look like PHI, out-of-range numbers, wrong
    types and unknown values fail construction with a pydantic ValidationError naming the field
    (never the value).
    """

    # hide_input_in_errors: a refused value may be PHI, and must not reach logs through the error.
    # use_enum_values: fields hold the plain codes, ready to export.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True, use_enum_values=True)

    FIELDS: ClassVar[dict[str, AttributeDef]] = {}
    field_set: ClassVar[FieldSet] = FieldSet("TelemetryModel", {})
    _keys: ClassVar[tuple[tuple[str, str], ...]] = ()
    _untyped: ClassVar[tuple[tuple[str, Validator], ...]] = ()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        required = frozenset(name for name, f in cls.model_fields.items() if f.is_required())
        cls.field_set = FieldSet.of(cls.__name__, cls.FIELDS, required=required)
        cls._keys = tuple((name, d.key) for name, d in cls.FIELDS.items())
        checks = cls.field_set.checks
        cls._untyped = tuple(
            (name, checks[name][1]) for name in cls.FIELDS if not _enum_annotated(cls.model_fields[name])
        )
        _BUILT[cls] = Memo()

    def __init__(self, /, **data: Any) -> None:
        # A service builds the same few records (a cohort, a decision's codes) over and over, and
        # pydantic's validation costs microseconds on every request. A model built before from
        # the very same arguments (values and their types: True == 1, and only one may be valid)
        # lends its validated state; anything else, including every refusal, is validated.
        key = (*data, *data.values())
        try:
            built = _BUILT[type(self)].recall(key)
        except (TypeError, KeyError):  # an unhashable value: pydantic says what is wrong with it
            built, memo = None, None
        else:
            memo = _BUILT[type(self)] if built is None else None
        if built is None:
            super().__init__(**data)
            if memo is not None and not any(type(v) is str and len(v) > 256 for v in data.values()):
                memo.keep(key, (dict(self.__dict__), frozenset(self.__pydantic_fields_set__)))
            return
        # As pydantic's own __copy__ does: the same state, in containers of this instance's own.
        fields, fields_set = built
        _set(self, "__dict__", fields.copy())
        _set(self, "__pydantic_fields_set__", set(fields_set))
        _set(self, "__pydantic_extra__", None)
        _set(self, "__pydantic_private__", None)

    @model_validator(mode="before")
    @classmethod
    def _check_registry(cls, data: Any) -> Any:
        # The registry's validators, on the values as given (before pydantic could coerce "yes"
        # into True): the checks a record given as keywords meets. Fields typed with a registry
        # enum are held to that same closed set by pydantic itself.
        if type(data) is dict or isinstance(data, Mapping):
            for name, check in cls._untyped:
                value = data.get(name)
                if value is not None:
                    check(value.value if isinstance(value, StrEnum) else value)
        return data

    def to_attributes(self) -> dict[str, AttributeValue]:
        """The span attributes this model stands for; unset fields are left out."""
        values = self.__dict__
        return {key: values[name] for name, key in self._keys if values[name] is not None}


class Decision(TelemetryModel):
    """What the model, rules or fallback recommended (the `decide` stage)."""

    FIELDS: ClassVar[dict[str, AttributeDef]] = {
        "source": A.DECISION_SOURCE,
        "value": A.DECISION_VALUE,
        "confidence": A.DECISION_CONFIDENCE,
        "risk": A.DECISION_RISK,
        "model_name": A.DECISION_MODEL_NAME,
        "model_version": A.DECISION_MODEL_VERSION,
        "fallback_reason": A.DECISION_FALLBACK_REASON,
        "rollout_mode": A.ROLLOUT_MODE,
        "rollout_cohort": A.ROLLOUT_COHORT,
    }

    source: DecisionSource
    value: str | None = None
    confidence: float | None = None
    risk: Risk | None = None
    model_name: str | None = None
    model_version: str | None = None
    fallback_reason: str | None = None
    rollout_mode: RolloutMode | None = None
    rollout_cohort: RolloutCohort | None = None


class Review(TelemetryModel):
    """What the clinician did with the recommendation (the `review` stage)."""

    FIELDS: ClassVar[dict[str, AttributeDef]] = {
        "action": A.REVIEW_ACTION,
        "actor_role": A.REVIEW_ACTOR_ROLE,
        "reason": A.REVIEW_REASON,
        "final_value": A.REVIEW_FINAL_VALUE,
        "latency_ms": A.REVIEW_LATENCY_MS,
    }

    action: ReviewAction
    actor_role: ActorRole | None = None
    reason: str | None = None
    final_value: str | None = None
    latency_ms: float | None = None


class Action(TelemetryModel):
    """The action executed downstream (the `act` stage)."""

    FIELDS: ClassVar[dict[str, AttributeDef]] = {
        "type": A.ACTION_TYPE,
        "target": A.ACTION_TARGET,
        "status": A.ACTION_STATUS,
        "automated": A.ACTION_AUTOMATED,
    }

    type: str
    target: str | None = None
    status: ActionStatus | None = None
    automated: bool | None = None


class Outcome(TelemetryModel):
    """How the workflow ended (`complete`) and, days later, its ground truth (`outcome`)."""

    FIELDS: ClassVar[dict[str, AttributeDef]] = {
        "status": A.OUTCOME_STATUS,
        "label": A.OUTCOME_LABEL,
        "adverse_event": A.OUTCOME_ADVERSE_EVENT,
        "escalation_needed": A.OUTCOME_ESCALATION_NEEDED,
    }

    status: OutcomeStatus | None = None
    label: str | None = None
    adverse_event: bool | None = None
    escalation_needed: bool | None = None


class Cohort(TelemetryModel):
    """Fairness slices of the workflow's patient: coded values only."""

    FIELDS: ClassVar[dict[str, AttributeDef]] = {
        "age_band": A.COHORT_AGE_BAND,
        "sex": A.COHORT_SEX,
        "language": A.COHORT_LANGUAGE,
        "payer_class": A.COHORT_PAYER_CLASS,
        "race_ethnicity": A.COHORT_RACE_ETHNICITY,
        "acuity": A.COHORT_ACUITY,
    }

    age_band: AgeBand | None = None
    sex: Sex | None = None
    language: str | None = None
    payer_class: PayerClass | None = None
    race_ethnicity: RaceEthnicity | None = None
    acuity: Acuity | None = None


class FlagEvaluation(TelemetryModel):
    """A feature-flag evaluation, with OpenTelemetry's keys; never the evaluation context."""

    FIELDS: ClassVar[dict[str, AttributeDef]] = {
        "key": A.FEATURE_FLAG_KEY,
        "variant": A.FEATURE_FLAG_VARIANT,
        "provider": A.FEATURE_FLAG_PROVIDER,
        "reason": A.FEATURE_FLAG_REASON,
    }

    key: str
    variant: str | None = None
    provider: str | None = None
    reason: str | None = None


class Inputs(TelemetryModel):
    """What the decision was made from, as coded bands and presence flags (watched for drift)."""

    FIELDS: ClassVar[dict[str, AttributeDef]] = {
        "arrival_mode": A.INPUT_ARRIVAL_MODE,
        "heart_rate_band": A.INPUT_HEART_RATE_BAND,
        "resp_rate_band": A.INPUT_RESP_RATE_BAND,
        "spo2_band": A.INPUT_SPO2_BAND,
        "temperature_band": A.INPUT_TEMPERATURE_BAND,
        "bp_band": A.INPUT_BP_BAND,
        "has_chief_complaint": A.INPUT_HAS_CHIEF_COMPLAINT,
        "has_medications": A.INPUT_HAS_MEDICATIONS,
        "has_allergies": A.INPUT_HAS_ALLERGIES,
    }

    arrival_mode: ArrivalMode | None = None
    heart_rate_band: VitalBand | None = None
    resp_rate_band: VitalBand | None = None
    spo2_band: VitalBand | None = None
    temperature_band: VitalBand | None = None
    bp_band: VitalBand | None = None
    has_chief_complaint: bool | None = None
    has_medications: bool | None = None
    has_allergies: bool | None = None


class DataQuality(TelemetryModel):
    """Whether the decision's data was complete, fresh and mapped."""

    FIELDS: ClassVar[dict[str, AttributeDef]] = {
        "context_missing": A.DATA_CONTEXT_MISSING,
        "demographics_age_h": A.DATA_DEMOGRAPHICS_AGE_H,
        "lab_delay_min": A.DATA_LAB_DELAY_MIN,
        "mapping_errors": A.DATA_MAPPING_ERRORS,
    }

    context_missing: bool | None = None
    demographics_age_h: float | None = None
    lab_delay_min: float | None = None
    mapping_errors: int | None = None


class Effort(TelemetryModel):
    """Human effort a stage took: minutes and manual touches, and the role that spent them."""

    FIELDS: ClassVar[dict[str, AttributeDef]] = {
        "minutes": A.EFFORT_MINUTES,
        "touches": A.EFFORT_TOUCHES,
        "actor_role": A.EFFORT_ACTOR_ROLE,
    }

    minutes: float | None = None
    touches: int | None = None
    actor_role: ActorRole | None = None
