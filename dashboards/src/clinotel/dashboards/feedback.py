"""Clinician feedback panels (on the Clinician trust dashboard): coded reports by category and
severity, each joined to the workflow and decision it is about, and the team that owns it."""

from __future__ import annotations

from clinotel.dashboards._panels import Board
from clinotel.dashboards._traces import trace_filters
from clinotel.model.feedback import feedback_decisions_sql
from clinotel.model.signals import FEEDBACK_OWNERS, IS_FEEDBACK, attr
from clinotel.model.sql import identifier, literal
from clinotel.model.tables import TRACES
from clinotel.semconv import attributes as A

__all__ = ["add_feedback"]


def add_feedback(b: Board) -> None:
    """The feedback row of a dashboard."""
    db = identifier(b.database)
    category = attr(A.FEEDBACK_CATEGORY.key)
    owners = f"map({', '.join(f'{literal(c.value)}, {literal(t)}' for c, t in FEEDBACK_OWNERS.items())})"
    b.row("Clinician feedback")
    b.table(
        "Feedback by category, with its decision",
        "Coded feedback (never free text), joined to the workflow it is about: the model version and the decision "
        "it judged (by the span link, else by the workflow's identifier), and the team each category is routed to.",
        f"SELECT category, {owners}[category] AS team, severity, model_version, decision, count() AS reports\n"
        f"FROM (\n{feedback_decisions_sql(b.database, f'$__timeFilter(Timestamp) AND {trace_filters()}')}\n)\n"
        "GROUP BY category, team, severity, model_version, decision ORDER BY reports DESC",
        w=24,
    )
    b.timeseries(
        "Feedback reports by category", "Coded clinician feedback per interval.",
        f"SELECT $__timeInterval(Timestamp) AS time, {category} AS category, count() AS reports\n"
        f"FROM {db}.{identifier(TRACES)}\nWHERE $__timeFilter(Timestamp) AND {IS_FEEDBACK} AND {trace_filters()}\n"
        "GROUP BY time, category ORDER BY time",
        w=24,
    )  # fmt: skip
