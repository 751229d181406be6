"""The release gate: may a flag's canary be promoted to everyone?

Four criteria, over one data window, each decided with the statistics the alert rules decide with
(`clinotel.model.stats`, `clinotel.alerts.queries`, `clinotel.alerts.decision`):

- **samples**: each cohort (the canary: rollout cohort `canary` with the flag evaluated; the
  baseline: rollout cohort `baseline`) has at least `min_samples` rows of every safety metric;
- **kill criteria**: none of the rules that guard the flag (`kill_criteria` in flags.yaml) is
  breached over the window, decided exactly as the evaluator decides them (their test, minimum
  sample and overrides), the rule's window replaced by the gate's;
- **non-inferiority**: on each safety metric, the canary ÷ baseline rate ratio's MOVER-R Wilson
  interval lies below `margin` (above 1/`margin` for a metric where lower is worse);
- **fairness**: no disparity rule of the pack is breached in the canary cohort, where a group has
  the rule's minimum sample (groups with fewer are listed, not judged).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from clinotel.alerts.decision import breaches, describe, instance_labels
from clinotel.alerts.queries import Bounds, observe
from clinotel.alerts.rules import Kind, Rule, RulePack
from clinotel.model.indicators import INDICATORS
from clinotel.model.sql import identifier, literal
from clinotel.model.stats import ratio_interval
from clinotel.rollout.inventory import Flag
from clinotel.semconv import RolloutCohort

__all__ = ["SAFETY_METRICS", "Criterion", "GateResult", "Window", "evaluate", "safety_metrics"]

SAFETY_METRICS: Final = ("under_triage_rate", "final_under_triage_rate", "high_risk_miss_rate")
"""The safety metrics compared by default: the model's and the patient's under-triage, and the
truly urgent placed too low (rates against the late ground truth)."""


@dataclass(frozen=True)
class Window:
    """The data window: [since, until)."""

    since: datetime
    until: datetime

    @property
    def seconds(self) -> int:
        return int((self.until - self.since).total_seconds())


@dataclass
class Criterion:
    """One promotion criterion: passed or not, why, and its figures."""

    name: str
    passed: bool
    reasons: list[str] = field(default_factory=list)
    figures: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class GateResult:
    flag: str
    tenant: str | None
    window: Window
    criteria: list[Criterion]

    @property
    def promote(self) -> bool:
        return all(c.passed for c in self.criteria)

    @property
    def failing(self) -> list[Criterion]:
        return [c for c in self.criteria if not c.passed]

    def to_json(self) -> dict[str, Any]:
        return {
            "flag": self.flag,
            "tenant": self.tenant,
            "window": {"since": self.window.since.isoformat(), "until": self.window.until.isoformat()},
            "decision": "promote" if self.promote else "refuse",
            "criteria": [asdict(c) for c in self.criteria],
        }


def safety_metrics(names: tuple[str, ...]) -> tuple[str, ...]:
    """`names` checked: each a rate indicator (the interval needs hits among rows)."""
    for name in names:
        i = INDICATORS.get(name)
        if i is None or i.kind != "rate":
            rates = ", ".join(sorted(n for n, x in INDICATORS.items() if x.kind == "rate"))
            raise ValueError(f"a safety metric is a rate indicator ({rates}), not {name!r}")
    return names


def _cohorts(flag: str) -> tuple[str, str]:
    canary = f"RolloutCohort = {literal(RolloutCohort.CANARY.value)} AND FlagKey = {literal(flag)}"
    return canary, f"RolloutCohort = {literal(RolloutCohort.BASELINE.value)}"


def flag_tenants(client: Any, database: str, flag: str, window: Window) -> list[str]:
    """The tenants whose workflows evaluated `flag` in the window (at most 20, sorted)."""
    workflows = INDICATORS["workflows"]
    where = Bounds.at(window.until).between(workflows.time_column, window.seconds)
    table = f"{identifier(database)}.{identifier(workflows.table)}"
    rows = client.query(
        f"SELECT DISTINCT TenantId FROM {table} WHERE {where} AND FlagKey = {literal(flag)} ORDER BY 1 LIMIT 20"
    ).result_rows
    return [str(t) for (t,) in rows]


def _counts(client: Any, database: str, metric: str, flag: str, tenant: str | None, window: Window) -> list[int]:
    """(canary hits, canary rows, baseline hits, baseline rows) of a rate over the window."""
    i = INDICATORS[metric]
    canary, baseline = _cohorts(flag)
    x1, n1 = i.counts(canary)
    x2, n2 = i.counts(baseline)
    where = Bounds.at(window.until).between(i.time_column, window.seconds)
    if tenant is not None:
        where += f" AND TenantId = {literal(tenant)}"
    table = f"{identifier(database)}.{identifier(i.table)}{i.final}"
    [row] = client.query(f"SELECT {x1}, {n1}, {x2}, {n2} FROM {table} WHERE {where}").result_rows
    return [int(v or 0) for v in row]


def _safety(
    client: Any, database: str, flag: str, tenant: str | None, window: Window, metrics: tuple[str, ...],
    margin: float, confidence: float, min_samples: int,
) -> tuple[Criterion, Criterion]:  # fmt: skip
    samples = Criterion("samples", True)
    inferiority = Criterion("non-inferiority", True)
    for metric in metrics:
        x1, n1, x2, n2 = _counts(client, database, metric, flag, tenant, window)
        figure: dict[str, Any] = {"metric": metric, "canary": [x1, n1], "baseline": [x2, n2]}
        for cohort, n in (("canary", n1), ("baseline", n2)):
            if n < min_samples:
                samples.passed = False
                samples.reasons.append(f"{cohort} has {n} rows of {metric}, fewer than {min_samples}")
        samples.figures.append({"metric": metric, "canary_rows": n1, "baseline_rows": n2, "minimum": min_samples})
        interval = ratio_interval(x1, n1, x2, n2, confidence)
        worse_higher = INDICATORS[metric].higher_is_worse
        limit = margin if worse_higher else 1 / margin
        figure |= {"ratio": (x1 / n1) / (x2 / n2) if n1 and n2 and x2 else None, "confidence": confidence,
                   "interval": None if interval is None else [interval.low, interval.high],
                   "margin": limit, "harm": "higher" if worse_higher else "lower"}  # fmt: skip
        if interval is None:
            ok, why = False, f"{metric}: no rows in a cohort, no interval"
        else:
            ok = interval.high <= limit if worse_higher else interval.low >= limit
            side = ("upper end", "above") if worse_higher else ("lower end", "below")
            shown = f"{confidence:.0%} {interval.low:.3g}–{interval.high:.3g}"
            why = f"{metric}: canary/baseline {_ratio(figure)} ({shown}), {side[0]} "
            why += f"{'within' if ok else side[1]} the margin {limit:.3g}"
        figure["non_inferior"] = ok
        inferiority.figures.append(figure)
        inferiority.reasons.append(why)
        inferiority.passed &= ok
    if not samples.passed:
        inferiority.reasons.insert(0, "(too few samples: the intervals below are not enough to promote)")
    return samples, inferiority


def _ratio(figure: dict[str, Any]) -> str:
    return "n/a" if figure["ratio"] is None else f"{figure['ratio']:.3g}"


def _judge(
    client: Any, database: str, rule: Rule, tenant: str | None, window: Window, cohort: str | None, into: Criterion
) -> None:
    """Decide `rule` over the window as the evaluator does; add what it found to `into`."""
    widened = rule.model_copy(update={"window": window.seconds})
    for o in observe(client, widened, database, window.until):
        if tenant is not None and o.tenant != tenant:
            continue
        if cohort is not None and o.cohort != cohort:
            continue
        threshold, min_sample, disabled = rule.limits(o.tenant, o.kind)
        labels = instance_labels(rule, o)
        where = ", ".join(f"{k}={v}" for k, v in labels.items())
        figure = {"rule": rule.name, "labels": labels, "value": o.value, "interval": [o.low, o.high],
                  "sample": o.sample, "min_sample": min_sample, "threshold": threshold}  # fmt: skip
        if disabled:
            figure["judged"] = "disabled by an override"
        elif o.sample < min_sample:
            figure["judged"] = f"too few ({o.sample} < {min_sample}), not judged"
        elif o.decide is not None and breaches(rule, o.decide, threshold):
            figure["judged"] = "breached"
            into.passed = False
            into.reasons.append(f"{rule.name} breached ({where}): {describe(rule, o, threshold)}")
        else:
            figure["judged"] = "within"
        into.figures.append(figure)


def evaluate(
    client: Any,
    database: str,
    flag: Flag,
    pack: RulePack,
    window: Window,
    *,
    tenant: str | None = None,
    metrics: tuple[str, ...] = SAFETY_METRICS,
    margin: float = 1.5,
    confidence: float = 0.95,
    min_samples: int = 100,
) -> GateResult:
    """The four criteria for promoting `flag`'s canary over `window`; raises what the database
    raised, and KeyError for a kill criterion that is not a rule of `pack`."""
    rules = {r.name: r for r in pack.rules}
    missing = [name for name in flag.kill_criteria if name not in rules]
    if missing:
        raise KeyError(f"kill criteria that are not rules of the pack: {', '.join(missing)}")
    samples, inferiority = _safety(client, database, flag.key, tenant, window, metrics, margin, confidence,
                                   min_samples)  # fmt: skip
    kill = Criterion("kill criteria", True)
    if not flag.kill_criteria:
        kill.passed = False
        kill.reasons.append("the flag has no kill criteria in the inventory")
    for name in flag.kill_criteria:
        _judge(client, database, rules[name], tenant, window, None, kill)
    fairness = Criterion("fairness", True)
    for rule in pack.rules:
        if rule.kind is Kind.DISPARITY:
            _judge(client, database, rule, tenant, window, RolloutCohort.CANARY.value, fairness)
    for c in (kill, fairness):
        judged = sum(1 for f in c.figures if f.get("judged") in ("within", "breached"))
        if c.passed:
            c.reasons.append(f"{judged} instance(s) judged, none breached")
    return GateResult(flag.key, tenant, window, [samples, kill, inferiority, fairness])


def window_of(until: datetime, seconds: int) -> Window:
    """The window of `seconds` ending at `until`."""
    return Window(until - timedelta(seconds=seconds), until)
