"""Efficiency: is the automation worth it. Human minutes and touches per workflow by rollout
phase (the shadow phase is the baseline), the rework it created, and the net minutes saved per
site and department, with 95 % intervals (`clinotel.model.efficiency`), from the hourly rollup."""

from __future__ import annotations

from typing import Any

from clinotel.dashboards._panels import Board, where_filters
from clinotel.dashboards._traces import rollup_filters
from clinotel.model import rollups
from clinotel.model.efficiency import net_saved_sql, phases_sql
from clinotel.model.signals import SIGNALS
from clinotel.model.sql import identifier, literal

UID = "clinotel-efficiency"


def build(database: str) -> dict[str, Any]:
    b = Board(UID, "clinotel / Efficiency",
              "Human minutes and touches saved, rework created, and the net, by rollout phase.", database,
              tags=["efficiency"])  # fmt: skip
    hours = f"{identifier(database)}.{identifier(rollups.WORKFLOW_HOURS)}"
    filters = where_filters(("TenantId", "WorkflowKind", "Site", "Department", "ModelVersion", "RolloutCohort"))
    b.row("By rollout phase")
    b.table(
        "Minutes, touches and rework per workflow by phase",
        "Per workflow: human minutes (stages + rework) with a 95 % interval, manual touches, the share of workflows "
        "with rework (Wilson 95 % interval) and the rework minutes. The shadow phase is the baseline.",
        phases_sql(database, rollups.time_filter(), filters, rollup=hours),
        w=24,
    )
    b.table(
        "Net minutes saved against the shadow phase, per site and department",
        "Minutes saved per workflow against the same place's shadow phase (Welch 95 % interval), and the net minutes "
        "saved in total: saved on the stages minus created by rework.",
        net_saved_sql(database, rollups.time_filter(), filters, rollup=hours),
        w=24,
    )
    b.row("Rework")
    signals = f"{identifier(database)}.{identifier(rollups.SIGNAL_HOURS)}"
    rework, workflow = literal(rollups.REWORK), literal(rollups.WORKFLOW)
    b.timeseries(
        "Rework rate", SIGNALS["rework_rate"].description,
        f"SELECT $__timeInterval({rollups.TIME_COLUMN}) AS time, sumIf(Rows, Signal = {rework}) / "
        f"nullIf(sumIf(Rows, Signal = {workflow}), 0) AS `{SIGNALS['rework_rate'].title}`\n"
        f"FROM {signals}\nWHERE Signal IN ({rework}, {workflow}) AND {rollup_filters()}\n"
        f"GROUP BY time\nHAVING sumIf(Rows, Signal = {workflow}) >= 5\nORDER BY time",
        "percentunit", interval="1h",
    )  # fmt: skip
    b.table(
        "Rework by kind and role",
        "Rework records by what was redone and the role that redid it, with the minutes they took.",
        "SELECT Bin AS rework, Detail AS role, sum(Rows) AS records, round(sum(Total), 1) AS rework_minutes\n"
        f"FROM {signals}\nWHERE Signal = {rework} AND {rollup_filters()}\n"
        "GROUP BY rework, role ORDER BY records DESC",
    )
    return b.build()
