"""The coded values of clinotel's enumerated attributes."""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ActionStatus",
    "ActorRole",
    "Acuity",
    "AgeBand",
    "ArrivalMode",
    "DecisionSource",
    "FeedbackCategory",
    "FeedbackSeverity",
    "IngestSource",
    "Language",
    "OutcomeStatus",
    "PayerClass",
    "RaceEthnicity",
    "ReviewAction",
    "ReworkKind",
    "Risk",
    "RolloutCohort",
    "RolloutMode",
    "Sex",
    "Stage",
    "VitalBand",
]


class Stage(StrEnum):
    """The lifecycle stages of a workflow; services may add custom stages."""

    INGEST = "ingest"
    QUEUE = "queue"
    DECIDE = "decide"
    REVIEW = "review"
    ACT = "act"
    COMPLETE = "complete"
    OUTCOME = "outcome"
    """Late ground truth, recorded days later as its own span linked to the workflow."""


class IngestSource(StrEnum):
    EHR = "ehr"
    PORTAL = "portal"
    PHONE = "phone"
    HL7 = "hl7"
    FHIR = "fhir"
    KIOSK = "kiosk"
    REFERRAL = "referral"
    OTHER = "other"


class DecisionSource(StrEnum):
    MODEL = "model"
    RULES = "rules"
    HUMAN = "human"
    FALLBACK = "fallback"


class Risk(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class RolloutMode(StrEnum):
    """The stages of a rollout, from least to most autonomous."""

    SHADOW = "shadow"
    RECOMMEND = "recommend"
    ASSIST = "assist"
    BOUNDED_AUTO = "bounded_auto"
    AUTONOMOUS = "autonomous"


class RolloutCohort(StrEnum):
    CANARY = "canary"
    BASELINE = "baseline"


class ReviewAction(StrEnum):
    ACCEPT = "accept"
    OVERRIDE = "override"
    REJECT = "reject"
    ESCALATE = "escalate"
    TIMEOUT = "timeout"


class ActorRole(StrEnum):
    NURSE = "nurse"
    PHYSICIAN = "physician"
    RESIDENT = "resident"
    ADVANCED_PRACTICE = "advanced_practice"
    PHARMACIST = "pharmacist"
    SCHEDULER = "scheduler"
    CLERK = "clerk"
    OTHER = "other"


class ActionStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


class OutcomeStatus(StrEnum):
    COMPLETED = "completed"
    ABANDONED = "abandoned"
    ESCALATED = "escalated"
    NO_SHOW = "no_show"
    CANCELLED = "cancelled"
    ERROR = "error"


class AgeBand(StrEnum):
    """Age bands; everyone 80 and over shares one band, as HIPAA safe harbour requires past 89."""

    CHILD = "0-17"
    ADULT_18_34 = "18-34"
    ADULT_35_49 = "35-49"
    ADULT_50_64 = "50-64"
    ADULT_65_79 = "65-79"
    ADULT_80_PLUS = "80+"
    UNKNOWN = "unknown"


class Sex(StrEnum):
    """Administrative sex, with FHIR's codes."""

    FEMALE = "female"
    MALE = "male"
    OTHER = "other"
    UNKNOWN = "unknown"


class Language(StrEnum):
    """Well-known preferred languages (ISO 639-1); any ISO 639 code is accepted."""

    ENGLISH = "en"
    SPANISH = "es"
    CHINESE = "zh"
    VIETNAMESE = "vi"
    ARABIC = "ar"
    FRENCH = "fr"
    PORTUGUESE = "pt"
    RUSSIAN = "ru"
    HAITIAN_CREOLE = "ht"
    SOMALI = "so"
    OTHER = "other"
    UNKNOWN = "unknown"


class PayerClass(StrEnum):
    COMMERCIAL = "commercial"
    MEDICARE = "medicare"
    MEDICAID = "medicaid"
    MILITARY = "military"
    SELF_PAY = "self_pay"
    CHARITY = "charity"
    OTHER = "other"
    UNKNOWN = "unknown"


class RaceEthnicity(StrEnum):
    """Self-reported race and ethnicity, after the 2024 US OMB categories; optional."""

    AMERICAN_INDIAN_ALASKA_NATIVE = "american_indian_alaska_native"
    ASIAN = "asian"
    BLACK = "black"
    HISPANIC_LATINO = "hispanic_latino"
    MIDDLE_EASTERN_NORTH_AFRICAN = "middle_eastern_north_african"
    NATIVE_HAWAIIAN_PACIFIC_ISLANDER = "native_hawaiian_pacific_islander"
    WHITE = "white"
    MULTIRACIAL = "multiracial"
    OTHER = "other"
    DECLINED = "declined"
    UNKNOWN = "unknown"


class Acuity(StrEnum):
    """Presenting acuity band of the patient, for slicing (not the decision itself)."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    UNKNOWN = "unknown"


class ArrivalMode(StrEnum):
    """How the patient arrived (a decision input)."""

    WALK_IN = "walk_in"
    AMBULANCE = "ambulance"
    HELICOPTER = "helicopter"
    TRANSFER = "transfer"
    POLICE = "police"
    TELEHEALTH = "telehealth"
    OTHER = "other"
    UNKNOWN = "unknown"


class VitalBand(StrEnum):
    """A vital sign as a band (a decision input), never the measurement itself."""

    CRITICAL_LOW = "critical_low"
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    CRITICAL_HIGH = "critical_high"
    MISSING = "missing"


class FeedbackCategory(StrEnum):
    """What a clinician's feedback on the automation is about; each category has an owning team."""

    WRONG_PRIORITY = "wrong_priority"
    MISSING_CONTEXT = "missing_context"
    CONFUSING_EXPLANATION = "confusing_explanation"
    TOO_SLOW = "too_slow"
    WRONG_DATA = "wrong_data"
    ALERT_FATIGUE = "alert_fatigue"
    WORKFLOW_DISRUPTION = "workflow_disruption"
    OTHER = "other"


class FeedbackSeverity(StrEnum):
    """How much the problem a clinician reports matters; `safety` means possible patient harm."""

    MINOR = "minor"
    MODERATE = "moderate"
    MAJOR = "major"
    SAFETY = "safety"


class ReworkKind(StrEnum):
    """Human work a workflow created after it ended."""

    REOPENED = "reopened"
    RESCHEDULED = "rescheduled"
    RETRIAGED = "retriaged"
    CALLBACK = "callback"
    OTHER = "other"
