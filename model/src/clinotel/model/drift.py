"""Drift of a decision's inputs and outputs against a reference, computed inside ClickHouse.

A **feature** is a coded distribution read from `otel_traces` span by span: each registered
decision input (`clinotel.semconv.attributes.INPUTS`, as the service recorded it) and the model's
outputs (the priority mix and the confidence, in tenths). For each feature the query compares the
window's distribution with the reference's:

- **PSI**, the population stability index: Σ (w − r) · ln(w / r) over the bins, with half a row
  added to every bin of both sides (so a bin new in the window, such as a new arrival mode, counts
  as a large shift rather than an infinite one). Usual reading: under 0.1 stable, 0.1–0.25 moving,
  over 0.25 shifted.
- **JS**, the Jensen–Shannon divergence in bits (0 to 1) of the raw proportions: what scipy's
  `jensenshannon(w, r, base=2)` squares to.

The reference is a period (`Reference.period`), or the rows recorded in shadow mode
(`Reference.shadow`: `clinical.rollout.mode = shadow` on the same span), the rollout's own
baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from clinotel.model.sql import identifier, literal
from clinotel.model.tables import TRACES
from clinotel.semconv import DecisionSource, RolloutMode, Stage
from clinotel.semconv import attributes as A

__all__ = [
    "FEATURES",
    "MIN_SAMPLE",
    "OUTPUT_CONFIDENCE",
    "OUTPUT_PRIORITY",
    "SHADOW_LOOKBACK_S",
    "Feature",
    "Reference",
    "drift_sql",
]

SHADOW_LOOKBACK_S: Final = 90 * 86400
"""How far back a shadow reference looks for shadow-mode rows."""
MIN_SAMPLE: Final = 100
"""Rows each side needs before a feature's drift is shown or judged (panels, `drift check`'s default;
the default `decision_drift` rule says the same)."""
SMOOTHING: Final = 0.5
"""Rows added to every bin of both sides before PSI's logarithm."""


def _attr(key: str) -> str:
    return f"SpanAttributes[{literal(key)}]"


@dataclass(frozen=True)
class Feature:
    """One watched distribution: `bin` is SQL giving a row's bin ('' when the row has none)."""

    name: str
    title: str
    bin: str
    keys: tuple[str, ...] = ()
    """The attributes a row needs for a bin (a row without any of them has none)."""


_MODEL_DECISION: Final = (
    f"{_attr(A.WORKFLOW_STAGE.key)} = {literal(Stage.DECIDE.value)} "
    f"AND {_attr(A.DECISION_SOURCE.key)} = {literal(DecisionSource.MODEL.value)}"
)
OUTPUT_PRIORITY: Final = Feature(
    "output.priority",
    "Model output: priority mix",
    f"if({_MODEL_DECISION}, {_attr(A.DECISION_VALUE.key)}, '')",
    (A.DECISION_VALUE.key,),
)
"""The model's recommendations (live and shadow), bin per code (ESI-1 … ESI-5, slot classes)."""
_CONFIDENCE: Final = f"toFloat64OrNull({_attr(A.DECISION_CONFIDENCE.key)})"
OUTPUT_CONFIDENCE: Final = Feature(
    "output.confidence",
    "Model output: confidence",
    f"if({_MODEL_DECISION} AND {_CONFIDENCE} IS NOT NULL, "
    f"toString(least(toUInt8(floor({_CONFIDENCE} * 10)), 9) / 10), '')",
    (A.DECISION_CONFIDENCE.key,),
)
"""The model's confidence in tenths: bin `0.8` holds [0.8, 0.9) (and 1.0 joins `0.9`)."""


def _input(key: str) -> Feature:
    name = key.removeprefix("clinical.")
    return Feature(name, f"Input: {name.removeprefix('input.')}", _attr(key), (key,))


FEATURES: Final = (
    *(_input(d.key) for d in A.INPUTS),
    OUTPUT_PRIORITY,
    OUTPUT_CONFIDENCE,
)
"""Every watched feature, by name `input.<name>` or `output.<name>`."""


@dataclass(frozen=True)
class Reference:
    """What the window is compared with: a period [start, end), or the shadow-mode rows."""

    start: datetime | None = None
    end: datetime | None = None
    shadow: bool = False

    @classmethod
    def period(cls, start: datetime, end: datetime) -> Reference:
        if not start < end:
            raise ValueError("a reference period's start is before its end")
        return cls(start, end)

    def describe(self) -> str:
        if self.shadow:
            return "shadow-mode rows"
        assert self.start is not None
        assert self.end is not None
        return f"{self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M} UTC"


def _at(t: datetime | str) -> str:
    if isinstance(t, str):
        return t
    return f"toDateTime64({literal(t.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S.%f'))}, 6, 'UTC')"


def _hour(t: str) -> str:
    return f"toStartOfHour({t})"


def _sides(reference: Reference | tuple[str, str], window: tuple[str, str], *, rollup: bool) -> tuple[str, str]:
    """(is_ref, in_win): the conditions of a row on each side, on spans' timestamps, or on the
    rollup's hours (each side widened to whole hours: [a, b) holds the hours from a's to b's)."""
    ws, we = window
    column = "Hour" if rollup else "Timestamp"

    def start(t: str) -> str:
        return f"{column} >= {_hour(t) if rollup else t}"

    def end(t: str) -> str:
        return f"{column} < {_hour(t) if rollup else t}"

    # a window's end is its range's: the hour it falls in is the window's
    until = f"{column} <= {we}" if rollup else end(we)
    in_window = f"{start(ws)} AND {until}"
    if isinstance(reference, tuple):
        return f"{start(reference[0])} AND {end(reference[1])}", in_window
    if reference.shadow:
        shadow = "Shadow = 1" if rollup else f"{_attr(A.ROLLOUT_MODE.key)} = {literal(RolloutMode.SHADOW.value)}"
        since = start(f"{we} - toIntervalSecond({SHADOW_LOOKBACK_S})")
        return f"{shadow} AND {since} AND {until}", f"{in_window} AND NOT ({shadow})"
    assert reference.start is not None
    assert reference.end is not None
    return f"{start(_at(reference.start))} AND {end(_at(reference.end))}", in_window


def _rollup_counts(rollup: str, is_ref: str, in_win: str, features: tuple[Feature, ...], where: str) -> str:
    """Per tenant, kind, feature and bin: c_ref and c_win from the hourly signal rollup."""
    names = ", ".join(literal(f.name) for f in features)
    return f"""SELECT TenantId AS tenant, WorkflowKind AS kind, Signal AS feature, Bin AS bin,
            sumIf(Rows, {is_ref}) AS c_ref, sumIf(Rows, {in_win}) AS c_win
        FROM {rollup}
        WHERE Signal IN ({names}) AND (({is_ref}) OR ({in_win})) AND kind != '' AND ({where})
        GROUP BY tenant, kind, feature, bin"""


def drift_sql(
    database: str,
    reference: Reference | tuple[str, str],
    window: tuple[datetime | str, datetime | str],
    features: tuple[Feature, ...] = FEATURES,
    where: str = "1",
    *,
    rollup: str | None = None,
) -> str:
    """Rows of (tenant, kind, feature, n_ref, n_win, psi, js, moved): one per tenant, workflow
    kind and feature with rows on either side; `psi` and `js` are NULL when a side has none;
    `moved` is the bin whose share changed most. `window` (and a period `reference`, given as
    datetimes or SQL instants) are [start, end); `where` narrows the rows (a dashboard's filters).
    From the qualified hourly signal rollup `rollup` when given (`clinotel.model.rollups`: whole
    hours, `where` on its columns), else span by span from `otel_traces`."""
    ws, we = (_at(t) for t in window)
    is_ref, in_win = _sides(reference, (ws, we), rollup=rollup is not None)
    pairs = ", ".join(f"({literal(f.name)}, {f.bin})" for f in features)
    kind = _attr(A.WORKFLOW_KIND.key)
    table = f"{identifier(database)}.{identifier(TRACES)}"
    pw = f"((cw + {SMOOTHING}) / (nw + {SMOOTHING} * k))"
    pr = f"((cr + {SMOOTHING}) / (nr + {SMOOTHING} * k))"
    qw, qr = "(cw / nw)", "(cr / nr)"
    m = f"(({qw} + {qr}) / 2)"
    js = f"if(cw > 0, 0.5 * {qw} * log2({qw} / {m}), 0) + if(cr > 0, 0.5 * {qr} * log2({qr} / {m}), 0)"
    both = "min(nr) > 0 AND min(nw) > 0"
    counts = (
        _rollup_counts(rollup, is_ref, in_win, features, where)
        if rollup is not None
        else f"""SELECT TenantId AS tenant, {kind} AS kind, pair.1 AS feature, pair.2 AS bin,
            countIf({is_ref}) AS c_ref, countIf({in_win}) AS c_win
        FROM {table}
        ARRAY JOIN arrayFilter(p -> p.2 != '', [{pairs}]) AS pair
        WHERE (({is_ref}) OR ({in_win})) AND {kind} != '' AND ({where})
        GROUP BY tenant, kind, feature, bin"""
    )
    return f"""SELECT tenant, kind, feature, toUInt64(sum(cr)) AS n_ref, toUInt64(sum(cw)) AS n_win,
    if({both}, sum(({pw} - {pr}) * log({pw} / {pr})), NULL) AS psi,
    if({both}, greatest(0., sum({js})), NULL) AS js,
    argMax(bin, abs(if(nw > 0, {qw}, 0) - if(nr > 0, {qr}, 0))) AS moved
FROM (
    SELECT tenant, kind, feature, bin, toFloat64(c_ref) AS cr, toFloat64(c_win) AS cw,
        toFloat64(sum(c_ref) OVER f) AS nr, toFloat64(sum(c_win) OVER f) AS nw, toFloat64(count() OVER f) AS k
    FROM (
        {counts}
    )
    WINDOW f AS (PARTITION BY tenant, kind, feature)
)
GROUP BY tenant, kind, feature
ORDER BY tenant, kind, feature"""
