"""Every attribute clinotel exports, defined once.

The names here are the only spelling of each key in the code base: the library validates against
these definitions, the collector renders its allowlist from them, the dashboards name columns after
them, and `docs/semantic-conventions.md` is generated from them. Anything not registered here is
dropped before export and counted.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from clinotel.semconv._registry import (
    CODE_PATTERN,
    LABEL_PATTERN,
    PSEUDONYM_PATTERN,
    AttributeDef,
    AttrType,
    PhiClass,
    Registry,
    Scope,
)
from clinotel.semconv._values import (
    ActionStatus,
    ActorRole,
    Acuity,
    AgeBand,
    ArrivalMode,
    DecisionSource,
    FeedbackCategory,
    FeedbackSeverity,
    IngestSource,
    Language,
    OutcomeStatus,
    PayerClass,
    RaceEthnicity,
    ReviewAction,
    ReworkKind,
    Risk,
    RolloutCohort,
    RolloutMode,
    Sex,
    Stage,
    VitalBand,
)

REGISTRY: Final = Registry()

GROUPS: Final[dict[str, str]] = {
    "identity": "Which workflow a span belongs to.",
    "where": "Where in the hospital the workflow runs.",
    "cohort": "Fairness slices: coded values only, set on the workflow's root span.",
    "ingest": "The `ingest` stage.",
    "queue": "The `queue` stage.",
    "decision": "The `decide` stage: what the model, rules or fallback recommended.",
    "rollout": "How far the automation is rolled out for this decision.",
    "feature_flag": "OpenTelemetry's feature-flag conventions (never the evaluation context).",
    "review": "The `review` stage: what the clinician did with the recommendation.",
    "action": "The `act` stage: the action executed downstream.",
    "scheduling": "Scheduling workflows.",
    "outcome": "The workflow's end, and late ground truth.",
    "input": "What the decision was made from, as coded bands and presence flags: watched for drift.",
    "data_quality": "Whether the decision's data was complete, fresh and mapped: watched for failures.",
    "effort": "Human effort a stage took, and rework a workflow created afterwards (never who).",
    "feedback": "A clinician's coded feedback on the automation (never free text).",
    "telemetry": "clinotel's own health figures.",
    "change": "Change events (`clinotel.change` spans): what changed, by whom (a role or pipeline), where.",
    "opentelemetry": "Standard OpenTelemetry attributes that are safe to keep.",
}

_RES = (Scope.RESOURCE,)
_SPAN = (Scope.SPAN,)
_SPAN_EVENT = (Scope.SPAN, Scope.EVENT)


def _values(e: type[StrEnum]) -> tuple[str, ...]:
    return tuple(m.value for m in e)


def _string(
    key: str,
    brief: str,
    group: str,
    *,
    values: type[StrEnum] | tuple[str, ...] = (),
    pattern: str | None = None,
    phi: PhiClass = PhiClass.NONE,
    scope: tuple[Scope, ...] = _SPAN,
    stages: tuple[str, ...] = (),
) -> AttributeDef:
    vals = values if isinstance(values, tuple) else _values(values)
    return REGISTRY.add(
        AttributeDef(
            key, AttrType.STRING, brief, group, scope=scope, values=vals, pattern=pattern, phi=phi, stages=stages
        )
    )


def _number(
    key: str,
    brief: str,
    group: str,
    *,
    integer: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    scope: tuple[Scope, ...] = _SPAN,
    stages: tuple[str, ...] = (),
) -> AttributeDef:
    kind = AttrType.INT if integer else AttrType.DOUBLE
    return REGISTRY.add(
        AttributeDef(key, kind, brief, group, scope=scope, minimum=minimum, maximum=maximum, stages=stages)
    )


def _boolean(key: str, brief: str, group: str, *, stages: tuple[str, ...] = ()) -> AttributeDef:
    return REGISTRY.add(AttributeDef(key, AttrType.BOOLEAN, brief, group, stages=stages))


_DECIDE = (Stage.DECIDE.value,)
_REVIEW = (Stage.REVIEW.value,)

# identity
WORKFLOW_KIND: Final = _string(
    "clinical.workflow.kind", "The kind of workflow: triage, scheduling, …", "identity", pattern=CODE_PATTERN
)
WORKFLOW_ID: Final = _string(
    "clinical.workflow.id",
    "Pseudonymous workflow id: HMAC-SHA256 of the MRN, encounter or appointment id with the tenant's key.",
    "identity",
    pattern=PSEUDONYM_PATTERN,
    phi=PhiClass.PSEUDONYM,
)
WORKFLOW_STAGE: Final = _string(
    "clinical.workflow.stage",
    "The lifecycle stage a span measures; custom stages are lower-case codes.",
    "identity",
    values=Stage,
    pattern=CODE_PATTERN,
)
TENANT_ID: Final = _string(
    "clinical.tenant.id",
    "The hospital or health system; the collector overwrites it with the token's tenant.",
    "identity",
    pattern=LABEL_PATTERN,
    scope=_RES,
)

# where
SITE: Final = _string("clinical.site", "The site (hospital, clinic) code.", "where", pattern=LABEL_PATTERN)
DEPARTMENT: Final = _string("clinical.department", "The department code.", "where", pattern=LABEL_PATTERN)
SERVICE_LINE: Final = _string(
    "clinical.service_line", "The clinical service line (cardiology, oncology, …).", "where", pattern=LABEL_PATTERN
)

# cohort
COHORT_AGE_BAND: Final = _string(
    "clinical.cohort.age_band", "Age band of the patient.", "cohort", values=AgeBand, phi=PhiClass.QUASI
)
COHORT_SEX: Final = _string(
    "clinical.cohort.sex", "Administrative sex of the patient.", "cohort", values=Sex, phi=PhiClass.QUASI
)
COHORT_LANGUAGE: Final = _string(
    "clinical.cohort.language",
    "Preferred language, an ISO 639 code.",
    "cohort",
    values=Language,
    pattern=r"[a-z]{2,3}",
    phi=PhiClass.QUASI,
)
COHORT_PAYER_CLASS: Final = _string(
    "clinical.cohort.payer_class", "Payer class.", "cohort", values=PayerClass, phi=PhiClass.QUASI
)
COHORT_RACE_ETHNICITY: Final = _string(
    "clinical.cohort.race_ethnicity",
    "Self-reported race and ethnicity (optional; record only where governance approves).",
    "cohort",
    values=RaceEthnicity,
    phi=PhiClass.QUASI,
)
COHORT_ACUITY: Final = _string(
    "clinical.cohort.acuity", "Presenting acuity band.", "cohort", values=Acuity, phi=PhiClass.QUASI
)

# ingest and queue
INGEST_SOURCE: Final = _string(
    "clinical.ingest.source", "Where the request or EHR event came from.", "ingest", values=IngestSource
)
QUEUE_NAME: Final = _string(
    "clinical.queue.name", "The work queue (a worker pool or a human worklist).", "queue", pattern=LABEL_PATTERN
)
QUEUE_DEPTH: Final = _number(
    "clinical.queue.depth", "Items waiting in the queue when this one was enqueued.", "queue", integer=True, minimum=0
)

# decision
DECISION_SOURCE: Final = _string(
    "clinical.decision.source",
    "What produced the recommendation. Set on every decide span that records one, with its value: the latest such "
    "span is the workflow's decision, whole (a value without a source reads as no source).",
    "decision",
    values=DecisionSource,
    stages=_DECIDE,
)
DECISION_VALUE: Final = _string(
    "clinical.decision.value",
    "The recommendation as a code (ESI-2, a slot class), never free text.",
    "decision",
    pattern=LABEL_PATTERN,
    stages=_DECIDE,
)
DECISION_CONFIDENCE: Final = _number(
    "clinical.decision.confidence", "The model's confidence.", "decision", minimum=0.0, maximum=1.0, stages=_DECIDE
)
DECISION_RISK: Final = _string(
    "clinical.decision.risk", "Risk class of the recommendation.", "decision", values=Risk, stages=_DECIDE
)
DECISION_MODEL_NAME: Final = _string(
    "clinical.decision.model.name", "The model's name.", "decision", pattern=LABEL_PATTERN, stages=_DECIDE
)
DECISION_MODEL_VERSION: Final = _string(
    "clinical.decision.model.version", "The model's version.", "decision", pattern=LABEL_PATTERN, stages=_DECIDE
)
DECISION_FALLBACK_REASON: Final = _string(
    "clinical.decision.fallback_reason",
    "Why the fallback decided instead of the model.",
    "decision",
    values=("model_unavailable", "model_timeout", "model_error", "low_confidence", "input_missing", "flag_off"),
    pattern=CODE_PATTERN,
    stages=_DECIDE,
)
DECISION_SHADOW: Final = _boolean(
    "clinical.decision.shadow", "True for a shadow prediction that was recorded but not acted on.", "decision"
)

# rollout and feature flags
ROLLOUT_MODE: Final = _string(
    "clinical.rollout.mode", "The automation's rollout mode.", "rollout", values=RolloutMode, stages=_DECIDE
)
ROLLOUT_COHORT: Final = _string(
    "clinical.rollout.cohort", "Canary or baseline.", "rollout", values=RolloutCohort, stages=_DECIDE
)
FEATURE_FLAG_KEY: Final = _string(
    "feature_flag.key", "The flag's key.", "feature_flag", pattern=LABEL_PATTERN, scope=_SPAN_EVENT
)
FEATURE_FLAG_VARIANT: Final = _string(
    "feature_flag.result.variant", "The variant served.", "feature_flag", pattern=LABEL_PATTERN, scope=_SPAN_EVENT
)
FEATURE_FLAG_PROVIDER: Final = _string(
    "feature_flag.provider.name", "The flag provider.", "feature_flag", pattern=LABEL_PATTERN, scope=_SPAN_EVENT
)
FEATURE_FLAG_REASON: Final = _string(
    "feature_flag.result.reason",
    "Why this variant was served.",
    "feature_flag",
    values=("cached", "default", "disabled", "error", "split", "stale", "static", "targeting_match", "unknown"),
    scope=_SPAN_EVENT,
)

# review
REVIEW_ACTION: Final = _string(
    "clinical.review.action", "What the clinician did.", "review", values=ReviewAction, stages=_REVIEW
)
REVIEW_ACTOR_ROLE: Final = _string(
    "clinical.review.actor_role", "The reviewer's role (never who).", "review", values=ActorRole, stages=_REVIEW
)
REVIEW_REASON: Final = _string(
    "clinical.review.reason",
    "Coded reason for an override, rejection or escalation.",
    "review",
    values=(
        "clinical_judgement",
        "additional_information",
        "patient_preference",
        "model_error",
        "capacity",
        "policy",
        "other",
    ),
    pattern=CODE_PATTERN,
    stages=_REVIEW,
)
REVIEW_FINAL_VALUE: Final = _string(
    "clinical.review.final_value", "The value that was acted on, as a code.", "review", pattern=LABEL_PATTERN
)
REVIEW_LATENCY_MS: Final = _number(
    "clinical.review.latency_ms",
    "Time from recommendation shown to clinician action, when the review span does not cover it"
    " (reported by another system); otherwise the review span's duration is the latency.",
    "review",
    minimum=0.0,
)

# action
ACTION_TYPE: Final = _string(
    "clinical.action.type",
    "What was executed downstream (book_slot, assign_priority, notify, …).",
    "action",
    pattern=CODE_PATTERN,
)
ACTION_TARGET: Final = _string(
    "clinical.action.target", "The downstream system (ehr, scheduling, paging, …).", "action", pattern=CODE_PATTERN
)
ACTION_STATUS: Final = _string("clinical.action.status", "How the action ended.", "action", values=ActionStatus)
ACTION_AUTOMATED: Final = _boolean(
    "clinical.action.automated", "True when the action ran without a clinician approving it.", "action"
)

# scheduling
SCHEDULING_SLOTS_OFFERED: Final = _number(
    "clinical.scheduling.slots_offered", "Slots offered to the patient.", "scheduling", integer=True, minimum=0
)
SCHEDULING_SLOT_FILLED: Final = _boolean(
    "clinical.scheduling.slot_filled", "True when an offered slot was booked.", "scheduling"
)
SCHEDULING_LEAD_TIME_DAYS: Final = _number(
    "clinical.scheduling.lead_time_days", "Days from request to the booked appointment.", "scheduling", minimum=0.0
)

# outcome
OUTCOME_STATUS: Final = _string("clinical.outcome.status", "How the workflow ended.", "outcome", values=OutcomeStatus)
OUTCOME_LABEL: Final = _string(
    "clinical.outcome.label",
    "Late ground truth: the true value (for example the true acuity) as a code.",
    "outcome",
    pattern=LABEL_PATTERN,
)
OUTCOME_ADVERSE_EVENT: Final = _boolean(
    "clinical.outcome.adverse_event", "Late ground truth: an adverse event followed.", "outcome"
)
OUTCOME_ESCALATION_NEEDED: Final = _boolean(
    "clinical.outcome.escalation_needed", "Late ground truth: the case needed escalation.", "outcome"
)

# inputs of the decision (drift)
_INPUT_BRIEF = "band of the patient's {} the decision used (`missing` when absent)."


def _band(name: str, what: str) -> AttributeDef:
    return _string(f"clinical.input.{name}_band", "The " + _INPUT_BRIEF.format(what), "input", values=VitalBand)


INPUT_ARRIVAL_MODE: Final = _string(
    "clinical.input.arrival_mode", "How the patient arrived.", "input", values=ArrivalMode, stages=_DECIDE
)
INPUT_HEART_RATE_BAND: Final = _band("heart_rate", "heart rate")
INPUT_RESP_RATE_BAND: Final = _band("resp_rate", "respiratory rate")
INPUT_SPO2_BAND: Final = _band("spo2", "oxygen saturation")
INPUT_TEMPERATURE_BAND: Final = _band("temperature", "temperature")
INPUT_BP_BAND: Final = _band("bp", "systolic blood pressure")
INPUT_HAS_CHIEF_COMPLAINT: Final = _boolean(
    "clinical.input.has_chief_complaint", "A coded chief complaint was present.", "input", stages=_DECIDE
)
INPUT_HAS_MEDICATIONS: Final = _boolean(
    "clinical.input.has_medications", "The medication list was present.", "input", stages=_DECIDE
)
INPUT_HAS_ALLERGIES: Final = _boolean(
    "clinical.input.has_allergies", "The allergy list was present.", "input", stages=_DECIDE
)
INPUTS: Final = tuple(d for d in REGISTRY if d.group == "input")
"""The decision inputs whose distributions are watched for drift (`clinotel drift check`)."""

# data quality
DATA_CONTEXT_MISSING: Final = _boolean(
    "clinical.data.context_missing", "The encounter context (visit, location, attending) was missing.", "data_quality"
)
DATA_DEMOGRAPHICS_AGE_H: Final = _number(
    "clinical.data.demographics_age_h",
    "Hours since the demographics the decision used were last updated from the EHR.",
    "data_quality",
    minimum=0.0,
)
DATA_LAB_DELAY_MIN: Final = _number(
    "clinical.data.lab_delay_min",
    "Minutes between a lab result being final in the lab system and reaching the decision.",
    "data_quality",
    minimum=0.0,
)
DATA_MAPPING_ERRORS: Final = _number(
    "clinical.data.mapping_errors",
    "EHR fields that could not be mapped to the model's inputs.",
    "data_quality",
    integer=True,
    minimum=0,
)

# human effort and rework
REWORK_SPAN_NAME: Final = "clinical.rework"
"""The span `record_rework` sends: its own trace, linked to the workflow when its traceparent is known."""
FEEDBACK_SPAN_NAME: Final = "clinical.feedback"
"""The span `record_feedback` sends, like `REWORK_SPAN_NAME`."""
ABOUT_KIND: Final = _string(
    "clinical.about.kind",
    "The kind of workflow a feedback or rework record is about. Such records never carry"
    " `clinical.workflow.kind`, so they never count as workflows.",
    "effort",
    pattern=CODE_PATTERN,
)
EFFORT_MINUTES: Final = _number(
    "clinical.effort.minutes", "Human minutes this stage (or this rework) took.", "effort", minimum=0.0, maximum=1440.0
)
EFFORT_TOUCHES: Final = _number(
    "clinical.effort.touches",
    "Manual touches (clicks into a chart, calls, re-entries) this stage (or rework) took.",
    "effort",
    integer=True,
    minimum=0,
    maximum=10_000,
)
EFFORT_ACTOR_ROLE: Final = _string(
    "clinical.effort.actor_role", "The role of whoever spent the effort (never who).", "effort", values=ActorRole
)
REWORK_KIND: Final = _string("clinical.rework.kind", "What had to be done again.", "effort", values=ReworkKind)

# clinician feedback
FEEDBACK_CATEGORY: Final = _string(
    "clinical.feedback.category", "What the feedback is about (a code; never free text).", "feedback",
    values=FeedbackCategory,
)  # fmt: skip
FEEDBACK_SEVERITY: Final = _string(
    "clinical.feedback.severity", "How much it matters.", "feedback", values=FeedbackSeverity
)
FEEDBACK_ACTOR_ROLE: Final = _string(
    "clinical.feedback.actor_role", "The role of the clinician giving feedback (never who).", "feedback",
    values=ActorRole,
)  # fmt: skip

CHANGE_SPAN_NAME: Final = "clinotel.change"
"""The span of a change event (`record_change`, `clinotel changes add`, a kill switch's action)."""
CHANGE_KINDS: Final = ("deploy", "model", "flag", "rule", "config")
ACTOR_PATTERN: Final = r"(role|pipeline|service|rule):[a-z0-9][a-z0-9._-]{0,62}"
"""Who made a change: a role (`role:pharmacist`), a pipeline (`pipeline:ci-main`), a service or an
alert rule (`rule:canary_kill`); never a person's name or login."""

# change events
CHANGE_KIND: Final = _string("clinical.change.kind", "What kind of thing changed.", "change", values=CHANGE_KINDS)
CHANGE_NAME: Final = _string(
    "clinical.change.name", "What changed: a service, model, flag key, rule or setting name.", "change",
    pattern=LABEL_PATTERN,
)  # fmt: skip
CHANGE_VERSION: Final = _string(
    "clinical.change.version", "The version (or flag state, such as `off`) it changed to.", "change",
    pattern=LABEL_PATTERN,
)  # fmt: skip
CHANGE_ACTOR: Final = _string(
    "clinical.change.actor", "Who changed it: `role:…`, `pipeline:…`, `service:…` or `rule:…`, never a person.",
    "change", pattern=ACTOR_PATTERN,
)  # fmt: skip
CHANGE_WORKFLOW_KIND: Final = _string(
    "clinical.change.workflow_kind", "The workflow kind the change applies to (empty: every kind).", "change",
    pattern=CODE_PATTERN,
)  # fmt: skip
CHANGE_STAGE: Final = _string(
    "clinical.change.stage", "The workflow step the change applies to (empty: every step).", "change",
    pattern=CODE_PATTERN,
)  # fmt: skip
CHANGE_RESULT: Final = _string(
    "clinical.change.result", "How an automated change ended (a kill switch's action).", "change",
    values=("applied", "dry_run", "failed", "unchanged"),
)  # fmt: skip
CHANGE_SCOPE: Final = (SITE, DEPARTMENT, CHANGE_WORKFLOW_KIND, CHANGE_STAGE)
"""Where a change applies, below the tenant (which the collector stamps)."""

HEALTH_SPAN_NAME: Final = "clinotel.telemetry"
"""The span clinotel's exporter sends with its counters (the `clinotel.telemetry.*` attributes)."""

# clinotel's own health figures (deltas since the previous report)
TELEMETRY_DROPPED_UNREGISTERED: Final = _number(
    "clinotel.telemetry.dropped.unregistered",
    "Attributes dropped because their key is not registered.",
    "telemetry",
    integer=True,
    minimum=0,
)
TELEMETRY_DROPPED_INVALID: Final = _number(
    "clinotel.telemetry.dropped.invalid",
    "Attributes dropped because their value broke the registry's rules.",
    "telemetry",
    integer=True,
    minimum=0,
)
TELEMETRY_DROPPED_PHI: Final = _number(
    "clinotel.telemetry.dropped.phi",
    "Coded attributes dropped because their value looked like PHI.",
    "telemetry",
    integer=True,
    minimum=0,
)
TELEMETRY_REDACTED: Final = _number(
    "clinotel.telemetry.redacted",
    "Names, messages and free-text values exported with PHI redacted.",
    "telemetry",
    integer=True,
    minimum=0,
)
TELEMETRY_INTERNAL_ERRORS: Final = _number(
    "clinotel.telemetry.internal_errors",
    "Errors inside the instrumentation that were contained (production mode).",
    "telemetry",
    integer=True,
    minimum=0,
)
HEALTH_COUNTERS: Final = {
    "unregistered": TELEMETRY_DROPPED_UNREGISTERED,
    "invalid": TELEMETRY_DROPPED_INVALID,
    "phi": TELEMETRY_DROPPED_PHI,
    "redacted": TELEMETRY_REDACTED,
    "internal_errors": TELEMETRY_INTERNAL_ERRORS,
}
"""What the exporter counts, by reason, and the attribute each count travels in on the
`HEALTH_SPAN_NAME` span."""

# standard OpenTelemetry attributes kept; values are scrubbed as free text
_FREE = PhiClass.FREE_TEXT
for _key, _brief, _scope in (
    ("service.name", "Logical name of the service.", _RES),
    ("service.version", "Version of the service.", _RES),
    ("service.namespace", "Namespace of the service.", _RES),
    ("service.instance.id", "Instance of the service.", _RES),
    ("deployment.environment.name", "development, staging, production, test.", _RES),
    ("telemetry.sdk.name", "The telemetry SDK.", _RES),
    ("telemetry.sdk.language", "The SDK's language.", _RES),
    ("telemetry.sdk.version", "The SDK's version.", _RES),
    ("telemetry.distro.name", "The distribution of the SDK.", _RES),
    ("telemetry.distro.version", "The distribution's version.", _RES),
    ("host.name", "Host name.", _RES),
    ("host.arch", "CPU architecture.", _RES),
    ("os.type", "Operating system type.", _RES),
    ("process.runtime.name", "Language runtime.", _RES),
    ("process.runtime.version", "Runtime version.", _RES),
    ("container.id", "Container id.", _RES),
    ("k8s.cluster.name", "Kubernetes cluster.", _RES),
    ("k8s.namespace.name", "Kubernetes namespace.", _RES),
    ("k8s.deployment.name", "Kubernetes deployment.", _RES),
    ("k8s.pod.name", "Kubernetes pod.", _RES),
    ("k8s.node.name", "Kubernetes node.", _RES),
    ("cloud.provider", "Cloud provider.", _RES),
    ("cloud.region", "Cloud region.", _RES),
    ("exception.type", "Type of an exception (on `exception` events).", (Scope.EVENT,)),
    ("exception.message", "Exception message, PHI redacted.", (Scope.EVENT,)),
    ("exception.stacktrace", "Stack trace, PHI redacted.", (Scope.EVENT,)),
    ("error.type", "Class of error a span ended with.", _SPAN),
    ("http.request.method", "HTTP method.", _SPAN),
    ("http.route", "The route template (never the concrete URL).", _SPAN),
    ("server.address", "Server address.", _SPAN),
    ("rpc.system", "RPC system.", _SPAN),
    ("rpc.service", "RPC service.", _SPAN),
    ("rpc.method", "RPC method.", _SPAN),
    ("db.system.name", "Database system.", _SPAN),
    ("db.operation.name", "Database operation.", _SPAN),
    ("messaging.system", "Messaging system.", _SPAN),
    ("messaging.destination.name", "Queue or topic name.", _SPAN),
):
    _string(_key, _brief, "opentelemetry", phi=_FREE, scope=_scope)

_string(
    "exception.escaped",
    "Deprecated by OpenTelemetry (a boolean there); the Python SDK still sets it on `exception` "
    "events, as the text `True` or `False`, which is what this accepts.",
    "opentelemetry",
    values=("True", "False"),
    scope=(Scope.EVENT,),
)

for _key, _brief in (
    ("http.response.status_code", "HTTP response status."),
    ("server.port", "Server port."),
    ("process.pid", "Process id."),
):
    REGISTRY.add(
        AttributeDef(
            _key, AttrType.INT, _brief, "opentelemetry", scope=_RES if _key == "process.pid" else _SPAN, minimum=0
        )
    )

SERVICE_NAME: Final = REGISTRY["service.name"]
SERVICE_VERSION: Final = REGISTRY["service.version"]
SERVICE_INSTANCE_ID: Final = REGISTRY["service.instance.id"]
DEPLOYMENT_ENVIRONMENT: Final = REGISTRY["deployment.environment.name"]
ERROR_TYPE: Final = REGISTRY["error.type"]

WORKFLOW_CONTEXT: Final = (WORKFLOW_KIND, SITE, DEPARTMENT, SERVICE_LINE)
"""Attributes of the workflow that every stage span repeats, so that each stage span can be
filtered on its own without a join (the collector's views read them span by span)."""

COHORT: Final = (
    COHORT_AGE_BAND,
    COHORT_SEX,
    COHORT_LANGUAGE,
    COHORT_PAYER_CLASS,
    COHORT_RACE_ETHNICITY,
    COHORT_ACUITY,
)
"""The fairness dimensions."""
