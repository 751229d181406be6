"""Inputs and data quality: is the decision's input still what the model was validated on
(drift of each input and of the model's output against the previous period and the shadow
phase), and did its data arrive complete, fresh and mapped."""

from __future__ import annotations

from typing import Any

from clinotel.dashboards._panels import Board
from clinotel.dashboards._traces import rollup_filters, signal_hours_series
from clinotel.model import rollups
from clinotel.model.drift import FEATURES, MIN_SAMPLE, Reference, drift_sql
from clinotel.model.signals import SIGNALS
from clinotel.model.sql import identifier, literal
from clinotel.semconv import attributes as A

UID = "clinotel-quality"
_FROM = "toDateTime64($__fromTime, 3)"
_TO = "toDateTime64($__toTime, 3)"
_BEFORE = "toDateTime64(subtractSeconds($__fromTime, dateDiff('second', $__fromTime, $__toTime)), 3)"
QUALITY = rollups.QUALITY
_CENTILE_COLUMNS = {"demographics_age_h": "demographics_age_p95_h", "lab_delay_min": "lab_delay_p95_min"}
"""The data-quality table's column for each centile signal of the rollup."""
_FILTERS = rollup_filters(hours=False)
"""The dashboard's filters on the signal rollup's columns (the drift has ranges of its own)."""


def _drift_table(inner: str) -> str:
    # under MIN_SAMPLE rows on either side a feature's row stays, its figures NULL (too few)
    enough = f"least(n_ref, n_win) >= {MIN_SAMPLE}"
    return (
        f"SELECT kind, feature, n_ref, n_win, if({enough}, round(psi, 4), NULL) AS psi, "
        f"if({enough}, round(js, 4), NULL) AS js, if({enough}, moved, '') AS moved_most\n"
        f"FROM (\n{inner}\n)\nWHERE n_win > 0 ORDER BY {enough} DESC, psi DESC"
    )


def build(database: str) -> dict[str, Any]:
    b = Board(UID, "clinotel / Inputs and data quality",
              "Drift of the decision's inputs and outputs, and the quality of the data it was made from.", database,
              tags=["drift", "data-quality"])  # fmt: skip
    hours = f"{identifier(database)}.{identifier(rollups.SIGNAL_HOURS)}"
    b.row("Drift")
    b.table(
        "Drift against the previous period",
        "PSI (half a row added per bin) and Jensen–Shannon divergence (bits) of each input and model output over the "
        "range against the same length before it. Under 0.1 stable, 0.1–0.25 moving, over 0.25 shifted. "
        f"Under {MIN_SAMPLE} rows on either side: too few (no figure).",
        _drift_table(drift_sql(database, (_BEFORE, _FROM), (_FROM, _TO), where=_FILTERS, rollup=hours)),
    )
    b.table(
        "Drift against the shadow phase",
        "The same against every row recorded in shadow mode (the rollout's own baseline): how far the live "
        "population is from what the model was validated on.",
        _drift_table(drift_sql(database, Reference(shadow=True), (_FROM, _TO), where=_FILTERS, rollup=hours)),
    )
    (arrival,) = (f.name for f in FEATURES if f.keys == (A.INPUT_ARRIVAL_MODE.key,))
    mode = literal(arrival)
    b.timeseries(
        "Arrival mode mix", "Share of decisions by the patient's arrival mode.",
        f"SELECT $__timeInterval({rollups.TIME_COLUMN}) AS time, Bin AS mode, "
        "sum(Rows) / sum(sum(Rows)) OVER (PARTITION BY time) AS share\n"
        f"FROM {hours}\nWHERE Signal = {mode} AND {rollup_filters()}\n"
        "GROUP BY time, mode ORDER BY time",
        "percentunit", interval="1h",
    )  # fmt: skip
    b.row("Data quality")
    for name in QUALITY:
        s = SIGNALS[name]
        b.timeseries(s.title, s.description, signal_hours_series(s, hours, by="Site"), s.unit, w=12, interval="1h")
    rates = ", ".join(
        f"round(sumIf(Hits, Signal = {literal(n)}) / nullIf(sumIf(Rows, Signal = {literal(n)}), 0), 4) AS {n}"
        for n in QUALITY
    )
    centiles = ", ".join(
        f"round({rollups.quantile_of_values(0.95, conditional=True)}({rollups.MEASURED}, Signal = {literal(n)}), 1) "
        f"AS {_CENTILE_COLUMNS[n]}"
        for n in rollups.CENTILES
    )
    signals = ", ".join(literal(n) for n in (*QUALITY, *rollups.CENTILES))
    b.table(
        "Data quality by site",
        "Per site: decisions with data-quality fields, the four failure rates (each over the decisions that "
        "recorded its field), and the 95th centile of the demographics' age (hours) and of the lab delay (minutes).",
        f"SELECT Site AS site, sumIf(Rows, Signal = {literal(QUALITY[0])}) AS decisions, {rates}, {centiles}\n"
        f"FROM {hours}\nWHERE Signal IN ({signals}) AND {rollup_filters()}\nGROUP BY site ORDER BY site",
    )
    return b.build()
