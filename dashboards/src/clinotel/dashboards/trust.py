"""Clinician trust: acceptance and override by role, override reasons, CDS Hooks feedback counts,
review latency.

The override rate's denominator is every review of a live model decision (accept, override,
reject, escalate, timeout); the CDS Hooks figure counts as a CDS client's feedback does: `accepted`
(accept) against `overridden` (override, reject). The override reasons table counts the override
rate's numerator: overrides of the model's decisions, not of a fallback's or a human's."""

from __future__ import annotations

from typing import Any

from clinotel.dashboards._panels import Board, where_filters
from clinotel.dashboards.feedback import add_feedback
from clinotel.model import rollups
from clinotel.model.indicators import INDICATORS
from clinotel.model.sql import identifier

UID = "clinotel-trust"


def override_reasons_sql(database: str) -> str:
    """Overrides of the model by reason and role: the override rate's own numerator (its hits in
    the hourly rollup), so the table's total is what the rate counts."""
    hours = f"{identifier(database)}.{identifier(rollups.WORKFLOW_HOURS)}"
    hits = rollups.hits(INDICATORS["override_rate"])
    return (
        "SELECT WorkflowKind AS `Workflow kind`, ReviewReason AS `Reason`, ReviewActorRole AS `Role`, "
        f"{hits} AS `Overrides`\n"
        f"FROM {hours}\nWHERE {rollups.time_filter()} AND {where_filters(rollups.DIMENSIONS)}\n"
        f"GROUP BY WorkflowKind, ReviewReason, ReviewActorRole HAVING `Overrides` > 0 ORDER BY `Overrides` DESC"
    )


def cds_feedback_sql(database: str) -> str:
    """Per workflow kind and role, reviews of model decisions as CDS Hooks feedback would report
    them (`accepted`, `overridden`) and the reviews such feedback does not carry: from the hourly
    rollup's rows and hits of the CDS override rate (feedback sent, overridden) and of the override
    rate (every review of a model decision)."""
    hours = f"{identifier(database)}.{identifier(rollups.WORKFLOW_HOURS)}"
    cds = INDICATORS["cds_override_rate"]
    feedback, overridden = rollups.sample(cds), rollups.hits(cds)
    reviews = rollups.sample(INDICATORS["override_rate"])
    return (
        "SELECT WorkflowKind AS `Workflow kind`, ReviewActorRole AS `Role`, "
        f"{feedback} - {overridden} AS `Accepted`, {overridden} AS `Overridden`, "
        f"{reviews} - {feedback} AS `No feedback (escalate, timeout)`, "
        f"round({overridden} / nullIf({feedback}, 0), 4) AS {identifier(cds.title)}\n"
        f"FROM {hours}\nWHERE {rollups.time_filter()} AND {where_filters(rollups.DIMENSIONS)}\n"
        f"GROUP BY WorkflowKind, ReviewActorRole HAVING {reviews} > 0 ORDER BY WorkflowKind, ReviewActorRole"
    )


def build(database: str) -> dict[str, Any]:
    b = Board(UID, "clinotel / Clinician trust", "How clinicians receive the model's decisions.", database)
    b.row("Now")
    for name in ("acceptance_rate", "override_rate", "cds_override_rate", "review_latency_p95_ms"):
        b.stat(name, w=6)
    b.row("By role")
    b.series("acceptance_rate", by=("WorkflowKind", "ReviewActorRole"))
    b.series("override_rate", by=("WorkflowKind", "ReviewActorRole"))
    b.table("Override reasons", "Coded reasons clinicians gave for overriding the model's decisions (the override "
            "rate's numerator; a fallback's or a human's decision overridden is not counted).",
            override_reasons_sql(database))  # fmt: skip
    b.table("CDS Hooks feedback: accepted and overridden", "Reviews of the model's decisions as CDS Hooks feedback "
            "counts them: accept is accepted, override and reject are overridden; escalate and timeout send no "
            "feedback.", cds_feedback_sql(database))  # fmt: skip
    b.series("review_latency_p95_ms")
    add_feedback(b)
    return b.build()
