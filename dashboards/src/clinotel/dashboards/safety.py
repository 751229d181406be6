"""Safety: model and final under-triage and high-risk misclassification against late ground truth,
escalation misses, overrides, fallbacks, model errors, low confidence, shadow disagreement.

Model under-triage is the model's decision against the truth (what the canary kill criterion
uses); final under-triage is the priority the patient was left with after review."""

from __future__ import annotations

from typing import Any

from clinotel.dashboards._panels import Board, where_filters
from clinotel.model import rollups
from clinotel.model.indicators import INDICATORS
from clinotel.model.sql import identifier

UID = "clinotel-safety"


def build(database: str) -> dict[str, Any]:
    b = Board(UID, "clinotel / Safety", "Model safety against late ground truth, overrides and fallbacks.", database)
    b.row("Now")
    for name in ("under_triage_rate", "final_under_triage_rate", "high_risk_miss_rate", "escalation_miss_rate",
                 "override_rate", "fallback_rate"):  # fmt: skip
        b.stat(name)
    b.row("Against ground truth")
    b.series("under_triage_rate", by="RolloutCohort", title="Model under-triage by rollout cohort")
    b.series("final_under_triage_rate", by="RolloutCohort", title="Final under-triage by rollout cohort")
    b.series("high_risk_miss_rate")
    b.series("escalation_miss_rate")
    b.series("override_rate", title="Override rate (spikes)")
    b.row("Model health")
    b.timeseries(
        "Fallback activations by reason", "Decisions made by a fallback, per reason.",
        f"SELECT $__timeInterval({rollups.TIME_COLUMN}) AS time, FallbackReason, "
        f"{rollups.sample(INDICATORS['workflows'])} AS fallbacks\n"
        f"FROM {identifier(database)}.{identifier(rollups.WORKFLOW_HOURS)}\n"
        f"WHERE {rollups.time_filter()} AND FallbackReason != '' AND {where_filters()}\n"
        "GROUP BY time, FallbackReason ORDER BY time", interval="1h",
    )  # fmt: skip
    b.series("model_error_rate", title="Model errors and timeouts (workflows with an error span)")
    b.stat("low_confidence_share", w=12)
    b.series("low_confidence_share")
    b.series("shadow_disagreement_rate")
    return b.build()
