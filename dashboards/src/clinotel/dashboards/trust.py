"""Clinician trust: acceptance and override by role, override reasons, review latency."""

from __future__ import annotations

from typing import Any

from clinotel.dashboards._panels import Board, where_filters
from clinotel.dashboards.feedback import add_feedback
from clinotel.model import clinical
from clinotel.model.sql import identifier, literal
from clinotel.semconv import ReviewAction

UID = "clinotel-trust"


def build(database: str) -> dict[str, Any]:
    b = Board(UID, "clinotel / Clinician trust", "How clinicians receive the model's decisions.", database)
    workflows = f"{identifier(database)}.{identifier(clinical.WORKFLOWS)} FINAL"
    b.row("Now")
    for name in ("acceptance_rate", "override_rate", "review_latency_p95_ms"):
        b.stat(name, w=8)
    b.row("By role")
    b.series("acceptance_rate", by="ReviewActorRole")
    b.series("override_rate", by="ReviewActorRole")
    b.table(
        "Override reasons", "Coded reasons clinicians gave for overriding the model.",
        f"SELECT ReviewReason AS reason, ReviewActorRole AS role, count() AS overrides\n"
        f"FROM {workflows}\nWHERE $__timeFilter(StartTime) AND ReviewAction = {literal(ReviewAction.OVERRIDE.value)}"
        f" AND {where_filters()}\n"
        "GROUP BY reason, role ORDER BY overrides DESC",
    )  # fmt: skip
    b.series("review_latency_p95_ms")
    add_feedback(b)
    return b.build()
