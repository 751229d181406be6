"""Known answers of issue 17's panels, read through the dashboards' own SQL (macros expanded as the
plugin does): the data quality by site, clinician feedback joined to its workflow's decision and
model version (by span link, or by identifier when recorded later), and the efficiency figures per
site and department."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from scipy.stats import norm

from clinotel.collector.store import schema
from clinotel.collector.store.rollups import refresh
from clinotel.dashboards import build_all
from clinotel.dashboards.check import panel_range
from clinotel.dashboards.macros import TimeRange, expand
from clinotel.model import clinical
from clinotel.model.drift import MIN_SAMPLE
from clinotel.semconv import attributes as A

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
RANGE = TimeRange(T0 - timedelta(hours=1), T0 + timedelta(hours=6))
TENANT = {A.TENANT_ID.key: "st-marys"}
SPAN_COLUMNS = ["Timestamp", "TraceId", "SpanId", "SpanName", "ResourceAttributes", "SpanAttributes",
                "Links.TraceId", "Links.SpanId", "Links.TraceState", "Links.Attributes"]  # fmt: skip
WORKFLOW_COLUMNS = [clinical.stored_column(name) for name in (
    "TenantId", "WorkflowKind", "TraceId", "WorkflowId", "Site", "Department", "StartTime", "EndTime", "RolloutMode",
    "RolloutCohort", "ModelVersion", "DecisionValue",
)]  # fmt: skip


class Spans:
    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []

    def add(self, at: datetime, name: str, attrs: dict[str, str], *, trace: str = "", link: str = "") -> None:
        n = len(self.rows) + 1
        links: tuple[list[Any], ...] = ([link], ["0" * 16], [""], [{}]) if link else ([], [], [], [])
        self.rows.append((at, trace or f"{n:032x}", f"{n:016x}", name, TENANT, attrs, *links))

    def insert(self, client: Any, o: schema.SchemaOptions) -> None:
        client.insert(o.name(schema.TRACES), self.rows, column_names=SPAN_COLUMNS)


def _rows(client: Any, database: str, dashboard: str, title: str, kind: str = "table") -> list[dict[str, Any]]:
    refresh(client, schema.SchemaOptions(database=database))  # as the collector does: panels read the rollups
    board = build_all(database)[dashboard]
    (panel,) = [p for p in board["panels"] if p.get("title") == title and p["type"] == kind]
    names = tuple(v["name"] for v in board["templating"]["list"])
    sql = expand(panel["targets"][0]["rawSql"], panel_range(panel, names, RANGE))
    return list(client.query(sql).named_results())


def test_data_quality_by_site(client: Any, options: schema.SchemaOptions) -> None:
    s = Spans()
    rng = np.random.default_rng(7)
    want: dict[str, dict[str, Any]] = {}
    for site, n, stale, late, missing, errors in (("north", 80, 24, 8, 4, 2), ("south", 40, 2, 10, 0, 5)):
        ages = np.concatenate([rng.uniform(25, 200, stale), rng.uniform(0, 24, n - stale)])
        delays = np.concatenate([rng.uniform(61, 300, late), rng.uniform(0, 60, n - late)])
        for i in range(n):
            s.add(T0 + timedelta(minutes=i), "decide", {
                A.WORKFLOW_KIND.key: "triage", A.SITE.key: site,
                A.DATA_DEMOGRAPHICS_AGE_H.key: repr(float(ages[i])), A.DATA_LAB_DELAY_MIN.key: repr(float(delays[i])),
                A.DATA_CONTEXT_MISSING.key: "true" if i < missing else "false",
                A.DATA_MAPPING_ERRORS.key: "3" if i < errors else "0",
            })  # fmt: skip
        want[site] = {"decisions": n, "stale_demographics_rate": stale / n, "late_lab_rate": late / n,
                      "context_missing_rate": missing / n, "mapping_error_rate": errors / n,
                      "demographics_age_p95_h": float(np.quantile(ages, 0.95)),
                      "lab_delay_p95_min": float(np.quantile(delays, 0.95))}  # fmt: skip
    s.add(T0, "decide", {A.WORKFLOW_KIND.key: "triage", A.SITE.key: "north"})  # no data-quality fields: not counted
    s.add(T0 + timedelta(hours=8), "decide", {A.SITE.key: "north", A.DATA_CONTEXT_MISSING.key: "true"})  # out of range
    s.insert(client, options)
    got = {r["site"]: r for r in _rows(client, options.database, "quality", "Data quality by site")}
    assert set(got) == {"north", "south"}
    for site, figures in want.items():
        for name, value in figures.items():
            places = 1 if name.endswith(("_h", "_min")) else 4
            assert got[site][name] == pytest.approx(round(value, places), abs=10**-places * 1.01), (site, name)


def test_feedback_lands_on_the_decision_it_judged(client: Any, options: schema.SchemaOptions) -> None:
    workflows = []
    for i, (version, decision) in enumerate((("3.2.0", "ESI-3"), ("4.0.0", "ESI-4"), ("4.0.0", "ESI-2"))):
        start = T0 + timedelta(minutes=i)
        workflows.append(("st-marys", "triage", f"{i + 1:032x}", f"wid-{i}", "north", "ed", start, start, "recommend",
                          "canary" if version == "4.0.0" else "baseline", version, decision))  # fmt: skip
    # the same identifier in another kind: a feedback record about triage must not land on it
    workflows.append(("st-marys", "scheduling", f"{9:032x}", "wid-1", "north", "ed", T0, T0, "recommend", "baseline",
                      "9.9.9", "slot-a"))  # fmt: skip
    client.insert(options.name(clinical.WORKFLOWS), workflows, column_names=WORKFLOW_COLUMNS)
    s = Spans()

    def feedback(category: str, at: datetime, *, link: str = "", wid: str = "") -> None:
        attrs = {A.ABOUT_KIND.key: "triage", A.FEEDBACK_CATEGORY.key: category, A.FEEDBACK_SEVERITY.key: "major"}
        if wid:
            attrs[A.WORKFLOW_ID.key] = wid
        s.add(at, A.FEEDBACK_SPAN_NAME, attrs, link=link)

    feedback("wrong_priority", T0 + timedelta(minutes=5), link=f"{1:032x}", wid="wid-0")  # with the handle
    feedback("wrong_priority", T0 + timedelta(hours=3), wid="wid-1")  # hours later, by identifier only
    feedback("wrong_priority", T0 + timedelta(hours=4), wid="wid-1")
    feedback("missing_context", T0 + timedelta(minutes=9), link=f"{3:032x}")  # inside the workflow: link only
    feedback("too_slow", T0 + timedelta(hours=2), wid="no-such-workflow")  # kept, with no decision
    s.insert(client, options)
    got = {(r["category"], r["model_version"], r["decision"]): (r["reports"], r["team"]) for r in
           _rows(client, options.database, "trust", "Feedback by category, with its decision")}  # fmt: skip
    assert got == {
        ("wrong_priority", "3.2.0", "ESI-3"): (1, "clinical-ml"),
        ("wrong_priority", "4.0.0", "ESI-4"): (2, "clinical-ml"),
        ("missing_context", "4.0.0", "ESI-2"): (1, "ehr-integration"),
        ("too_slow", "", ""): (1, "platform"),
    }


# (site, department, phase, cohort, stage minutes, touches, rework minutes or None)
PLANTED = [
    ("north", "ed", "shadow", "", 6.0, 6, None), ("north", "ed", "shadow", "", 8.0, 7, None),
    ("north", "ed", "shadow", "", 7.0, 5, 2.0),
    ("north", "ed", "recommend", "baseline", 3.0, 2, None), ("north", "ed", "recommend", "baseline", 4.0, 2, None),
    ("north", "ed", "recommend", "canary", 2.0, 1, 9.0), ("north", "ed", "recommend", "canary", 3.0, 1, 11.0),
    ("north", "icu", "shadow", "", 12.0, 9, None), ("north", "icu", "shadow", "", 10.0, 8, None),
    ("north", "icu", "recommend", "baseline", 5.0, 3, None), ("north", "icu", "recommend", "baseline", 6.0, 4, 1.0),
    ("south", "ed", "shadow", "", 5.0, 4, None), ("south", "ed", "shadow", "", 7.0, 4, None),
    ("south", "ed", "recommend", "baseline", 6.0, 3, None), ("south", "ed", "recommend", "baseline", 8.0, 3, None),
    ("south", "ed", "recommend", "baseline", 7.0, 3, None),
    ("south", "icu", "recommend", "baseline", 1.0, 1, None), ("south", "icu", "recommend", "baseline", 1.0, 1, None),
]  # fmt: skip
"""south/icu has no shadow phase: no baseline, no row."""


def _plant_effort(client: Any, o: schema.SchemaOptions) -> None:
    workflows, s = [], Spans()
    for i, (site, dept, mode, cohort, minutes, touches, rework) in enumerate(PLANTED):
        trace, wid, start = f"{i + 1:032x}", f"wid-{i}", T0 + timedelta(minutes=i)
        workflows.append(("st-marys", "triage", trace, wid, site, dept, start, start, mode, cohort, "", ""))
        s.add(start, "review", {A.WORKFLOW_KIND.key: "triage", A.EFFORT_MINUTES.key: repr(minutes / 2),
                                A.EFFORT_TOUCHES.key: str(touches - 1)}, trace=trace)  # fmt: skip
        s.add(start, "act", {A.WORKFLOW_KIND.key: "triage", A.EFFORT_MINUTES.key: repr(minutes / 2),
                             A.EFFORT_TOUCHES.key: "1"}, trace=trace)  # fmt: skip
        if rework is not None:
            s.add(start + timedelta(hours=2), A.REWORK_SPAN_NAME, {
                A.ABOUT_KIND.key: "triage", A.WORKFLOW_ID.key: wid, A.REWORK_KIND.key: "callback",
                A.EFFORT_ACTOR_ROLE.key: "nurse", A.EFFORT_MINUTES.key: repr(rework), A.EFFORT_TOUCHES.key: "2",
            })  # fmt: skip
    client.insert(o.name(clinical.WORKFLOWS), workflows, column_names=WORKFLOW_COLUMNS)
    s.insert(client, o)


def _totals(site: str, dept: str, mode: str, cohort: str | None = None) -> np.ndarray:
    return np.array([m + (r or 0.0) for si, d, p, c, m, _, r in PLANTED
                     if (si, d, p) == (site, dept, mode) and (cohort is None or c == cohort)])  # fmt: skip


def test_net_minutes_saved_per_site_and_department(client: Any, options: schema.SchemaOptions) -> None:
    _plant_effort(client, options)
    title = "Net minutes saved against the shadow phase, per site and department"
    got = {(r["site"], r["department"], r["phase"]): r for r in _rows(client, options.database, "efficiency", title)}
    want = {("north", "ed", "recommend", "baseline"), ("north", "ed", "recommend canary", "canary"),
            ("north", "icu", "recommend", "baseline"), ("south", "ed", "recommend", "baseline")}  # fmt: skip
    assert set(got) == {(si, d, p) for si, d, p, _ in want}
    z = norm.ppf(0.975)
    for site, dept, phase, cohort in want:
        base, now = _totals(site, dept, "shadow"), _totals(site, dept, "recommend", cohort)
        diff = base.mean() - now.mean()
        se = math.sqrt(base.var(ddof=1) / len(base) + now.var(ddof=1) / len(now))
        r = got[(site, dept, phase)]
        assert r["workflows"] == len(now)
        assert r["shadow_minutes"] == pytest.approx(round(base.mean(), 2))
        assert r["saved_per_workflow"] == pytest.approx(round(diff, 2))
        assert (r["saved_low"], r["saved_high"]) == (pytest.approx(round(diff - z * se, 2)),
                                                     pytest.approx(round(diff + z * se, 2)))  # fmt: skip
        assert r["net_minutes_saved"] == pytest.approx(round(diff * len(now), 1))
    # the canary's rework turns a saving on its stages into minutes lost at north/ed
    assert got[("north", "ed", "recommend canary")]["net_minutes_saved"] < 0 < got[("north", "ed", "recommend")][
        "net_minutes_saved"]  # fmt: skip
    assert got[("south", "ed", "recommend")]["saved_per_workflow"] < 0  # slower than its shadow phase


def test_phases_table_through_the_panel(client: Any, options: schema.SchemaOptions) -> None:
    _plant_effort(client, options)
    title = "Minutes, touches and rework per workflow by phase"
    got = {r["phase"]: r for r in _rows(client, options.database, "efficiency", title)}
    for phase, mode, cohort in (("shadow", "shadow", ""), ("recommend", "recommend", "baseline"),
                                ("recommend canary", "recommend", "canary")):  # fmt: skip
        rows = [p for p in PLANTED if p[2] == mode and p[3] == cohort]
        totals = np.array([m + (r or 0.0) for *_, m, _, r in rows])
        touches = np.array([t + (2 if r is not None else 0) for *_, t, r in rows])
        reworked = sum(r is not None for *_, r in rows)
        r = got[phase]
        assert r["workflows"] == len(rows)
        assert r["minutes_per_workflow"] == pytest.approx(round(totals.mean(), 2))
        half = norm.ppf(0.975) * totals.std(ddof=1) / math.sqrt(len(totals))
        assert (r["minutes_low"], r["minutes_high"]) == (pytest.approx(round(totals.mean() - half, 2)),
                                                         pytest.approx(round(totals.mean() + half, 2)))  # fmt: skip
        assert r["touches_per_workflow"] == pytest.approx(round(touches.mean(), 2))
        assert r["rework_rate"] == pytest.approx(round(reworked / len(rows), 4))


def test_rework_by_kind_and_role(client: Any, options: schema.SchemaOptions) -> None:
    _plant_effort(client, options)
    (row,) = _rows(client, options.database, "efficiency", "Rework by kind and role")
    rework = [r for *_, r in PLANTED if r is not None]
    assert (row["rework"], row["role"], row["records"]) == ("callback", "nurse", len(rework))
    assert row["rework_minutes"] == pytest.approx(round(sum(rework), 1))


def test_drift_panel_shows_a_figure_only_with_enough_rows(client: Any, options: schema.SchemaOptions) -> None:
    s = Spans()
    decide = {A.WORKFLOW_KIND.key: "triage", A.WORKFLOW_STAGE.key: "decide"}
    # the previous period (the range's length before it) and the range: arrival mode on 300 and 300
    # rows, the heart rate band on 40 and 40 (under MIN_SAMPLE)
    for at, walk_in, ambulance in ((T0 - timedelta(hours=4), 200, 100), (T0 + timedelta(hours=1), 100, 200)):
        for i in range(walk_in + ambulance):
            attrs = {**decide, A.INPUT_ARRIVAL_MODE.key: "walk_in" if i < walk_in else "ambulance"}
            if i < 40:
                attrs[A.INPUT_HEART_RATE_BAND.key] = "high" if at > T0 else "normal"
            s.add(at, "decide", attrs)
    s.insert(client, options)
    got = {r["feature"]: r for r in _rows(client, options.database, "quality", "Drift against the previous period")}
    mode, heart = got["input.arrival_mode"], got["input.heart_rate_band"]
    assert (mode["n_ref"], mode["n_win"], heart["n_ref"], heart["n_win"]) == (300, 300, 40, 40)
    assert MIN_SAMPLE > 40
    r = np.array([200.5, 100.5]) / 301
    w = np.array([100.5, 200.5]) / 301
    assert mode["psi"] == pytest.approx(round(float(np.sum((w - r) * np.log(w / r))), 4))
    assert mode["js"] is not None
    assert (heart["psi"], heart["js"], heart["moved_most"]) == (None, None, ""), "too few: no figure"


def test_data_quality_series_by_site_and_the_arrival_mix(client: Any, options: schema.SchemaOptions) -> None:
    s = Spans()
    at = T0 + timedelta(hours=1)  # one instant: one interval, whatever the panel's
    for site, n, stale in (("north", 10, 3), ("south", 4, 4)):  # south: under 5 rows, left out
        for i in range(n):
            s.add(at, "decide", {A.WORKFLOW_KIND.key: "triage", A.SITE.key: site,
                                 A.DATA_DEMOGRAPHICS_AGE_H.key: "48" if i < stale else "1"})  # fmt: skip
    for i in range(8):
        s.add(
            at,
            "decide",
            {A.WORKFLOW_KIND.key: "triage", A.INPUT_ARRIVAL_MODE.key: "walk_in" if i < 6 else "helicopter"},
        )
    s.insert(client, options)
    stale = _rows(client, options.database, "quality", "Stale demographics", "timeseries")
    assert [(r["grp"], r["Stale demographics"]) for r in stale] == [("north", pytest.approx(0.3))]
    mix = {r["mode"]: r["share"] for r in _rows(client, options.database, "quality", "Arrival mode mix", "timeseries")}
    assert mix == {"walk_in": pytest.approx(0.75), "helicopter": pytest.approx(0.25)}
