"""Rules files: the default pack loads; a malformed file is refused with its file, line and reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from clinotel.alerts import default_rules_path
from clinotel.alerts.decision import criterion
from clinotel.alerts.rules import Kind, RuleError, duration_text, load, parse_duration
from clinotel.alerts.state import AlertState, Hold, Reading, State, step
from tests.conftest import REPO

GOOD = """rules:
  - name: model_fallback
    metric: fallback_rate
    threshold: 0.2
    window: 15m
    for: 5m
    severity: page
    summary: Decisions fall back
    overrides:
      - {tenant: st-marys, threshold: 0.3}
      - {tenant: st-marys, kind: triage, threshold: 0.4}
      - {kind: scheduling, disabled: true}
"""


def test_the_default_pack_loads_and_every_rule_has_a_runbook() -> None:
    pack = load(default_rules_path())
    assert {r.kind for r in pack.rules} == set(Kind)
    for rule in pack.rules:
        assert (REPO / rule.runbook).is_file(), f"{rule.name} has no runbook at {rule.runbook}"


def test_overrides_most_specific_wins(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(GOOD, encoding="utf-8")
    (rule,) = load(path).rules
    assert rule.for_ == 300
    assert rule.limits("general", "triage") == (0.2, 30, False)
    assert rule.limits("general", "scheduling")[2] is True
    assert rule.limits("st-marys", "scheduling") == (0.3, 30, False), "a tenant override beats a kind override"
    assert rule.limits("st-marys", "triage")[0] == 0.4
    assert rule.limits("st-marys", "other")[0] == 0.3


@pytest.mark.parametrize(
    ("change", "line", "reason"),
    [
        (("window: 15m", "window: soon"), 5, "a duration such as"),
        (("window: 15m", "window: 15m\n    keep_firing_for: -5m"), 6, "a duration such as"),
        (("metric: fallback_rate", "metric: no_such_metric"), 3, "unknown metric"),
        (("severity: page", "severity: urgent"), 7, "'page' or 'ticket'"),
        (("    summary: Decisions fall back", "    summary: Decisions fall back\n    colour: red"), 9, "Extra inputs"),
        (("{tenant: st-marys, threshold: 0.3}", "{tenant: st-marys, threshold: high}"), 10, "valid number"),
        (("rules:", "rules: [oops"), 2, "not valid YAML"),
    ],
)
def test_a_malformed_file_is_refused_with_file_line_and_reason(
    tmp_path: Path, change: tuple[str, str], line: int, reason: str
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(GOOD.replace(*change), encoding="utf-8")
    with pytest.raises(RuleError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}:"), message
    assert reason in message


def test_duplicate_rule_names_are_refused_at_the_duplicate_s_line(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(GOOD + GOOD.split("rules:\n", 1)[1], encoding="utf-8")
    with pytest.raises(RuleError) as info:
        load(path)
    assert str(info.value) == f"{path}:13: rules.1.name: duplicate rule name 'model_fallback' (first at line 2)"


def test_every_mistake_is_reported_each_at_its_own_line(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    second = GOOD.split("rules:\n", 1)[1].replace("metric: fallback_rate", "metric: nope")
    path.write_text(GOOD.replace("window: 15m", "window: soon") + second.replace("severity: page", "severity: x"),
                    encoding="utf-8")  # fmt: skip
    with pytest.raises(RuleError) as info:
        load(path)
    lines = str(info.value).splitlines()
    assert [line.split(": ", 2)[:2] for line in lines] == [
        [f"{path}:5", "rules.0.window"],
        [f"{path}:13", "rules.1.name"],
        [f"{path}:14", "rules.1.metric"],
        [f"{path}:18", "rules.1.severity"],
    ]


T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _run(readings: str, for_s: int, no_data: str = "ok", keep_s: int = 0) -> list[str]:
    """Feed B(reach)/C(lear)/N(o data: no row)/F(ew rows) one minute apart; the states after each."""
    state = AlertState()
    kinds = {"B": Reading.BREACH, "C": Reading.CLEAR, "N": Reading.NO_DATA, "F": Reading.NO_DATA}
    out = []
    for i, r in enumerate(readings):
        step(state, kinds[r], T0 + timedelta(minutes=i), for_s, no_data, keep_s, too_few=r == "F")
        out.append(state.state.value[0])
    return out


def test_keep_firing_for_holds_a_firing_instance_until_it_has_read_clear_that_long() -> None:
    # fires at once, clears for a minute, breaches again (the streak starts over), then resolves only
    # after three clear minutes; without it the same readings page twice
    assert "".join(_run("BCBCCCCC", 0, keep_s=180)) == "ffffffri"
    assert "".join(_run("BCBCCCCC", 0)) == "frfriiii"
    assert "".join(_run("BNNNN", 0, "ok", keep_s=180)) == "ffffr", "no data that clears is held the same"
    state = AlertState()
    holds = [step(state, r, T0 + timedelta(minutes=i), 0, "ok", 120)
             for i, r in enumerate([Reading.BREACH, Reading.CLEAR, Reading.BREACH, Reading.CLEAR, Reading.CLEAR,
                                    Reading.CLEAR])]  # fmt: skip
    assert holds == [State.FIRING, Hold.CLEARING, Hold.BREACH, Hold.CLEARING, None, State.RESOLVED]
    assert state.clear_since is None


def test_the_state_machine_holds_back_flaps_and_resolves() -> None:
    assert "".join(_run("BBBBCC", 180)) == "pppfri"  # fires once held 3 min, resolves, then inactive
    assert "".join(_run("BBCBBC", 180)) == "ppippi"  # a flap shorter than `for` never fires
    assert "".join(_run("BC", 0)) == "fr"
    assert "".join(_run("BBNN", 0, "ok")) == "ffri"
    assert "".join(_run("BBNN", 0, "keep")) == "ffff"
    assert "".join(_run("NNNN", 120, "alerting")) == "ppff"
    assert State.RESOLVED.value == "resolved"


def test_a_firing_instance_with_too_few_rows_keeps_firing() -> None:
    """Fewer patients at night (rows under min_sample) resolved a firing page under `no_data: ok`,
    and it paged again when the volume came back."""
    assert "".join(_run("BFFFB", 0)) == "fffff", "firing through the dip: no resolve, no second page"
    assert "".join(_run("BFFC", 0)) == "fffr", "resolved once it reads clear"
    assert "".join(_run("BBFF", 180)) == "ppii", "an instance not firing clears as before"
    assert "".join(_run("BFF", 0, "alerting")) == "fff"
    assert "".join(_run("BNN", 0)) == "fri", "no row at all still clears"
    # held for a night's dip, not for ever: too few rows 12 hours after it fired resolve it, in a
    # state rebuilt at every pass as the evaluator rebuilds it from the audit trail (a state kept
    # across passes hid a hold that never ended: a review)
    for hours, held in ((1, True), (11.9, True), (12, False), (29, False)):
        rebuilt = AlertState(State.FIRING, since=T0, fired_at=T0)
        step(rebuilt, Reading.NO_DATA, T0 + timedelta(hours=hours), 0, "ok", too_few=True)
        assert (rebuilt.state is State.FIRING) == held, hours


RULE = GOOD.split("    overrides:", maxsplit=1)[0]
SUMMARY = "summary: Decisions fall back"


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (("threshold: 0.2", "threshold: .nan"), "rules.0.threshold: Input should be a finite number"),
        (("threshold: 0.2", "threshold: .inf"), "rules.0.threshold: Input should be a finite number"),
        (("threshold: 0.2", "threshold: -.inf"), "rules.0.threshold: Input should be a finite number"),
        ((SUMMARY, SUMMARY + "\n    overrides: [{tenant: a, threshold: .nan}]"),
         "rules.0.overrides.0.threshold: Input should be a finite number"),
        (("window: 15m", "window: 99999999999999999999d"), "rules.0.window: Value error, a duration of at most 366d"),
        (("for: 5m", "for: 367d"), "rules.0.for: Value error, a duration of at most 366d"),
        (("for: 5m", "for: 5m\n    keep_firing_for: 9999999999999s"), "rules.0.keep_firing_for: Value error, a dur"),
        (("severity: page", "severity: page\n    labels: {on-call: icu}"),
         "rule model_fallback: label 'on-call' is not a label name"),
        (("severity: page", "severity: page\n    labels: {__name__: x}"),
         "rule model_fallback: label '__name__' is not a label name"),
        (("severity: page", "severity: page\n    labels: {severity: ticket}"),
         "rule model_fallback: label 'severity' is set by the evaluator"),
        (("severity: page", "severity: page\n    labels: {alertname: other}"),
         "rule model_fallback: label 'alertname' is set by the evaluator"),
        (("severity: page", "severity: page\n    labels: {tenant: general}"),
         "rule model_fallback: label 'tenant' is set by the evaluator"),
    ],
    ids=["nan", "inf", "-inf", "override nan", "window forever", "for past a year", "keep_firing_for",
         "label with a dash", "label __", "severity label", "alertname label", "tenant label"],
)  # fmt: skip
def test_a_threshold_duration_or_label_that_cannot_work_is_refused_at_load(
    tmp_path: Path, change: tuple[str, str], says: str
) -> None:
    """NaN compares false (the rule never fired), a label Alertmanager refuses (every page got a
    400), or a label overriding the evaluator's own (a page labelled `severity: ticket`)."""
    path = tmp_path / "rules.yaml"
    path.write_text(RULE.replace(*change), encoding="utf-8")
    with pytest.raises(RuleError) as info:
        load(path)
    [line] = str(info.value).splitlines()
    assert says in line, line


def test_a_disparity_rule_may_not_label_its_own_dimension(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n  - {name: fair, kind: disparity, metric: high_risk_miss_rate, dimension: PayerClass, threshold: 1.25,"
        " window: 24h, severity: ticket, summary: Under-triage by payer, labels: {PayerClass: x}}\n",
        encoding="utf-8",
    )
    with pytest.raises(RuleError, match="label 'PayerClass' is set by the evaluator"):
        load(path)


@pytest.mark.parametrize("depth", [2_000, 20_000])
def test_a_deeply_nested_file_is_one_line_not_a_traceback(tmp_path: Path, depth: int) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules: " + "[" * depth + "]" * depth + "\n", encoding="utf-8")
    with pytest.raises(RuleError) as info:
        load(path)
    assert str(info.value) == f"{path}: not a rules file: its YAML is nested too deeply"


@pytest.mark.parametrize(
    ("argv", "code", "says"),
    [
        (["alerts", "evaluate", "--data-dir", "nowhere", "--once", "--every", "99999999999d"], 2,
         "a duration of at most 366d"),
        (["alerts", "evaluate", "--data-dir", "nowhere", "--every", "99999999999d"], 2, "a duration of at most 366d"),
        (["alerts", "check", "--rules", "deep.yaml"], 1, "nested too deeply"),
    ],
    ids=["once every forever", "every forever", "deep rules"],
)  # fmt: skip
def test_an_absurd_interval_or_nesting_on_the_command_line_is_one_line(
    argv: list[str], code: int, says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """`--every 99999999999d` ended in an OverflowError, a deeply nested file in a RecursionError."""
    from tests.one_line import refused_in_one_line

    monkeypatch.chdir(tmp_path)
    (tmp_path / "deep.yaml").write_text("rules: " + "[" * 5000 + "]" * 5000, encoding="utf-8")
    refused_in_one_line(argv, code, says, capsys)


def test_a_rules_criterion_in_words_follows_its_overrides_and_kind(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(GOOD, encoding="utf-8")
    rule = load(path).rules[0]
    threshold, min_sample, _ = rule.limits("st-marys", "triage")
    assert criterion(rule, threshold, min_sample) == "fallback_rate > 0.4 over 15m (at least 30 in the sample)"
    pack = {r.name: r for r in load(default_rules_path()).rules}
    worded = {name: criterion(r, *r.limits("", "")[:2]) for name, r in pack.items()}
    assert worded["queue_wait_p95"] == "queue_wait_p95_ms > 3,600,000 over 3h (at least 30 in the sample)"
    assert worded["ingestion_stalled"] == "clinotel_receiver_spans_accepted_total <= 0 over 10m"
    assert worded["canary_kill_under_triage"].startswith(
        "under_triage_rate of the canary ÷ the baseline cohort's > 1.5"
    )
    assert "sequential test" in worded["canary_kill_under_triage"]
    assert worded["override_rate_spike"].startswith("override_rate over 1h ÷ the 1d before it > 1.5")
    assert worded["decision_drift"] == "psi of 2h against the 4h before it > 0.25 (at least 100 in the sample)"
    fairness = pack["fairness_under_triage_language"]
    assert " > 1.25 over 12h" in worded["fairness_under_triage_language"]
    both = fairness.model_copy(update={"page_reference_worse": True})
    assert " outside 0.8–1.25 over 12h" in criterion(both, both.threshold, 30)


@pytest.mark.parametrize(("seconds", "text"), [(90, "90s"), (900, "15m"), (3600, "1h"), (86400, "1d"), (0, "0s")])
def test_a_duration_is_worded_as_a_rules_file_writes_it(seconds: int, text: str) -> None:
    assert duration_text(seconds) == text
    if seconds:
        assert parse_duration(text) == seconds
