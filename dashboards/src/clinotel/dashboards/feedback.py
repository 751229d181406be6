"""Clinician feedback panels (on the Clinician trust dashboard): coded reports by category and
severity, each joined to the workflow and decision it is about, and the team that owns it."""

from __future__ import annotations

from clinotel.dashboards._panels import Board
from clinotel.dashboards._traces import rollup_filters
from clinotel.model import rollups
from clinotel.model.signals import FEEDBACK_OWNERS
from clinotel.model.sql import identifier, literal

__all__ = ["add_feedback"]


def add_feedback(b: Board) -> None:
    """The feedback row of a dashboard."""
    db = identifier(b.database)
    owners = f"map({', '.join(f'{literal(c.value)}, {literal(t)}' for c, t in FEEDBACK_OWNERS.items())})"
    b.row("Clinician feedback")
    b.table(
        "Feedback by category, with its decision",
        "Coded feedback (never free text), joined to the workflow it is about: the model version and the decision "
        "it judged (by the span link, else by the workflow's identifier), and the team each category is routed to.",
        f"SELECT Category AS category, {owners}[category] AS team, Severity AS severity, "
        "ModelVersion AS model_version, Decision AS decision, sum(Reports) AS reports\n"
        f"FROM {db}.{identifier(rollups.FEEDBACK_HOURS)}\nWHERE {rollup_filters()}\n"
        "GROUP BY category, team, severity, model_version, decision ORDER BY reports DESC",
        w=24,
    )
    b.timeseries(
        "Feedback reports by category", "Coded clinician feedback per interval.",
        f"SELECT $__timeInterval({rollups.TIME_COLUMN}) AS time, Bin AS category, sum(Rows) AS reports\n"
        f"FROM {db}.{identifier(rollups.SIGNAL_HOURS)}\n"
        f"WHERE Signal = {literal(rollups.FEEDBACK)} AND {rollup_filters()}\n"
        "GROUP BY time, category ORDER BY time",
        w=24, interval="1h",
    )  # fmt: skip
