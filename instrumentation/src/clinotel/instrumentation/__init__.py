"""clinotel.instrumentation: end-to-end telemetry for clinical workflows, on OpenTelemetry.

    import clinotel.instrumentation as ct

    ct.configure(service_name="ed-triage", tenant="st-marys")      # OTEL_* variables honoured
    with ct.workflow("triage", identifier=encounter_id, site="north", department="ed") as wf:
        with ct.stage("ingest", attributes={"clinical.ingest.source": "ehr"}):
            ...
        with ct.stage("decide") as st:
            st.record_decision(source="model", value="ESI-2", confidence=0.82, risk="high")

Importing this package configures nothing; until `configure()` is called, spans go to whatever
global tracer provider the application set (or nowhere).
"""

from clinotel.instrumentation._api import (
    StageHandle,
    WorkflowContext,
    WorkflowHandle,
    current_stage,
    current_workflow,
    record_action,
    record_decision,
    record_flag,
    record_review,
    record_shadow,
    set_attribute,
    stage,
    workflow,
)
from clinotel.instrumentation._export import SanitizingSpanExporter
from clinotel.instrumentation._models import Action, Cohort, Decision, FlagEvaluation, Outcome, Review
from clinotel.instrumentation._outcome import record_outcome
from clinotel.instrumentation._queue import Dequeued, dequeue, enqueue
from clinotel.instrumentation._runtime import Mode
from clinotel.instrumentation._sdk import Telemetry, configure, otlp_exporter
from clinotel.instrumentation.errors import ClinotelError, ConfigurationError, TelemetryValidationError
from clinotel.semconv import (
    ActionStatus,
    ActorRole,
    Acuity,
    AgeBand,
    DecisionSource,
    IngestSource,
    OutcomeStatus,
    PayerClass,
    RaceEthnicity,
    ReviewAction,
    Risk,
    RolloutCohort,
    RolloutMode,
    Sex,
    Stage,
    pseudonymize,
)

__all__ = [
    "Action",
    "ActionStatus",
    "ActorRole",
    "Acuity",
    "AgeBand",
    "ClinotelError",
    "Cohort",
    "ConfigurationError",
    "Decision",
    "DecisionSource",
    "Dequeued",
    "FlagEvaluation",
    "IngestSource",
    "Mode",
    "Outcome",
    "OutcomeStatus",
    "PayerClass",
    "RaceEthnicity",
    "Review",
    "ReviewAction",
    "Risk",
    "RolloutCohort",
    "RolloutMode",
    "SanitizingSpanExporter",
    "Sex",
    "Stage",
    "StageHandle",
    "Telemetry",
    "TelemetryValidationError",
    "WorkflowContext",
    "WorkflowHandle",
    "configure",
    "current_stage",
    "current_workflow",
    "dequeue",
    "enqueue",
    "otlp_exporter",
    "pseudonymize",
    "record_action",
    "record_decision",
    "record_flag",
    "record_outcome",
    "record_review",
    "record_shadow",
    "set_attribute",
    "stage",
    "workflow",
]
