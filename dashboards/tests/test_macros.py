"""The SQL Grafana sends for a panel: the plugin's macros (cases ported from the plugin's own
tests at v4.20.0, `pkg/macros/macros_test.go`), `$__conditionalAll`, template variables and
their formats, comments, and the panel interval as Grafana computes it (rangeutil.ts)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from clinotel.dashboards import build_all
from clinotel.dashboards._grafana import MAX_DATA_POINTS
from clinotel.dashboards.check import panel_queries, panel_range
from clinotel.dashboards.interval import (
    Interval,
    IntervalError,
    calculate,
    interval_to_ms,
    panel_interval,
    round_interval,
    seconds_to_hms,
)
from clinotel.dashboards.macros import ALL, MacroError, TimeRange, expand

# the plugin's test range: 2014-11-12T11:45:26.123Z to 2015-11-12T11:45:26.456Z
FROM = datetime(2014, 11, 12, 11, 45, 26, 123000, tzinfo=UTC)
TO = datetime(2015, 11, 12, 11, 45, 26, 456000, tzinfo=UTC)
PLUGIN = TimeRange(FROM, TO, 60_000)


@pytest.mark.parametrize(
    ("sql", "expanded"),
    [
        ("select * from foo where $__timeFilter(cast(sth as timestamp))",
         "select * from foo where cast(sth as timestamp) >= toDateTime(1415792726) AND cast(sth as timestamp) <= "
         "toDateTime(1447328726)"),
        ("select * from foo where $__timeFilter(cast(sth as timestamp) )",
         "select * from foo where cast(sth as timestamp) >= toDateTime(1415792726) AND cast(sth as timestamp) <= "
         "toDateTime(1447328726)"),
        ("select * from foo where $__timeFilter_ms(cast(sth as timestamp))",
         "select * from foo where cast(sth as timestamp) >= fromUnixTimestamp64Milli(1415792726123) AND "
         "cast(sth as timestamp) <= fromUnixTimestamp64Milli(1447328726456)"),
        ("select * from foo where ( date >= $__fromTime and date <= $__toTime ) limit 100",
         "select * from foo where ( date >= toDateTime(1415792726) and date <= toDateTime(1447328726) ) limit 100"),
        ("select * from foo where ( date >= $__fromTime_ms ) and ( date <= $__toTime_ms ) limit 100",
         "select * from foo where ( date >= fromUnixTimestamp64Milli(1415792726123) ) and ( date <= "
         "fromUnixTimestamp64Milli(1447328726456) ) limit 100"),
        ("SELECT $__timeInterval($__fromTime) AS from_time",
         "SELECT toStartOfInterval(toDateTime(toDateTime(1415792726)), INTERVAL 60 second) AS from_time"),
        ("SELECT $__timeInterval_ms($__fromTime_ms)",
         "SELECT toStartOfInterval(toDateTime64(fromUnixTimestamp64Milli(1415792726123), 3), INTERVAL 60000 "
         "millisecond)"),
        ("select * from foo where $__timeFilter(coalesce(closed_at, $__toTime))",
         "select * from foo where coalesce(closed_at, toDateTime(1447328726)) >= toDateTime(1415792726) AND "
         "coalesce(closed_at, toDateTime(1447328726)) <= toDateTime(1447328726)"),
        ("select * from foo where msg = 'it\\'s -- fine' and $__fromTime",
         "select * from foo where msg = 'it\\'s -- fine' and toDateTime(1415792726)"),
        ("select * from foo where msg = 'a\\'/*x' and $__toTime", "select * from foo where msg = 'a\\'/*x' and "
         "toDateTime(1447328726)"),
        ("select * from foo where msg = 'it''s' and $__fromTime",
         "select * from foo where msg = 'it''s' and toDateTime(1415792726)"),
        ("$__dateFilter(dateCol)", "dateCol >= toDate('2014-11-12') AND dateCol <= toDate('2015-11-12')"),
        ("$__dateTimeFilter(dateCol, timeCol)",
         "(dateCol >= toDate('2014-11-12') AND dateCol <= toDate('2015-11-12')) AND (timeCol >= "
         "toDateTime(1415792726) AND timeCol <= toDateTime(1447328726))"),
        ("$__dt(d, t)", "(d >= toDate('2014-11-12') AND d <= toDate('2015-11-12')) AND (t >= toDateTime(1415792726) "
         "AND t <= toDateTime(1447328726))"),
        ("$__timeFrom(ts) AND $__timeTo(ts)", "ts >= toDateTime(1415792726) AND ts <= toDateTime(1447328726)"),
        ("$__timeGroup(ts, 5m)", "toStartOfInterval(toDateTime(ts), INTERVAL 300 second)"),
        ("$__timeGroup(ts, 1h)", "toStartOfInterval(toDateTime(ts), INTERVAL 3600 second)"),
        ("$__timeGroup(ts, '5m')", "toStartOfInterval(toDateTime(ts), INTERVAL 300 second)"),
        ('$__timeGroup( ts , "1h30m")', "toStartOfInterval(toDateTime(ts), INTERVAL 5400 second)"),
        ("$__timeGroup(ts, 1500ms)", "toStartOfInterval(toDateTime(ts), INTERVAL 2 second)"),
        ("$__interval_s", "60"),
        ("$__fromTime(ignored)", "toDateTime(1415792726)"),
    ],
)  # fmt: skip
def test_the_plugins_own_cases(sql: str, expanded: str) -> None:
    assert expand(sql, PLUGIN) == expanded


def test_interval_macros_follow_the_panel_interval() -> None:
    twenty = TimeRange(FROM, TO, 20_000)
    assert expand("$__timeInterval(col)", twenty) == "toStartOfInterval(toDateTime(col), INTERVAL 20 second)"
    assert expand("$__timeInterval_ms(col)", twenty) == (
        "toStartOfInterval(toDateTime64(col, 3), INTERVAL 20000 millisecond)"
    )
    assert expand("$__interval_s", twenty) == "20"
    # under a second: seconds truncated, never below one; milliseconds kept
    half = TimeRange(FROM, TO, 500)
    assert expand("$__timeInterval(c) $__interval_s", half) == "toStartOfInterval(toDateTime(c), INTERVAL 1 second) 1"
    assert "INTERVAL 500 millisecond" in expand("$__timeInterval_ms(c)", half)
    ninety = TimeRange(FROM, TO, 90_000)
    assert expand("$__interval | $__interval_ms | ${__interval_ms}", ninety) == "1m | 90000 | 90000"
    # a variable's query has no panel interval: the backend's zero, raised to one second
    assert "INTERVAL 1 second" in expand("$__timeInterval(c)", TimeRange(FROM, TO))
    with pytest.raises(MacroError, match="panel's interval"):
        expand("$__interval", TimeRange(FROM, TO))


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("$__timeFilter()", "expected 1 argument"),
        ("$__timeFilter(a, b)", "expected 1 argument"),
        ("$__timeFilter(a", "expected 1 argument"),  # unbalanced: the plugin calls it with no arguments
        ("$__dateTimeFilter(d)", "expected 2 argument"),
        ("$__timeGroup(ts)", "expected 2 argument"),
        ("$__timeGroup(ts, soon)", "invalid duration"),
        ("$__timeGroup(ts, 1d)", "invalid duration"),  # Go durations have no day
        ("$__timeGroup(ts, 0s)", "must be positive"),
        ("$__timeGroup(ts, 400ms)", "must be positive"),  # rounds to 0 s
        ("$__nosuch(x)", "unknown macro"),
        ("SELECT $__fromTime, $__bogus", "unknown macro"),
        ("$__table", "no table name"),
        ("$__column", "no column name"),
        ("$nope = 1", "unknown variable"),
        ("${nope:singlequote}", "unknown variable"),
        ("[[nope]]", "unknown variable"),
        ("$__conditionalAll(a = 1)", "needs a condition and a variable"),
        ("$__conditionalAll(a = 1, $kind", "needs a condition and a variable"),
        ("${site:regex}", "format 'regex'"),
        ("${__from:date:YYYY}", "date:iso"),
    ],
)
def test_what_the_plugin_refuses_or_leaves_broken_is_refused(sql: str, message: str) -> None:
    with pytest.raises(MacroError, match=message):
        expand(sql, TimeRange(FROM, TO, 60_000, {"site": ["a"], "kind": [ALL]}))


def test_comments_are_stripped_before_macros_and_hide_them() -> None:
    tr = TimeRange(FROM, TO, 60_000)
    out = expand("SELECT 1 -- $__nosuch(x)\n/* $__timeFilter() */ WHERE $__timeFilter(t)", tr)
    assert "nosuch" not in out
    assert "/*" not in out
    assert out.startswith("SELECT 1 ")
    assert out.endswith("WHERE t >= toDateTime(1415792726) AND t <= toDateTime(1447328726)")
    assert len(out.splitlines()[0]) == len("SELECT 1 -- $__nosuch(x)")  # blanked to spaces, positions kept
    # an unterminated block comment hides everything after it
    assert expand("SELECT $__fromTime /* $__bogus", tr).rstrip() == "SELECT toDateTime(1415792726)"
    # no macro at all: the SQL goes as written, comments included
    assert expand("SELECT 1 -- note", tr) == "SELECT 1 -- note"
    # backticks are not quotes to the plugin: a -- inside them starts a comment
    assert expand("SELECT `a--b`, $__interval_s", tr) == "SELECT `a" + " " * len("--b`, $__interval_s")


SELECTED = {"site": ["north", "o'hare"], "kind": [ALL], "cohort": ["canary"], "one": "solo", "none": []}


@pytest.mark.parametrize(
    ("sql", "expanded"),
    [
        ("$__conditionalAll(Site IN (${site:singlequote}), $site)", "Site IN ('north','o\\'hare')"),
        ("$__conditionalAll(Kind IN (${kind:singlequote}), $kind)", "1=1"),
        ("$__conditionalAll(Kind IN (${kind:singlequote}), ${kind})", "1=1"),
        ("$__conditionalAll(x IN ($none), $none)", "1=1"),  # nothing selected counts as All
        ("$__conditionalAll(a AND $__conditionalAll(b, $kind), $site)", "a AND 1=1"),
        ("$__conditionalAll(x = '$$', $site)", "x = '$'"),  # JavaScript's replace: $$ is one $
        ("x IN (${site:sqlstring}) AND y = $cohort", "x IN ('north','o''hare') AND y = 'canary'"),
        ("a IN ($site)", "a IN ('north','o'hare')"),  # the plugin's formatter: quoted, unescaped
        ("b = $one AND c = ${one:singlequote}", "b = solo AND c = 'solo'"),
        ("${site:csv} | ${site:pipe} | ${site:doublequote} | [[site:raw]]",
         "north,o'hare | north|o'hare | \"north\",\"o'hare\" | north,o'hare"),
        ("${site:json} ${site:glob} ${site:text} ${site.1} ${site:join:;}",
         "[\"north\",\"o'hare\"] {north,o'hare} north + o'hare o'hare north;o'hare"),
        ("${cohort:distributed} ${site:distributed}", "canary north,site=o'hare"),
        ("${__from} ${__to:date:seconds} ${__from:date:iso}", "1415792726123 1447328726 2014-11-12T11:45:26.123Z"),
    ],
)  # fmt: skip
def test_variables_are_interpolated_as_grafana_does(sql: str, expanded: str) -> None:
    assert expand(sql, TimeRange(FROM, TO, 60_000, SELECTED)) == expanded


def test_all_outside_conditional_all_is_refused_with_its_reason() -> None:
    tr = TimeRange(FROM, TO, 60_000, SELECTED)
    # in a comment it is harmless: the plugin blanks the comment
    assert expand("-- $kind is All here\nSELECT $__fromTime", tr).lstrip() == "SELECT toDateTime(1415792726)"
    for sql in ("WHERE Kind IN (${kind:singlequote})", "WHERE Kind IN ($kind)",
                # a formatted variable as the second argument is never detected as All
                "$__conditionalAll(Kind IN (${kind:singlequote}), ${kind:singlequote})"):  # fmt: skip
        with pytest.raises(MacroError, match=r"\$kind has All selected"):
            expand(sql, tr)


def test_grafanas_interval_rounding_table() -> None:
    assert [round_interval(ms) for ms in (5, 14, 100, 999, 1499, 1500, 44_999, 89_999, 90_000, 108_000)] == [
        1, 10, 100, 1000, 1000, 2000, 30_000, 60_000, 120_000, 120_000]  # fmt: skip
    assert round_interval(3_628_800_000) == 31_536_000_000
    six_hours = 6 * 3_600_000
    assert calculate(six_hours, 200) == calculate(six_hours, 200, None)
    assert calculate(six_hours, 200) == Interval(120_000, "2m")
    assert calculate(six_hours, 100).text == "5m"  # grafanalib's old maxDataPoints
    assert calculate(six_hours, 200, "1h").ms == 3_600_000
    assert calculate(7 * 86_400_000, 200).text == "1h"
    assert calculate(60_000, 1000, "10ms").ms == 50  # raised to the minimum only when below it
    assert [interval_to_ms(t) for t in ("10", "1.5h", "500ms", "2d", "1w", "1M", "1y")] == [
        10_000, 3_600_000, 500, 172_800_000, 604_800_000, 2_592_000_000, 31_536_000_000]  # fmt: skip
    assert [seconds_to_hms(s) for s in (90, 3600, 86_400 * 400, 0.02, 0.0001)] == [
        "1m", "1h", "1y", "20ms", "less than a millisecond"]  # fmt: skip
    with pytest.raises(IntervalError):
        interval_to_ms("soon")
    with pytest.raises(IntervalError):
        calculate(six_hours, 0)


def test_check_and_report_use_the_interval_grafana_gives_each_panel() -> None:
    boards = build_all("clinotel")
    end = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)
    tr = TimeRange(end - timedelta(hours=6), end)
    checked = 0
    for name, board in boards.items():
        for panel in board["panels"]:
            if panel["type"] == "row":
                assert "maxDataPoints" not in panel
                continue
            assert panel["maxDataPoints"] == MAX_DATA_POINTS, "a fixed point count: the interval is screen-independent"
            names = tuple(v["name"] for v in board["templating"]["list"])
            ranged = panel_range(panel, names, tr)
            want = 3_600_000 if panel.get("interval") == "1h" else 120_000
            assert ranged.interval_ms == panel_interval(panel, tr.start, tr.end).ms == want, (name, panel["title"])
            sql = expand(panel["targets"][0]["rawSql"], ranged)
            if "$__timeInterval(" in panel["targets"][0]["rawSql"]:
                assert f"INTERVAL {want // 1000} second" in sql
                checked += 1
    assert checked > 10
    # a variable's query has no interval, and every query of every dashboard expands
    for q in panel_queries(boards):
        expand(q.sql, panel_range(q.grid, q.variables, tr))


def test_a_panel_without_max_data_points_uses_its_width() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    panel = {"gridPos": {"h": 8, "w": 12, "x": 0, "y": 0}}
    # 12 columns of a 1920 px screen: 960 points; 12 h → 45 s → 1m, 24 h → exactly 90 s → 2m
    assert panel_interval(panel, start, start + timedelta(hours=12)).ms == 60_000
    assert panel_interval(panel, start, start + timedelta(hours=24)).ms == 120_000
