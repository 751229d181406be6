"""Every safety and fairness figure read through the dashboards' own panel SQL (macros expanded as
the plugin does) equals the figure computed independently in Python from the raw events; the
figures named after Fairlearn's metrics equal Fairlearn's. Each of issue 15's defects has a test
here that fails on the code before it was fixed."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from clinotel.collector.service import Collector
from clinotel.dashboards import build_all
from clinotel.dashboards.check import data_range, panel_range
from clinotel.dashboards.fairness import MIN_GROUP, REFERENCE, REFERENCE_WORSE_OFF, WORSE_OFF
from clinotel.dashboards.macros import TimeRange, expand
from clinotel.model import rollups
from clinotel.model.indicators import INDICATORS, PARITY
from clinotel.model.stats import ratio_interval
from collector.tests.fixtures import WRITE_TOKEN, own_database, running, tokens_in
from dashboards.tests import known_answers as ka

EVENTS = ka.generate(3000, seed=11)


@pytest.fixture(scope="module")
def loaded(client: Any, engine_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    """One collector, loaded once for the module: the tests below only read."""
    tmp = tmp_path_factory.mktemp("known-answers")
    with (
        own_database(client) as o,
        running(client, engine_dir, o, tokens_in(tmp), tmp / "wal", otlp_grpc=None, http=None) as c,
    ):
        ka.send(c, WRITE_TOKEN, EVENTS)
        yield c


def _rows(c: Collector, dashboard: str, title: str, kind: str = "table", tr: TimeRange | None = None) -> list[Any]:
    boards = build_all(c.options.database)
    panels = [p for p in boards[dashboard]["panels"] if p.get("title") == title and p["type"] == kind]
    assert len(panels) == 1, f"{dashboard}: no single panel {title!r}"
    if tr is None:
        end = datetime.now(UTC) + timedelta(minutes=1)
        tr = TimeRange(end - timedelta(hours=5), end)
    names = tuple(v["name"] for v in boards[dashboard]["templating"]["list"])
    sql = expand(panels[0]["targets"][0]["rawSql"], panel_range(panels[0], names, tr))
    return list(c.client.query(sql).named_results())


def _close(got: float | None, want: float | None, places: int) -> bool:
    if got is None or want is None:
        return got is None and want is None
    return abs(got - round(want, places)) <= 10**-places * 1.01


@pytest.mark.parametrize(
    ("dashboard", "indicator"),
    [
        ("safety", "under_triage_rate"),
        ("safety", "final_under_triage_rate"),
        ("safety", "high_risk_miss_rate"),
        ("safety", "override_rate"),
        ("safety", "escalation_miss_rate"),
        ("trust", "cds_override_rate"),
    ],
)
def test_safety_figures_equal_the_python_reference(loaded: Collector, dashboard: str, indicator: str) -> None:
    title = INDICATORS[indicator].title
    (row,) = _rows(loaded, dashboard, title, "stat")
    hit, eligible = ka.MEASURES[indicator]
    x, n = ka.counts(EVENTS, hit, eligible)
    assert row["n"] == n
    assert row[title] == pytest.approx(x / n, abs=1e-9)


def test_model_and_final_under_triage_differ_and_are_labelled(loaded: Collector) -> None:
    model = ka.measure("under_triage_rate")(EVENTS)
    final = ka.measure("final_under_triage_rate")(EVENTS)
    assert model is not None
    assert final is not None
    assert final < model, "review corrects some of the model's under-triage"
    assert INDICATORS["under_triage_rate"].title == "Model under-triage"
    assert INDICATORS["final_under_triage_rate"].title == "Final under-triage"


def test_defect_1_shadow_predictions_are_not_decide_stages(loaded: Collector) -> None:
    rows = {r["Stage"]: r for r in _rows(loaded, "operations", "Stage latency p50 / p95 / p99")}
    assert sum(e.shadow for e in EVENTS) > 500
    assert rows["decide"]["spans"] == len(EVENTS), "one live decide stage per workflow; shadows are not stages"
    # the rollup's sketch is within 1 % of the duration of that rank (every live decide takes 20 ms)
    assert rows["decide"]["p50_ms"] == pytest.approx(20.0, rel=rollups.STAGE_SKETCH_ACCURACY)


def test_defect_2_an_unreviewed_workflow_has_no_review_latency(loaded: Collector) -> None:
    (row,) = _rows(loaded, "trust", INDICATORS["review_latency_p95_ms"].title, "stat")
    reviewed = sum(e.action is not None for e in EVENTS)
    assert reviewed < len(EVENTS)
    assert row["n"] == reviewed
    seconds = sorted(e.review_s for e in EVENTS if e.action is not None)
    assert row[INDICATORS["review_latency_p95_ms"].title] == pytest.approx(
        seconds[int(0.95 * (len(seconds) - 1))] * 1000, rel=0.02
    )


def test_defect_3_override_reasons_count_the_models_overrides(loaded: Collector) -> None:
    rows = _rows(loaded, "trust", "Override reasons")
    overrides = sum(e.model and e.action == "override" for e in EVENTS)
    assert sum(e.source == "fallback" and e.action == "override" for e in EVENTS) > 0
    assert sum(r["Overrides"] for r in rows) == overrides, "the override rate's numerator, fallbacks left out"


def test_fallbacks_by_reason_and_shadow_agreement_read_from_the_rollup(loaded: Collector) -> None:
    fallbacks = _rows(loaded, "safety", "Fallback activations by reason", "timeseries")
    assert sum(r["fallbacks"] for r in fallbacks) == sum(e.source == "fallback" for e in EVENTS) > 0
    agreement = _rows(loaded, "rollout", "Shadow agreement by shadow model", "timeseries")
    assert {r["ShadowModelVersion"] for r in agreement} == {"5.0.0-rc1"}
    assert all(r["agreement"] == 1.0 for r in agreement), "the shadow model predicts what the live one decided"


def test_cds_hooks_feedback_counts_reviews_of_the_model_as_a_cds_client_does(loaded: Collector) -> None:
    (row,) = _rows(loaded, "trust", "CDS Hooks feedback: accepted and overridden")
    reviewed = [e for e in EVENTS if e.model and e.action is not None]
    assert (row["Workflow kind"], row["Role"]) == ("triage", "nurse")
    assert row["Accepted"] == sum(e.action == "accept" for e in reviewed)
    assert row["Overridden"] == sum(e.action in ("override", "reject") for e in reviewed)
    assert row["No feedback (escalate, timeout)"] == sum(e.action in ("escalate", "timeout") for e in reviewed)
    assert row["Overridden"] > 0
    assert row["No feedback (escalate, timeout)"] > 0


def test_the_kill_criteria_rates_are_the_cohorts_own(loaded: Collector) -> None:
    rows = {r["Criterion"]: r for r in _rows(loaded, "rollout", "Kill criteria: canary against baseline")}
    for name in ("under_triage_rate", "override_rate"):
        row = rows[INDICATORS[name].title]
        hit, eligible = ka.MEASURES[name]
        for cohort, column in (("canary", "Canary"), ("baseline", "Baseline")):
            hits, n = ka.counts([e for e in EVENTS if e.cohort == cohort], hit, eligible)
            assert row[f"{column} rows"] == n, (name, cohort)
            assert row[column] == pytest.approx(round(hits / n, 4), abs=1e-4), (name, cohort)
    # every canary workflow decides (the model, or the rules when it was unavailable)
    assert rows[INDICATORS["decision_latency_p95_ms"].title]["Canary rows"] == sum(e.cohort == "canary" for e in EVENTS)


def test_defect_4_ground_truth_by_identifier_joins_and_the_unjoined_are_counted(loaded: Collector) -> None:
    assert sum(e.truth is not None and not e.linked for e in EVENTS) > 200
    (workflows,) = _rows(loaded, "operations", "Workflows", "stat")
    assert workflows["Workflows"] == len(EVENTS), "a late outcome is never a workflow of its own"
    rows = _rows(loaded, "health", "Late outcomes by tenant and kind")
    outcomes = {r["Outcome"]: r["Outcomes"] for r in rows}
    assert outcomes == {
        "joined a workflow": sum(e.truth is not None for e in EVENTS),
        "joined nothing: no workflow with this id": ka.UNJOINED,
    }


def test_defect_5_the_default_range_covers_every_span(loaded: Collector) -> None:
    span = data_range(loaded.client, loaded.options.database)
    assert span is not None
    start, end = span
    rows = {
        r["Stage"]: r for r in _rows(loaded, "operations", "Stage latency p50 / p95 / p99", tr=TimeRange(start, end))
    }
    for stage in ("decide", "act", "complete"):
        assert rows[stage]["spans"] == len(EVENTS), f"every {stage} span is in the data's own range"
    assert rows["review"]["spans"] == sum(e.action is not None for e in EVENTS)


def test_fairness_groups_equal_the_python_reference_within_each_stratum(loaded: Collector) -> None:
    rows = _rows(loaded, "fairness", "Language: rates and disparities")
    strata = ka.by_group(EVENTS, lambda e: "|".join(ka.stratum(e)))
    checked = 0
    for r in rows:
        events = strata[f"{r['Rollout cohort']}|{r['Model version']}"]
        groups = ka.by_group(events, lambda e: e.language)
        mine = groups[r["Language"]]
        ref = ka.reference(events, lambda e: e.language)
        assert r["Workflow kind"] == "triage"
        assert r["Workflows"] == len(mine)
        assert r["Reference group"] == ref
        name = next(n for n in ka.MEASURES if INDICATORS[n].title == r["Measure"]) if r["Measure"] != INDICATORS[
            "queue_wait_p95_ms"].title else None  # fmt: skip
        if name is None:
            continue
        hit, eligible = ka.MEASURES[name]
        x, n = ka.counts(mine, hit, eligible)
        rx, rn = ka.counts(groups[ref], hit, eligible)
        assert r["Rows"] == n
        if n < MIN_GROUP:
            assert r["Value"] is None, "a group too small is shown as such, not as numbers"
            continue
        assert _close(r["Value"], x / n, 4)
        if r["Language"] == ref:
            assert r["Verdict"] == REFERENCE
            continue
        if rn < MIN_GROUP or rx == 0:
            continue
        assert _close(r["Disparity"], (x / n) / (rx / rn), 2)
        interval = ratio_interval(x, n, rx, rn, 0.95)
        assert interval is not None
        assert _close(r["Disparity 95% low"], interval.low, 2)
        checked += 1
    assert checked >= 12
    verdicts = {(r["Rollout cohort"], r["Language"], r["Measure"]): r["Verdict"] for r in rows}
    under = INDICATORS["under_triage_rate"].title
    assert verdicts[("canary", "es", under)] == WORSE_OFF, "the canary model under-triages Spanish speakers"
    assert verdicts[("baseline", "es", under)] not in (WORSE_OFF, REFERENCE_WORSE_OFF), "the baseline does not"
    assert verdicts[("canary", "so", under)] == "too few"


def test_one_reference_group_for_the_table_and_the_alert(loaded: Collector) -> None:
    """Payer class: commercial has the most workflows, medicaid the most ground truth. The table
    and the disparity alert both take commercial."""
    from clinotel.alerts.queries import observe
    from clinotel.alerts.rules import Rule

    rows = _rows(loaded, "fairness", "Payer class: rates and disparities")
    under = INDICATORS["under_triage_rate"].title
    model = [r for r in rows if r["Measure"] == under and r["Model version"] != ""]
    assert model
    assert {r["Reference group"] for r in model} == {"commercial"}
    eligible = {r["Payer class"]: r["Rows"] for r in model if r["Rollout cohort"] == "baseline"}
    assert max(eligible, key=lambda g: eligible[g]) == "medicaid", "the largest group with ground truth differs"
    rule = Rule.model_validate({
        "name": "payer_disparity", "kind": "disparity", "metric": "under_triage_rate", "dimension": "PayerClass",
        "threshold": 1.25, "window": "1d", "severity": "page", "summary": "payer disparity",
    })  # fmt: skip
    seen = observe(loaded.client, rule, loaded.options.database, datetime.now(UTC) + timedelta(minutes=1))
    groups = {o.group for o in seen if o.kind == "triage"}
    assert groups == {"medicaid", "medicare"}, "every group but the reference is an alert instance"


def _fairlearn() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import fairlearn.metrics

        return fairlearn.metrics


def test_parity_figures_named_after_fairlearn_equal_fairlearn(loaded: Collector) -> None:
    fm = _fairlearn()
    rows = [r for r in _rows(loaded, "fairness", "Parity by dimension") if r["Dimension"] == "Language"]
    strata = ka.by_group(EVENTS, lambda e: "|".join(ka.stratum(e)))
    compared = 0
    for r in rows:
        events = strata[f"{r['Rollout cohort']}|{r['Model version']}"]
        for p in PARITY:
            hit, eligible = ka.MEASURES[p.indicator]
            groups = ka.by_group([e for e in events if eligible(e)], lambda e: e.language)
            kept = [e for g in groups.values() if len(g) >= MIN_GROUP for e in g]
            if len({e.language for e in kept}) < 2:
                assert r[p.title] is None, f"{p.title}: fewer than two groups with {MIN_GROUP} rows"
                continue
            if p.fairlearn:
                function = getattr(fm, p.name)
                y_true = [int((e.truth or 9) <= 2) for e in kept]
                y_pred = [int(e.decided <= 2) for e in kept]
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    want = float(function(y_true, y_pred, sensitive_features=[e.language for e in kept]))
            else:
                rates = [sum(map(hit, g)) / len(g) for g in groups.values() if len(g) >= MIN_GROUP]
                want = max(rates) - min(rates)
            assert _close(r[p.title], want, 4), (p.name, r, want)
            compared += p.fairlearn
    assert compared >= 6, "Fairlearn's figures compared in both cohorts"
