"""Rules files: the default pack loads; a malformed file is refused with its file, line and reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from clinotel.alerts import default_rules_path
from clinotel.alerts.rules import Kind, RuleError, load
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
    """Feed B(reach)/C(lear)/N(o data) one minute apart; the states after each."""
    state = AlertState()
    kinds = {"B": Reading.BREACH, "C": Reading.CLEAR, "N": Reading.NO_DATA}
    out = []
    for i, r in enumerate(readings):
        step(state, kinds[r], T0 + timedelta(minutes=i), for_s, no_data, keep_s)
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
