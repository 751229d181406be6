"""One tenant's spans name its services and groups, and every one is an alert instance: one rule
evaluates at most `MAX_INSTANCES_PER_TENANT` of a tenant's, those with the largest samples, says so,
and leaves the others as they were (an attack review: 5,000 services of one span each made 5,000
firing alerts, a pass of a minute in which no other tenant's rule ran, and a 2.6 MB ticket)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clinotel.alerts import default_rules_path
from clinotel.alerts.evaluator import Evaluator
from clinotel.alerts.paging import Outbox
from clinotel.alerts.queries import MAX_INSTANCES_PER_TENANT
from clinotel.alerts.rules import load
from clinotel.collector.store import schema
from clinotel.model import clinical, tables

NOW = datetime.now(UTC).replace(microsecond=0)


def _phi_dropped(client: Any, options: schema.SchemaOptions, tenant: str, services: int, at: datetime) -> None:
    """`services` services of `tenant`, each dropping PHI once; service k exports k + 1 batches."""
    rows = [(at, tenant, f"svc-{k:04d}", "", 0, 0, 1, 0, 0) for k in range(services) for _ in range(1 + k % 3)]
    client.insert(
        options.name(tables.SDK_TELEMETRY), rows,
        column_names=["Timestamp", "TenantId", "ServiceName", "ServiceInstance", "Unregistered", "Invalid", "Phi",
                      "Redacted", "InternalErrors"],
    )  # fmt: skip


def test_a_tenant_of_too_many_services_is_evaluated_for_its_largest_and_says_so(
    client: Any, options: schema.SchemaOptions
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    _phi_dropped(client, options, "attacker", MAX_INSTANCES_PER_TENANT + 50, now - timedelta(minutes=2))
    _phi_dropped(client, options, "victim", 2, now - timedelta(minutes=2))
    default = load(default_rules_path())
    pack = default.model_copy(update={"rules": tuple(r for r in default.rules if r.name == "sdk_phi_dropped")})
    evaluator = Evaluator(client, pack, Outbox([], []), options.database)
    try:
        first = evaluator.evaluate(now)
        firing = [labels for _, labels in first.firing]
        assert sum(1 for labels in firing if labels["tenant"] == "victim") == 2, "the other tenant is evaluated whole"
        attacked = [labels["service"] for labels in firing if labels["tenant"] == "attacker"]
        assert len(attacked) == MAX_INSTANCES_PER_TENANT
        [(rule, message)] = first.errors
        assert rule == "sdk_phi_dropped"
        assert "'attacker' has more than 200 services" in message
        # those left out keep their state, and those evaluated stay firing: nothing resolves for the cap
        second = evaluator.evaluate(now + timedelta(seconds=30))
        assert second.transitions == []
    finally:
        evaluator.close()


def test_only_services_are_capped_never_a_rules_cohorts_or_groups(
    client: Any, options: schema.SchemaOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cap ordered by sample left out the canary cohort and the smallest groups first, and the
    rollout gate (which reads the same observations) passed them unjudged (a review): a disparity
    rule's groups are all observed whatever the cap."""
    from alerts.tests.test_harm import _insert, _rule
    from clinotel.alerts import queries

    monkeypatch.setattr(queries, "MAX_INSTANCES_PER_TENANT", 1)
    _insert(client, options.database, "baseline", {"en": (2, 400), "es": (3, 100), "vi": (1, 40)})
    _insert(client, options.database, "canary", {"en": (2, 200), "es": (9, 30)})
    rule = _rule()
    groups = {(o.cohort, o.group) for o in queries.observe(client, rule, options.database, NOW)}
    assert groups == {("baseline", "es"), ("baseline", "vi"), ("canary", "es")}
    _phi_dropped(client, options, "attacker", 5, NOW - timedelta(minutes=2))
    sdk = next(r for r in load(default_rules_path()).rules if r.name == "sdk_phi_dropped")
    assert len(queries.observe(client, sdk, options.database, NOW, capped=True)) == 2, "the cap and one row past it"
    assert len(queries.observe(client, sdk, options.database, NOW)) == 5, "the rollout gate judges every service"


def test_the_evaluator_pages_every_workflow_kind_of_a_tenant_with_many(
    client: Any, options: schema.SchemaOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tenant's spans name workflow kinds too (an open pattern): the evaluator once cut every
    rule's rows to the cap in the engine's order, and a kind falling back 30 % of the time behind
    a thousand one-workflow kinds never paged (a review)."""
    from clinotel.alerts import evaluator as evaluating
    from clinotel.alerts import queries

    monkeypatch.setattr(queries, "MAX_INSTANCES_PER_TENANT", 1)
    monkeypatch.setattr(evaluating, "MAX_INSTANCES_PER_TENANT", 1)
    start = NOW - timedelta(minutes=5)
    rows = [
        (
            "st-marys",
            "triage",
            f"t{i}",
            start,
            "fallback" if i < 30 else "model",
            "model_unavailable" if i < 30 else "",
            3,
        )
        for i in range(100)
    ]
    rows += [("st-marys", f"junk_{k}", f"j{k}", start, "model", "", 3) for k in range(5)]
    client.insert(
        options.name(tables.WORKFLOWS), rows,
        column_names=[clinical.stored_column(c) for c in (
            "TenantId", "WorkflowKind", "TraceId", "StartTime", "DecisionSource", "FallbackReason", "Spans")],
    )  # fmt: skip
    default = load(default_rules_path())
    rule = next(r for r in default.rules if r.name == "model_fallback").model_copy(update={"min_sample": 1, "for_": 0})
    evaluator = Evaluator(client, default.model_copy(update={"rules": (rule,)}), Outbox([], []), options.database)
    try:
        summary = evaluator.evaluate(NOW)
    finally:
        evaluator.close()
    assert summary.errors == []
    assert ("model_fallback", {"tenant": "st-marys", "kind": "triage"}) in summary.firing
