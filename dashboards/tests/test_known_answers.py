"""Every safety and fairness figure read through the dashboards' own panel SQL (macros expanded as
the plugin does) equals the figure computed independently in Python from the raw events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clinotel.collector.service import Collector
from clinotel.dashboards import build_all
from clinotel.dashboards.check import panel_range
from clinotel.dashboards.macros import TimeRange, expand
from clinotel.model.indicators import INDICATORS
from collector.tests.fixtures import WRITE_TOKEN
from dashboards.tests import known_answers as ka

EVENTS = ka.generate(3000, seed=11)


@pytest.fixture
def loaded(collector: Collector) -> Collector:
    ka.send(collector, WRITE_TOKEN, EVENTS)
    return collector


def _panel_rows(c: Collector, dashboard: str, title: str, kind: str = "table") -> list[dict[str, Any]]:
    boards = build_all(c.options.database)
    panels = [p for p in boards[dashboard]["panels"] if p.get("title") == title and p["type"] == kind]
    assert len(panels) == 1, f"{dashboard}: no single panel {title!r}"
    end = datetime.now(UTC) + timedelta(minutes=1)
    names = tuple(v["name"] for v in boards[dashboard]["templating"]["list"])
    tr = panel_range(panels[0], names, TimeRange(end - timedelta(hours=4), end))
    sql = expand(panels[0]["targets"][0]["rawSql"], tr)
    return list(c.client.query(sql).named_results())


def _close(got: float | None, want: float | None, places: int) -> bool:
    if got is None or want is None:
        return got is None and want is None
    return abs(got - round(want, places)) <= 10**-places


@pytest.mark.parametrize(
    ("indicator", "reference"),
    [
        ("under_triage_rate", ka.under_triage),
        ("high_risk_miss_rate", ka.high_risk_miss),
        ("override_rate", ka.override),
        ("escalation_miss_rate", ka.escalation_miss),
    ],
)
def test_safety_figures_equal_the_python_reference(loaded: Collector, indicator: str, reference: Any) -> None:
    title = INDICATORS[indicator].title
    (row,) = _panel_rows(loaded, "safety", title, "stat")
    want = reference(EVENTS)
    assert want is not None
    assert row[title] == pytest.approx(want, abs=1e-9)


def test_fairness_groups_equal_the_python_reference(loaded: Collector) -> None:
    rows = {r["Language"]: r for r in _panel_rows(loaded, "fairness", "Language: rates and disparities")}
    groups = ka.by_group(EVENTS, lambda e: e.language)
    assert set(rows) == set(groups)
    ut_disparity = ka.disparities(EVENTS, lambda e: e.language, ka.under_triage)
    hp_disparity = ka.disparities(EVENTS, lambda e: e.language, ka.high_priority)
    for language, events in groups.items():
        row = rows[language]
        assert row["workflows"] == len(events)
        if len(events) < ka.MIN_GROUP:
            assert row["fairness"] == "too few"
            assert row["Under-triage rate"] is None, "a group too small is shown as such, not as numbers"
            continue
        assert _close(row["Under-triage rate"], ka.under_triage(events), 4)
        assert _close(row["Override rate"], ka.override(events), 4)
        assert _close(row["High-priority assignment rate"], ka.high_priority(events), 4)
        assert _close(row["under_triage_rate disparity"], ut_disparity[language], 2)
        assert _close(row["high_priority_rate disparity"], hp_disparity[language], 2)
    assert rows["en"]["fairness"] == "reference"
    assert rows["es"]["fairness"] == "outside 0.8–1.25", "the biased model under-triages Spanish speakers"


def test_parity_summary_equals_fairlearn_definitions(loaded: Collector) -> None:
    rows = {r["dimension"]: r for r in _panel_rows(loaded, "fairness", "Parity by dimension")}
    language = rows["Language"]
    by_language = lambda e: e.language  # noqa: E731
    dp_difference, dp_ratio = ka.parity(EVENTS, by_language, ka.high_priority, lambda e: True)
    eo_gap, _ = ka.parity(EVENTS, by_language, ka.under_triage, lambda e: e.truth is not None)
    assert _close(language["dp_difference"], dp_difference, 4)
    assert _close(language["dp_ratio"], dp_ratio, 4)
    assert _close(language["eo_gap_under_triage"], eo_gap, 4)
    assert language["groups"] == 4, "Somali speakers (too few) are left out of the parity figures"
