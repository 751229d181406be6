"""The report's efficiency section read as words, on planted workflows with known answers: the
minutes recommendation mode saved against shadow mode (Welch interval by hand), the rework the
canary created against its baseline cohort (Wilson and MOVER-R intervals of `clinotel.model.stats`),
`too few` where a side is short, and the section after the findings, on a printed page of its own."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from scipy.stats import norm

from clinotel.collector.store import schema
from clinotel.dashboards._report.efficiency import MIN_WORKFLOWS
from clinotel.dashboards.macros import TimeRange
from clinotel.dashboards.report import render
from clinotel.model import clinical
from clinotel.model.stats import ratio_interval, wilson
from clinotel.semconv import attributes as A
from dashboards.tests.report_checks import missing_shown, sql_names_shown, visible_text

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
RANGE = TimeRange(T0 - timedelta(hours=1), T0 + timedelta(hours=12))
N = 40
BASELINE_REWORKED, CANARY_REWORKED = 2, 12


def _plan() -> list[tuple[str, str, str, float, float | None]]:
    """(kind, mode, cohort, stage minutes, rework minutes or None) per workflow."""
    out: list[tuple[str, str, str, float, float | None]] = []
    for i in range(N):
        out.append(("triage", "shadow", "", 6.0 if i % 2 else 8.0, None))
        out.append(("triage", "recommend", "baseline", 3.0 if i % 2 else 5.0, 5.0 if i < BASELINE_REWORKED else None))
        out.append(("triage", "recommend", "canary", 3.0 if i % 2 else 5.0, 12.0 if i < CANARY_REWORKED else None))
    for i in range(5):  # too few on both sides
        out.append(("scheduling", "shadow", "", 4.0, None))
        out.append(("scheduling", "recommend", "baseline", 2.0 + i, None))
    return out


PLAN = _plan()


def _plant(client: Any, o: schema.SchemaOptions) -> None:
    workflows, spans = [], []
    for i, (kind, mode, cohort, minutes, rework) in enumerate(PLAN):
        trace, wid, start = f"{i + 1:032x}", f"wid-{i}", T0 + timedelta(seconds=30 * i)
        workflows.append(("st-marys", kind, trace, wid, "north", "ed", start, start, mode, cohort))
        tenant = {A.TENANT_ID.key: "st-marys"}
        effort = {A.WORKFLOW_KIND.key: kind, A.EFFORT_MINUTES.key: repr(minutes), A.EFFORT_TOUCHES.key: "1"}
        spans.append((start, trace, f"{i + 1:016x}", "review", tenant, effort))
        if rework is not None:
            spans.append((start + timedelta(hours=1), f"f{i + 1:031x}", f"f{i + 1:015x}", A.REWORK_SPAN_NAME, tenant, {
                A.ABOUT_KIND.key: kind, A.WORKFLOW_ID.key: wid, A.REWORK_KIND.key: "callback",
                A.EFFORT_MINUTES.key: repr(rework),
            }))  # fmt: skip
    client.insert(o.name(clinical.WORKFLOWS), workflows, column_names=[
        "TenantId", "WorkflowKind", "TraceId", "WorkflowId", "Site", "Department", "StartTime", "EndTime",
        "RolloutMode", "RolloutCohort"])  # fmt: skip
    client.insert(o.name(schema.TRACES), spans, column_names=[
        "Timestamp", "TraceId", "SpanId", "SpanName", "ResourceAttributes", "SpanAttributes"])  # fmt: skip


def _totals(kind: str, mode: str, cohort: str) -> np.ndarray:
    return np.array([m + (r or 0.0) for k, md, c, m, r in PLAN if (k, md, c) == (kind, mode, cohort)])


def _min(v: float) -> str:
    return f"{v:,.1f} min"


def _pct(v: float) -> str:
    return f"{v * 100:.1f}%"


def test_the_efficiency_section_says_what_was_saved_and_what_the_canary_reworked(
    client: Any, options: schema.SchemaOptions
) -> None:
    _plant(client, options)
    report = render(client, {}, RANGE, database=options.database)
    page = report.html
    assert page.index('id="findings"') < page.index('id="efficiency"') < page.index('id="details"')
    assert "section.details,section.definitions,section.efficiency{break-before:page" in page, "a page of its own"
    section = page[page.index('id="efficiency"') : page.index("</section>", page.index('id="efficiency"'))]
    assert missing_shown(section) == []
    assert sql_names_shown(section) == []
    assert 'class="error"' not in section
    text = " ".join(visible_text(section).split())

    shadow = _totals("triage", "shadow", "")
    z = norm.ppf(0.975)
    for phase, cohort in (("recommendation mode", "baseline"), ("recommendation mode, canary cohort", "canary")):
        now = _totals("triage", "recommend", cohort)
        diff = round(shadow.mean() - now.mean(), 2)
        se = math.sqrt(shadow.var(ddof=1) / N + now.var(ddof=1) / N)
        low, high = round(diff - z * se, 2), round(diff + z * se, 2)
        verb = "saved" if diff >= 0 else "lost"
        net = round(diff * N, 1)
        want = (
            f"Triage, {phase}: {_min(abs(diff))} {verb} per workflow against shadow mode ({_min(now.mean())} against "
            f"{_min(shadow.mean())}; 95 % interval of the saving {_min(low)} to {_min(high)}), rework included: net "
            f"{_min(abs(net))} {'saved' if net >= 0 else 'lost'} over {N} workflows"
        )
        assert want in text, (want, text)
    # recommendation mode saves minutes; the biased canary's rework costs more than its stages saved
    assert "Triage, recommendation mode: 2.8 min saved" in text
    assert "Triage, recommendation mode, canary cohort: 0.6 min lost" in text

    c, b = wilson(CANARY_REWORKED, N, 0.95), wilson(BASELINE_REWORKED, N, 0.95)
    r = ratio_interval(CANARY_REWORKED, N, BASELINE_REWORKED, N, 0.95)
    assert c is not None
    assert b is not None
    assert r is not None
    want = (
        f"Triage, rework created by the canary (recommendation mode): {_pct(CANARY_REWORKED / N)} of its workflows "
        f"reworked ({_pct(c.low)}–{_pct(c.high)}, n = {N}) against {_pct(BASELINE_REWORKED / N)} in the baseline "
        f"cohort "
        f"({_pct(b.low)}–{_pct(b.high)}, n = {N}): {CANARY_REWORKED / BASELINE_REWORKED:.2f}× the baseline's "
        f"({r.low:.2f}×–{r.high:.2f}×); {_min(CANARY_REWORKED * 12.0 / N)} of rework per workflow against "
        f"{_min(BASELINE_REWORKED * 5.0 / N)}"
    )
    assert want in text, (want, text)
    assert (
        f"Scheduling, recommendation mode: minutes saved against shadow mode: too few (n = 5 against 5 in shadow; "
        f"{MIN_WORKFLOWS} needed on each side)" in text
    )
    # the tables behind the words: every phase, and the net per site and department
    assert re.search(r"scheduling recommendation mode 5 too few", text)
    assert re.search(r"triage North ed recommendation mode, canary cohort 40 against 40 ", text, re.I)


def test_an_empty_range_says_there_is_nothing_to_compare(client: Any, options: schema.SchemaOptions) -> None:
    page = render(client, {}, RANGE, database=options.database).html
    assert "No rollout phase to compare with shadow mode in this range" in visible_text(page)


@pytest.mark.parametrize("bad", ["Ward", "Site; DROP TABLE x"])
def test_net_saved_refuses_a_place_it_does_not_know(bad: str) -> None:
    from clinotel.model.efficiency import net_saved_sql

    with pytest.raises(ValueError, match="compared by Site, Department"):
        net_saved_sql("clinotel", "1", by=(bad,))


def test_workflows_that_recorded_no_effort_are_not_reported_as_saving_nothing(
    client: Any, options: schema.SchemaOptions
) -> None:
    """Workflows in every phase and not one effort or rework record: the section read "0.0 min (95 %
    interval 0.0–0.0)" and "0.0 % reworked" over hundreds of workflows (a 2026-12-07 review)."""
    workflows = [
        ("st-marys", "triage", f"{i + 1:032x}", f"wid-{i}", "north", "ed", T0 + timedelta(seconds=30 * i),
         T0 + timedelta(seconds=30 * i), mode, cohort)
        for i, (mode, cohort) in enumerate([("shadow", ""), ("recommend", "baseline"), ("recommend", "canary")] * N)
    ]  # fmt: skip
    client.insert(options.name(clinical.WORKFLOWS), workflows, column_names=[
        "TenantId", "WorkflowKind", "TraceId", "WorkflowId", "Site", "Department", "StartTime", "EndTime",
        "RolloutMode", "RolloutCohort"])  # fmt: skip
    page = visible_text(render(client, {}, RANGE, database=options.database).html)
    section = " ".join(page[page.index("Is it worth it") :].split())
    assert "no effort recorded" in section
    assert "0.0 min" not in section
    assert "0.0%" not in section
