"""Every exported rule decides what clinotel's evaluator decides on the same numbers: the rule's
query A run on the store as Grafana sends it, then Grafana's reduce, threshold and no-data
handling (`grafana_eval`, a model of Grafana's code), against the evaluator itself on the same
store at the same instant. Thresholds, bands and minimum samples are also set exactly to the
observed values, where `>` and `>=` part ways.

A tested rule (score intervals, a canary's confidence sequence) cannot be put in Grafana's
threshold model as a test: its query exports the figure the test leaves (`decide`: an interval
bound, or the ratio when the interval excludes 1 and else 1), which Grafana then thresholds; the
annotation `test` says so. The last test here holds that figure equal to the statistics computed
in Python from the counts the same query returns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from alerts.tests import grafana_eval
from clinotel.alerts import default_rules_path
from clinotel.alerts.evaluator import Evaluator
from clinotel.alerts.export import DATASOURCE_ERROR_RULE, THRESHOLD, grafana_rules
from clinotel.alerts.paging import Outbox
from clinotel.alerts.queries import observe
from clinotel.alerts.rules import Comparison, Kind, Override, Rule, RulePack, load
from clinotel.collector.service import Collector
from clinotel.collector.store import schema
from clinotel.dashboards.macros import TimeRange, expand
from collector.tests.fixtures import WRITE_TOKEN
from dashboards.tests.demo_data import load_demo

Labels = frozenset[tuple[str, str]]


def _norm(labels: dict[str, str] | Labels) -> Labels:
    """An instance's identity: empty labels are no labels (Grafana's NoData result adds its own)."""
    items = labels.items() if isinstance(labels, dict) else labels
    return frozenset((k, v) for k, v in items if v != "" and k not in ("datasource_uid", "ref_id"))


def _grafana(client: Any, rule: Rule, database: str, now: datetime) -> set[Labels]:
    """The instances Grafana fires for `rule` (and its override rules) at `now`."""
    firing: set[Labels] = set()
    for group in grafana_rules(RulePack(rules=(rule,)), database)["groups"]:
        for exported in group["rules"]:
            if exported["uid"] == DATASOURCE_ERROR_RULE:
                continue
            a = exported["data"][0]
            tr = TimeRange(now - timedelta(seconds=a["relativeTimeRange"]["from"]), now)
            result = client.query(expand(a["model"]["rawSql"], tr))
            states = grafana_eval.evaluate(exported, list(result.column_names), list(result.result_rows))
            firing |= {_norm(labels) for labels, state in states.items() if state == "Alerting"}
    return firing


def _evaluator(client: Any, rule: Rule, database: str, now: datetime) -> set[Labels]:
    # each variant from a clean slate: the evaluator's state is the audit trail, which the previous
    # variant (same rule name) left firing
    client.command(f"TRUNCATE TABLE {database}.{schema.ALERT_EVENTS}")
    evaluator = Evaluator(client, RulePack(rules=(rule,)), Outbox([], []), database, lease_s=None)
    summary = evaluator.evaluate(now)
    assert summary.errors == []
    return {_norm(labels) for _, labels, state in summary.transitions if state == "firing"}


def _variants(client: Any, rule: Rule, database: str, now: datetime) -> list[Rule]:
    """The rule as shipped, and with its limits set exactly to the values it observes now."""
    base = rule.model_copy(update={"for_": 0})
    out = [base]
    seen = [o for o in observe(client, base, database, now) if o.decide is not None]
    values = sorted({o.decide for o in seen if o.decide is not None})
    picks = sorted({values[0], values[len(values) // 2], values[-1]}) if values else []
    for v in picks:
        if rule.kind is Kind.DISPARITY:  # a band edge on the value: the bounds are inside the band
            if 0 < v < 1:
                out.append(base.model_copy(update={"band": (v, 1.25)}))
            elif v > 1:
                out.append(base.model_copy(update={"band": (0.8, v)}))
        else:
            out += [base.model_copy(update={"comparison": c, "threshold": v}) for c in Comparison]
    if seen:
        n, tenant = seen[0].sample, seen[0].tenant
        out += [base.model_copy(update={"min_sample": m}) for m in (n, n + 1)]
        if tenant and picks:
            override = Override(tenant=tenant, threshold=picks[-1], min_sample=n)
            out.append(base.model_copy(update={"comparison": Comparison.GE, "overrides": (override,)}))
    variants = [v.model_copy(update={"no_data": nd}) for v in out for nd in ("ok", "alerting")
                if not (v.overrides and nd == "alerting")]  # refused by the export: test below  # fmt: skip
    return [v for v in variants if _valid(v)]


def _valid(rule: Rule) -> bool:
    """A variant a rules file could hold (a tested ratio rule's threshold stays past 1)."""
    try:
        Rule.model_validate(rule.model_dump(by_alias=True))
    except ValueError:
        return False
    return True


def test_every_exported_rule_decides_as_the_evaluator_on_the_same_numbers(collector: Collector) -> None:
    load_demo(collector, WRITE_TOKEN, workflows=1500)
    db = collector.options.database
    now = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)  # $__toTime is whole seconds
    compared = fired = quiet = 0
    decided: dict[tuple[Any, ...], dict[Comparison, set[Labels]]] = {}
    for rule in load(default_rules_path()).rules:
        for variant in _variants(collector.client, rule, db, now):
            grafana = _grafana(collector.client, variant, db, now)
            clinotel = _evaluator(collector.client, variant, db, now)
            assert grafana == clinotel, (
                f"{rule.name} {variant.comparison} {variant.threshold} band={variant.band} "
                f"min={variant.min_sample} no_data={variant.no_data}: Grafana {grafana}, clinotel {clinotel}"
            )
            compared += 1
            fired += bool(clinotel)
            quiet += not clinotel
            key = (rule.name, variant.threshold, variant.no_data, variant.min_sample, variant.overrides)
            decided.setdefault(key, {})[variant.comparison] = clinotel
    assert compared > 100
    assert fired > 10, "both decisions are exercised"
    assert quiet > 10, "both decisions are exercised"
    # a threshold equal to an observed value: where a strict export of ge/le would have gone wrong
    parted = {k[0] for k, d in decided.items() if d.get(Comparison.GT) != d.get(Comparison.GE) and len(d) == 4}
    assert len(parted) >= 5, parted


def test_a_rule_grafana_cannot_judge_alike_is_refused() -> None:
    rule = load(default_rules_path()).rules[0]
    assert rule.no_data == "alerting"
    pack = RulePack(rules=(rule.model_copy(update={"overrides": (Override(tenant="st-marys", threshold=1),)}),))
    with pytest.raises(ValueError, match="no faithful Grafana export"):
        grafana_rules(pack)


def test_comparisons_are_exported_exactly() -> None:
    assert THRESHOLD == {Comparison.GT: "gt", Comparison.GE: "gte", Comparison.LT: "lt", Comparison.LE: "lte"}
    for r in (r for g in grafana_rules(load(default_rules_path()))["groups"] for r in g["rules"]):
        if r["uid"] == "ingestion_stalled":
            assert r["data"][2]["model"]["conditions"][0]["evaluator"] == {"type": "lte", "params": [0.0]}
            assert r["noDataState"] == "Alerting"
            return
    pytest.fail("ingestion_stalled not exported")


@pytest.mark.parametrize(
    ("kind", "value", "decided"),
    [("gt", 1.0, "Normal"), ("gte", 1.0, "Alerting"), ("lt", 1.0, "Normal"), ("lte", 1.0, "Alerting"),
     ("outside_range", 0.8, "Normal"), ("outside_range", 0.79, "Alerting"), ("gte", None, "Normal")],
)  # fmt: skip
def test_the_grafana_model_on_boundaries(kind: str, value: float | None, decided: str) -> None:
    params = [0.8, 1.25] if kind == "outside_range" else [1.0]
    rule = {"noDataState": "OK", "data": [
        {"model": {"format": 0}}, {"model": {"type": "reduce", "reducer": "last", "settings": {"mode": "dropNN"}}},
        {"model": {"type": "threshold", "conditions": [{"evaluator": {"type": kind, "params": params}}]}}]}  # fmt: skip
    rows = [(None, "t1", float("nan")), (None, "t1", value)]
    assert grafana_eval.evaluate(rule, ["time", "tenant", "value"], rows) == {frozenset({("tenant", "t1")}): decided}
    assert grafana_eval.evaluate({**rule, "noDataState": "Alerting"}, ["time", "value"], []) == {
        frozenset(): "Alerting"
    }


def test_a_tested_rule_exports_what_its_test_leaves(collector: Collector) -> None:
    """The `decide` figure (what the evaluator compares and Grafana thresholds) equals the test
    computed in Python (`clinotel.model.stats`) from the counts the query returns; the rule's
    exported annotation says what the value is."""
    import math

    from clinotel.alerts.rules import Test
    from clinotel.model.stats import kill_sequence, ratio_interval, wilson

    load_demo(collector, WRITE_TOKEN, workflows=1500)
    db = collector.options.database
    now = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    checked = 0
    for rule in load(default_rules_path()).rules:
        if rule.decided_by is Test.NONE:
            continue
        exported = next(r for g in grafana_rules(RulePack(rules=(rule,)), db)["groups"] for r in g["rules"])
        assert "value: " in exported["annotations"]["test"]
        for o in observe(collector.client, rule, db, now):
            x1, n1, x2, n2 = o.counts
            if rule.kind is Kind.THRESHOLD:
                interval = wilson(x1, n1, rule.confidence)
            elif rule.decided_by is Test.SEQUENTIAL:
                interval = kill_sequence(x1, n1, x2, n2, rule.confidence, abs(math.log(rule.threshold)))
            else:
                interval = ratio_interval(x1, n1, x2, n2, rule.confidence)
            if interval is None or o.value is None:
                assert o.decide is None or o.value is None
                continue
            assert o.low == pytest.approx(interval.low, rel=1e-9, abs=1e-12)
            if math.isfinite(interval.high):
                assert o.high == pytest.approx(interval.high, rel=1e-9)
            if rule.kind is Kind.THRESHOLD:
                want = interval.low if rule.harm_is_higher else interval.high
            else:
                want = o.value if interval.excludes_one(rule.harm_is_higher) else 1.0
            assert o.decide == pytest.approx(want, rel=1e-9)
            checked += 1
    assert checked >= 10
