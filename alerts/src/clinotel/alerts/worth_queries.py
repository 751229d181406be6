"""The queries of issue 17's rules, beside the indicators' (`queries`): rows of (tenant, kind, grp,
value, n) as theirs are.

- a rule on a `clinotel.model.signals` signal (data quality, rework, feedback): `threshold`
  compares the window's value; `baseline` the window's value ÷ the trailing baseline window's;
- a `drift` rule: PSI or Jensen–Shannon (`metric`) of each feature (`grp`) over the window against
  the trailing `baseline_window` before it (`clinotel.model.drift`); `n` is the smaller side."""

from __future__ import annotations

from typing import TYPE_CHECKING

from clinotel.model.drift import drift_sql
from clinotel.model.signals import KIND, SIGNALS
from clinotel.model.sql import identifier
from clinotel.model.tables import TRACES

if TYPE_CHECKING:
    from clinotel.alerts.queries import Bounds
    from clinotel.alerts.rules import Rule

__all__ = ["drift_rule_sql", "signal_rule_sql"]


def _ago(bounds: Bounds, seconds: int) -> str:
    return f"{bounds.end} - toIntervalSecond({seconds})"


def drift_rule_sql(rule: Rule, database: str, bounds: Bounds) -> str:
    assert rule.baseline_window is not None
    w, b = rule.window, rule.baseline_window
    inner = drift_sql(database, (_ago(bounds, w + b), _ago(bounds, w)), (_ago(bounds, w), bounds.end))
    return f"SELECT tenant, kind, feature AS grp, {rule.metric} AS value, least(n_ref, n_win) AS n FROM (\n{inner}\n)"


def signal_rule_sql(rule: Rule, database: str, bounds: Bounds) -> str:
    s = SIGNALS[rule.metric]
    table = f"{identifier(database)}.{identifier(TRACES)}"
    w = rule.window
    if rule.baseline_window is None:
        return (
            f"SELECT TenantId AS tenant, {KIND} AS kind, '' AS grp, {s.value} AS value, {s.sample} AS n "
            f"FROM {table} WHERE {bounds.between('Timestamp', w)} AND ({s.where}) GROUP BY tenant, kind"
        )
    b = rule.baseline_window
    period = f"if(Timestamp >= {_ago(bounds, w)}, 'now', 'base')"
    per_period = (
        f"SELECT TenantId AS tenant, {KIND} AS kind, {period} AS p, {s.value} AS v, {s.sample} AS s "
        f"FROM {table} WHERE {bounds.between('Timestamp', w + b)} AND ({s.where}) GROUP BY tenant, kind, p"
    )
    return (
        "SELECT tenant, kind, '' AS grp, anyIf(v, p = 'now') / nullIf(anyIf(v, p = 'base'), 0) AS value, "
        f"least(anyIf(s, p = 'now'), anyIf(s, p = 'base')) AS n FROM (\n{per_period}\n) GROUP BY tenant, kind"
    )
