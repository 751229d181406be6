"""A workflow's decision is the latest recorded, whole, not the largest of each field (migration
21): a decision re-scored within a workflow (ESI-3 at 0.7, then ESI-2 at 0.9) read as ESI-3 at
0.9, a decision never made, counted as under-triage against a truth of ESI-2 (an outside audit
with its own traffic). The shadow prediction likewise; a `decide` span that records no decision
changes nothing; a store migrated from version 20 keeps what it read; the rollups count the
latest decision."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import clinotel.instrumentation as ct
from clinotel.collector.store import pipeline as ingest
from clinotel.collector.store import rollups as refresher
from clinotel.collector.store import schema
from clinotel.instrumentation.testing import FakeClock, capture
from clinotel.model.tables import WORKFLOW_HOURS
from collector.tests.test_latest_truth import _row
from collector.tests.test_outcome_join import _store, _trace

DECISION = ("DecisionSource", "DecisionValue", "DecisionConfidence", "DecisionRisk", "ModelName", "ModelVersion")


def _rescored(clock: FakeClock, identifier: str, *, failed_attempt: bool = False) -> str:
    """The model decides ESI-3 at 0.7; five seconds later a re-score decides ESI-2 at 0.9 with the
    next model version; with `failed_attempt`, a last attempt fails before it records anything."""
    with ct.workflow("triage", identifier=identifier, site="north", department="ed") as wf:
        with ct.stage("decide") as st:
            clock.advance_ms(30)
            st.record_decision(source="model", value="ESI-3", confidence=0.7, risk="medium", model_name="triage-gbm",
                               model_version="4.0.1", rollout_cohort="canary")  # fmt: skip
            st.record_shadow(source="model", value="ESI-4", model_version="5.0.0")
        clock.advance_ms(5_000)
        with ct.stage("decide") as st:
            clock.advance_ms(30)
            st.record_decision(source="model", value="ESI-2", confidence=0.9, risk="high", model_name="triage-rules",
                               model_version="1.2.0")  # fmt: skip
            st.record_shadow(source="model", value="ESI-1", model_version="4.9.0")
        if failed_attempt:
            clock.advance_ms(1_000)
            try:
                with ct.stage("decide"):
                    clock.advance_ms(10)
                    raise TimeoutError("model timed out")
            except TimeoutError:
                pass
        return wf.traceparent


def test_a_rescored_decision_is_the_latest_whole_in_one_insert_or_two(
    client: Any, options: schema.SchemaOptions, pipeline: ingest.Pipeline, tmp_path: Path
) -> None:
    clock = FakeClock()
    with capture(clock=clock, tenant="st-marys") as one:
        together = _trace(_rescored(clock, "LD-1", failed_attempt=True))
    _store(client, pipeline, tmp_path / "one.wal", list(one.all))
    with capture(clock=clock, tenant="st-marys") as spans:
        apart = _trace(_rescored(clock, "LD-2"))
    # the re-score's spans (its decision and shadow) arrive in a later insert than the rest
    later = [s for s in spans.all if (s.attributes or {}).get("clinical.decision.value") in ("ESI-2", "ESI-1")]
    assert len(later) == 2
    _store(client, pipeline, tmp_path / "a.wal", [s for s in spans.all if s not in later])
    _store(client, pipeline, tmp_path / "b.wal", later)
    for trace in (together, apart):
        row = _row(client, options, trace)
        assert tuple(row[c] for c in DECISION) == ("model", "ESI-2", 0.9, "high", "triage-rules", "1.2.0"), row
        assert row["RolloutCohort"] == "canary", "the arm stays the one recorded"
        assert (row["ShadowValue"], row["ShadowModelVersion"]) == ("ESI-1", "4.9.0")


def test_a_store_from_version_20_keeps_what_it_read_and_the_rollups_count_the_latest(
    client: Any, tmp_path: Path
) -> None:
    """Before migration 21 the re-scored workflow read the largest of each field (ESI-3 at 0.9,
    under-triage against a truth of ESI-2); after it, that row reads as it did, and a workflow
    stored after the upgrade reads its latest decision: the refreshed rollup counts one
    under-triaged workflow of two, not two."""
    old = schema.SchemaOptions(database=f"v20_{uuid.uuid4().hex[:10]}")
    try:
        assert schema.apply(client, old, until=20)[-1] == 20
        pipe = ingest.install(client, old)
        clock = FakeClock()
        with capture(clock=clock, tenant="st-marys") as before:
            kept = _trace(_rescored(clock, "V-1"))
            clock.advance_ms(60_000)
            ct.record_outcome("triage", identifier="V-1", label="ESI-2")
        _store(client, pipe, tmp_path / "old.wal", list(before.all))
        assert schema.apply(client, old) == list(range(21, schema.SCHEMA_VERSION + 1))
        row = _row(client, old, kept)
        assert (row["DecisionValue"], row["DecisionConfidence"], row["ModelVersion"]) == ("ESI-3", 0.9, "4.0.1"), (
            "rows stored before the migration read as they did"
        )
        pipe = ingest.install(client, old)
        with capture(clock=clock, tenant="st-marys") as after:
            fixed = _trace(_rescored(clock, "V-2"))
            clock.advance_ms(60_000)
            ct.record_outcome("triage", identifier="V-2", label="ESI-2")
        _store(client, pipe, tmp_path / "new.wal", list(after.all))
        assert _row(client, old, fixed)["DecisionValue"] == "ESI-2"
        refresher.refresh(client, old)
        sql = f"SELECT sum(under_triage_rate_hits), sum(under_triage_rate_rows) FROM {old.name(WORKFLOW_HOURS)}"
        assert tuple(map(int, client.query(sql).result_rows[0])) == (1, 2)
    finally:
        client.command(f"DROP DATABASE IF EXISTS {old.database}")


def test_a_failed_attempt_or_a_source_alone_changes_nothing_and_a_fallback_is_a_decision(
    client: Any, options: schema.SchemaOptions, pipeline: ingest.Pipeline, tmp_path: Path
) -> None:
    """A re-score whose model call failed after its source was set (ERROR, a source, no value)
    wiped the decision (value '', confidence NULL: the workflow left the under-triage figures),
    and a failed attempt carrying a value became the decision (a second review of the fix). A
    fallback recorded without a value is a decision."""
    clock = FakeClock()

    def decided_then(identifier: str, then: dict[str, Any], *, fails: bool) -> str:
        with ct.workflow("triage", identifier=identifier, site="north", department="ed") as wf:
            with ct.stage("decide") as st:
                clock.advance_ms(30)
                st.record_decision(source="model", value="ESI-2", confidence=0.9, model_version="4.0.1")
            clock.advance_ms(5_000)
            try:
                with ct.stage("decide", attributes=then):
                    clock.advance_ms(10)
                    if fails:
                        raise TimeoutError("model timed out")
            except TimeoutError:
                pass
            return wf.traceparent

    with capture(clock=clock, tenant="st-marys") as spans:
        source_alone = _trace(decided_then("LF-1", {"clinical.decision.source": "model"}, fails=True))
        failed_value = _trace(
            decided_then(
                "LF-2",
                {
                    "clinical.decision.source": "model",
                    "clinical.decision.value": "ESI-4",
                    "clinical.decision.confidence": 0.3,
                },
                fails=True,
            )
        )
        fallback = _trace(
            decided_then(
                "LF-3",
                {"clinical.decision.source": "fallback", "clinical.decision.fallback_reason": "model_timeout"},
                fails=False,
            )
        )
    _store(client, pipeline, tmp_path / "f.wal", list(spans.all))
    for trace in (source_alone, failed_value):
        row = _row(client, options, trace)
        assert (row["DecisionSource"], row["DecisionValue"], row["DecisionConfidence"]) == ("model", "ESI-2", 0.9)
    row = _row(client, options, fallback)
    assert (row["DecisionSource"], row["DecisionValue"], row["DecisionConfidence"], row["FallbackReason"]) == (
        "fallback",
        "",
        None,
        "model_timeout",
    )
