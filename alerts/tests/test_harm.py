"""A disparity rule decides with its test and its direction of harm, through the real evaluator on
the embedded engine: the issue's false page (3 of 32 under-triaged against 7 % in the reference
group, 1.34 against a 1.25 band) does not page; a group truly worse off pages, per rollout cohort;
the reference group worse off is labelled in the audit trail, not paged, unless the rule asks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from clinotel.alerts import default_rules_path
from clinotel.alerts import rules as R
from clinotel.alerts.evaluator import Evaluator, Summary
from clinotel.alerts.paging import Outbox
from clinotel.alerts.rules import Rule, RulePack, load
from clinotel.alerts.state import State
from clinotel.collector.store import schema
from clinotel.model import clinical, tables

NOW = datetime.now(UTC).replace(microsecond=0)


def _rule(**update: Any) -> Rule:
    rule = next(r for r in load(default_rules_path()).rules if r.name == "fairness_under_triage_language")
    return rule.model_copy(update=update)


def _insert(client: Any, database: str, cohort: str, groups: dict[str, tuple[int, int]]) -> None:
    """Model triage decisions with ground truth: per language (under-triaged, rows)."""
    rows = []
    for language, (under, total) in groups.items():
        for k in range(total):
            decided = "ESI-3" if k < under else "ESI-2"
            rows.append(("st-marys", "triage", f"{cohort}-{language}-{k}", NOW - timedelta(hours=1), language,
                         "model", decided, "ESI-2", cohort, "4.0.0" if cohort == "canary" else "3.2.0"))  # fmt: skip
    client.insert(
        f"{database}.{tables.WORKFLOWS}",
        rows,
        column_names=[clinical.stored_column(c) for c in (
            "TenantId", "WorkflowKind", "TraceId", "StartTime", "Language", "DecisionSource", "DecisionValue",
            "OutcomeLabel", "RolloutCohort", "ModelVersion")],
    )  # fmt: skip


def _evaluate(client: Any, database: str, rule: Rule) -> Summary:
    client.command(f"TRUNCATE TABLE {database}.{tables.ALERT_EVENTS}")
    summary = Evaluator(client, RulePack(rules=(rule,)), Outbox([], []), database, lease_s=None).evaluate(NOW)
    assert summary.errors == []
    return summary


def test_the_issues_false_page_is_not_a_page(client: Any, options: schema.SchemaOptions) -> None:
    _insert(client, options.database, "baseline", {"en": (28, 400), "es": (3, 32)})
    assert _rule().decided_by is R.Test.SCORE
    assert _evaluate(client, options.database, _rule()).firing == []
    # the same numbers without the test page: what the test is there for
    untested = _evaluate(client, options.database, _rule(test=R.Test.NONE)).firing
    assert [labels["Language"] for _, labels in untested] == ["es"]


def test_a_group_worse_off_pages_in_its_cohort_only(client: Any, options: schema.SchemaOptions) -> None:
    _insert(client, options.database, "baseline", {"en": (24, 400), "es": (7, 100)})
    _insert(client, options.database, "canary", {"en": (12, 200), "es": (18, 60)})
    firing = _evaluate(client, options.database, _rule()).firing
    assert [labels for _, labels in firing] == [
        {"tenant": "st-marys", "kind": "triage", "cohort": "canary", "model_version": "4.0.0", "Language": "es"}
    ]


def test_the_reference_group_worse_off_is_labelled_not_paged(client: Any, options: schema.SchemaOptions) -> None:
    _insert(client, options.database, "baseline", {"en": (80, 400), "vi": (1, 80)})
    summary = _evaluate(client, options.database, _rule())
    assert summary.firing == []
    assert [(labels["Language"], detail.split(":")[0]) for _, labels, detail in summary.labelled] == [
        ("vi", "reference group worse off")
    ]
    events = client.query(
        f"SELECT Event FROM {options.database}.{tables.ALERT_EVENTS} WHERE Rule = 'fairness_under_triage_language'"
    ).result_rows
    assert ("labelled",) in events
    assert ("firing",) not in events
    # asked for, it pages; harm set to `lower`, the same numbers are the harm
    for rule in (_rule(page_reference_worse=True), _rule(harm="lower")):
        assert [labels["Language"] for _, labels in _evaluate(client, options.database, rule).firing] == ["vi"]


def test_waits_past_an_hour_raise_the_queue_wait_rule(client: Any, options: schema.SchemaOptions) -> None:
    """Waits are known when they end and the window selects workflows by their start: over 30
    minutes no wait past 30 could be seen, and waits of 90 minutes never raised the rule (an
    on-call review). Over its three hours they do (pending first: it holds 15 minutes to fire)."""
    rule = next(r for r in load(default_rules_path()).rules if r.name == "queue_wait_p95")
    rows = [("st-marys", "scheduling", f"w-{k}", NOW - timedelta(minutes=100 + k), 90 * 60_000.0) for k in range(40)]
    client.insert(
        f"{options.database}.{tables.WORKFLOWS}",
        rows,
        column_names=[
            clinical.stored_column(c) for c in ("TenantId", "WorkflowKind", "TraceId", "StartTime", "QueueMs")
        ],
    )
    transitions = _evaluate(client, options.database, rule).transitions
    assert [(r, s) for r, _, s in transitions] == [("queue_wait_p95", State.PENDING)]
    half_hour = Rule.model_validate({**rule.model_dump(), "window": "30m"})
    assert _evaluate(client, options.database, half_hour).transitions == []  # the window it had
