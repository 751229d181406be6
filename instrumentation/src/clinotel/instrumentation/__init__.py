"""clinotel.instrumentation: end-to-end telemetry for clinical workflows, on OpenTelemetry.

    import clinotel.instrumentation as ct

    ct.configure(service_name="ed-triage", tenant="st-marys")      # OTEL_* variables honoured
    with ct.workflow("triage", identifier=encounter_id, site="north", department="ed") as wf:
        with ct.stage("ingest", attributes={"clinical.ingest.source": "ehr"}):
            ...
        with ct.stage("decide") as st:
            st.record_decision(source="model", value="ESI-2", confidence=0.82, risk="high")

Importing this package configures nothing; until `configure()` is called, spans go to whatever
global tracer provider the application set (or nowhere). The workflow calls need only the
OpenTelemetry API and pydantic, so a library can depend on the bare distribution; `configure()`,
`otlp_exporter()` and `SanitizingSpanExporter` need the `sdk` extra
(from a checkout: `pip install './instrumentation[sdk]'`). This module only re-exports: the code is in
`clinotel.instrumentation._internal`.
"""

from typing import TYPE_CHECKING

from clinotel.instrumentation._internal.about import record_feedback, record_rework
from clinotel.instrumentation._internal.api import (
    StageHandle,
    WorkflowHandle,
    current_stage,
    current_workflow,
    record_action,
    record_data_quality,
    record_decision,
    record_effort,
    record_flag,
    record_inputs,
    record_review,
    record_shadow,
    set_attribute,
    stage,
    workflow,
)
from clinotel.instrumentation._internal.change import record_change
from clinotel.instrumentation._internal.context import WorkflowContext
from clinotel.instrumentation._internal.models import (
    Action,
    Cohort,
    DataQuality,
    Decision,
    Effort,
    FlagEvaluation,
    Inputs,
    Outcome,
    Review,
)
from clinotel.instrumentation._internal.outcome import record_outcome
from clinotel.instrumentation._internal.queue import Dequeued, dequeue, enqueue
from clinotel.instrumentation._internal.runtime import Mode
from clinotel.instrumentation._internal.setup import INSTALL_SDK, Telemetry, configure, otlp_exporter
from clinotel.instrumentation.errors import ClinotelError, ConfigurationError, TelemetryValidationError
from clinotel.semconv import (
    ActionStatus,
    ActorRole,
    Acuity,
    AgeBand,
    ArrivalMode,
    DecisionSource,
    FeedbackCategory,
    FeedbackSeverity,
    IngestSource,
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
    pseudonymize,
)

if TYPE_CHECKING:
    from clinotel.instrumentation._internal.export import SanitizingSpanExporter

__all__ = [
    "Action",
    "ActionStatus",
    "ActorRole",
    "Acuity",
    "AgeBand",
    "ArrivalMode",
    "ClinotelError",
    "Cohort",
    "ConfigurationError",
    "DataQuality",
    "Decision",
    "DecisionSource",
    "Dequeued",
    "Effort",
    "FeedbackCategory",
    "FeedbackSeverity",
    "FlagEvaluation",
    "IngestSource",
    "Inputs",
    "Mode",
    "Outcome",
    "OutcomeStatus",
    "PayerClass",
    "RaceEthnicity",
    "Review",
    "ReviewAction",
    "ReworkKind",
    "Risk",
    "RolloutCohort",
    "RolloutMode",
    "SanitizingSpanExporter",
    "Sex",
    "Stage",
    "StageHandle",
    "Telemetry",
    "TelemetryValidationError",
    "VitalBand",
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
    "record_change",
    "record_data_quality",
    "record_decision",
    "record_effort",
    "record_feedback",
    "record_flag",
    "record_inputs",
    "record_outcome",
    "record_review",
    "record_rework",
    "record_shadow",
    "set_attribute",
    "stage",
    "workflow",
]


def __getattr__(name: str) -> object:
    # SanitizingSpanExporter subclasses the SDK's SpanExporter: imported on first use, so the
    # package imports without the `sdk` extra.
    if name == "SanitizingSpanExporter":
        try:
            from clinotel.instrumentation._internal.export import SanitizingSpanExporter
        except ModuleNotFoundError as e:
            if not (e.name or "").startswith("opentelemetry"):
                raise
            raise ImportError(f"{__name__}.{name} needs the OpenTelemetry SDK: {INSTALL_SDK}") from e
        globals()[name] = SanitizingSpanExporter
        return SanitizingSpanExporter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
