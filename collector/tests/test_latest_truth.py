"""A workflow's ground truth and review are the latest recorded, not the largest (migration 18): a
corrected label toward more urgency counts, a withdrawn adverse event is withdrawn, a re-review
replaces the review, in one insert or days apart; a store migrated from version 17 keeps what it
read before and takes corrections from then on; the rollups count the corrected truth."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import clinotel.instrumentation as ct
from clinotel.collector.store import pipeline as ingest
from clinotel.collector.store import rollups as refresher
from clinotel.collector.store import schema
from clinotel.instrumentation.testing import FakeClock, capture
from clinotel.instrumentation.testing.workflows import triage
from clinotel.model import clinical
from clinotel.model.tables import WORKFLOW_HOURS
from collector.tests.test_outcome_join import _store, _trace

DAY_MS = 24 * 3600 * 1000


def _row(client: Any, o: schema.SchemaOptions, trace: str) -> dict[str, Any]:
    columns = ", ".join(clinical.WORKFLOW_COLUMNS)
    rows = client.query(
        f"SELECT {columns} FROM {o.name(clinical.WORKFLOWS)} FINAL WHERE TraceId = {{t:String}}",
        parameters={"t": trace},
    ).result_rows
    assert len(rows) == 1, rows
    return dict(zip(clinical.WORKFLOW_COLUMNS, rows[0], strict=True))


def _rereviewed(clock: FakeClock, identifier: str) -> str:
    """A workflow overridden, then, on a second look, accepted after all."""
    with ct.workflow("triage", identifier=identifier, site="north", department="ed") as wf:
        with ct.stage("decide") as st:
            clock.advance_ms(30)
            st.record_decision(source="model", value="ESI-3", model_version="4.0.1", rollout_cohort="canary")
        with ct.stage("review") as st:
            clock.advance_ms(1_000)
            st.record_review(action="override", actor_role="nurse", reason="clinical_judgement", final_value="ESI-2")
        with ct.stage("review") as st:
            clock.advance_ms(1_000)
            st.record_review(action="accept", actor_role="physician", final_value="ESI-3")
        return wf.traceparent


def test_a_correction_is_the_truth_whichever_way_it_sorts(
    client: Any, options: schema.SchemaOptions, pipeline: ingest.Pipeline, tmp_path: Path
) -> None:
    clock = FakeClock()
    with capture(clock=clock, tenant="st-marys") as first:
        toward_urgent = _trace(triage(clock, "LT-1"))
        away = _trace(triage(clock, "LT-2"))
        same_insert = _trace(triage(clock, "LT-3"))
        rereviewed = _trace(_rereviewed(clock, "LT-4"))
        clock.advance_ms(60_000)
        ct.record_outcome("triage", identifier="LT-1", label="ESI-4", adverse_event=True, escalation_needed=False)
        ct.record_outcome("triage", identifier="LT-2", label="ESI-2")
        ct.record_outcome("triage", identifier="LT-3", label="ESI-5")
        clock.advance_ms(1_000)
        ct.record_outcome("triage", identifier="LT-3", label="ESI-1")
    _store(client, pipeline, tmp_path / "one.wal", list(first.all))
    with capture(clock=clock, tenant="st-marys") as second:
        clock.advance_ms(DAY_MS)
        # the chart review corrects the label toward more urgency and withdraws the adverse event
        ct.record_outcome("triage", identifier="LT-1", label="ESI-2", adverse_event=False)
        ct.record_outcome("triage", identifier="LT-2", label="ESI-4")
        clock.advance_ms(1_000)
        # a later record of one field leaves the others as they were
        ct.record_outcome("triage", identifier="LT-1", escalation_needed=True)
    _store(client, pipeline, tmp_path / "two.wal", list(second.all))

    row = _row(client, options, toward_urgent)
    assert (row["OutcomeLabel"], row["AdverseEvent"], row["EscalationNeeded"]) == ("ESI-2", 0, 1)
    assert _row(client, options, away)["OutcomeLabel"] == "ESI-4", "a correction toward less urgency counts too"
    assert _row(client, options, same_insert)["OutcomeLabel"] == "ESI-1", "the later of two in one insert"
    review = _row(client, options, rereviewed)
    assert (review["ReviewAction"], review["ReviewActorRole"], review["ReviewReason"], review["ReviewFinalValue"]) == (
        "accept",
        "physician",
        "",
        "ESI-3",
    ), "the latest review, whole: not the override's reason"


def test_a_final_value_on_the_action_and_truth_from_an_unset_clock_are_kept(
    client: Any, options: schema.SchemaOptions, pipeline: ingest.Pipeline, tmp_path: Path
) -> None:
    """The review accepts without a final value and the action records what was done (ESI-1): the
    final value is the action's, not none. An outcome stamped at the epoch (a producer whose clock
    was never set) keeps its adverse event and escalation, as its label."""
    clock = FakeClock(0)
    with capture(clock=clock, tenant="st-marys") as spans:
        with ct.workflow("triage", identifier="EP-1", site="north", department="ed") as wf:
            with ct.stage("decide") as st:
                st.record_decision(source="model", value="ESI-3", model_version="4.0.1")
            with ct.stage("review") as st:
                st.record_review(action="accept", actor_role="nurse")
            with ct.stage("act", attributes={"clinical.review.final_value": "ESI-1"}):
                clock.advance_ms(5)
            link = wf.traceparent
        clock.now = 0
        ct.record_outcome("triage", identifier="EP-1", link=link, label="ESI-1", adverse_event=True,
                          escalation_needed=True)  # fmt: skip
    _store(client, pipeline, tmp_path / "epoch.wal", list(spans.all))
    row = _row(client, options, _trace(link))
    assert (row["ReviewAction"], row["ReviewFinalValue"]) == ("accept", "ESI-1")
    assert (row["OutcomeLabel"], row["AdverseEvent"], row["EscalationNeeded"]) == ("ESI-1", 1, 1)


def test_a_store_from_version_17_keeps_what_it_read_and_takes_corrections(client: Any, tmp_path: Path) -> None:
    old = schema.SchemaOptions(database=f"v17_{uuid.uuid4().hex[:10]}")
    try:
        assert schema.apply(client, old, until=17)[-1] == 17
        pipe = ingest.install(client, old)
        clock = FakeClock()
        with capture(clock=clock, tenant="st-marys") as before:
            kept = _trace(triage(clock, "V-1"))
            corrected = _trace(triage(clock, "V-2"))
            clock.advance_ms(60_000)
            ct.record_outcome("triage", identifier="V-1", label="ESI-3", adverse_event=True)
            ct.record_outcome("triage", identifier="V-2", label="ESI-4")
        _store(client, pipe, tmp_path / "old.wal", list(before.all))
        assert schema.apply(client, old) == list(range(18, schema.SCHEMA_VERSION + 1))
        row = _row(client, old, kept)
        assert (row["OutcomeLabel"], row["AdverseEvent"], row["ReviewAction"], row["ReviewFinalValue"]) == (
            "ESI-3",
            1,
            "override",
            "ESI-2",
        ), "rows stored before the migration read as they did"
        pipe = ingest.install(client, old)
        with capture(clock=clock, tenant="st-marys") as after:
            clock.advance_ms(DAY_MS)
            ct.record_outcome("triage", identifier="V-2", label="ESI-2")
        _store(client, pipe, tmp_path / "new.wal", list(after.all))
        assert _row(client, old, corrected)["OutcomeLabel"] == "ESI-2", "stored ESI-4, corrected after the upgrade"
    finally:
        client.command(f"DROP DATABASE IF EXISTS {old.database}")


def test_the_rollups_count_the_corrected_truth(client: Any, tmp_path: Path) -> None:
    """The model decided ESI-3; the truth first read ESI-4 (no under-triage), then was corrected
    to ESI-2 (under-triage): the refreshed rollup counts one under-triaged workflow."""
    o = schema.SchemaOptions(database=f"rt_{uuid.uuid4().hex[:10]}")
    try:
        schema.apply(client, o)
        pipe = ingest.install(client, o)
        clock = FakeClock()
        with capture(clock=clock, tenant="st-marys") as first:
            triage(clock, "R-1")
            clock.advance_ms(60_000)
            ct.record_outcome("triage", identifier="R-1", label="ESI-4")
        _store(client, pipe, tmp_path / "one.wal", list(first.all))

        def under_triaged() -> tuple[int, int]:
            refresher.refresh(client, o)
            sql = f"SELECT sum(under_triage_rate_hits), sum(under_triage_rate_rows) FROM {o.name(WORKFLOW_HOURS)}"
            hits, rows = client.query(sql).result_rows[0]
            return int(hits), int(rows)

        assert under_triaged() == (0, 1)
        with capture(clock=clock, tenant="st-marys") as second:
            clock.advance_ms(DAY_MS)
            ct.record_outcome("triage", identifier="R-1", label="ESI-2")
        _store(client, pipe, tmp_path / "two.wal", list(second.all))
        assert under_triaged() == (1, 1)
    finally:
        client.command(f"DROP DATABASE IF EXISTS {o.database}")
