"""The clinical views, filled by materialized views from otel_traces as spans arrive."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

import clinotel.instrumentation as ct
from clinotel.collector.log import record as otlp_proto
from clinotel.collector.store import pipeline as ingest
from clinotel.collector.store import schema
from clinotel.instrumentation.testing import FakeClock, capture
from clinotel.instrumentation.testing.workflows import schedule, triage
from clinotel.model import clinical


def _store(client: Any, pipeline: ingest.Pipeline, path: Path, spans: list[Any]) -> None:
    record = encode_spans(spans).SerializeToString() + otlp_proto.envelope("st-marys", "b", time.time_ns())
    path.write_bytes(otlp_proto.frame(record))
    client.command(pipeline.insert_from_file(str(path), path.stem, str(pipeline.write_proto(path.parent))))


def test_stage_spans_and_workflow_rows_with_late_ground_truth(
    client: Any, options: schema.SchemaOptions, pipeline: ingest.Pipeline, tmp_path: Path
) -> None:
    clock = FakeClock()
    with capture(clock=clock) as spans:
        parent = triage(clock, "ENC-1", override=True)
        schedule(clock, "APPT-1")
    _store(client, pipeline, tmp_path / "workflows.wal", list(spans.all))

    with capture(clock=clock) as later:  # days later, another process: the ground truth
        clock.advance_ms(3 * 24 * 3600 * 1000)
        ct.record_outcome("triage", identifier="ENC-1", link=parent, label="ESI-2", escalation_needed=True)
    _store(client, pipeline, tmp_path / "truth.wal", list(later.all))

    stages = client.query(
        f"SELECT Stage, count() FROM {options.name(clinical.STAGE_SPANS)} WHERE WorkflowKind = 'triage' "
        "GROUP BY Stage ORDER BY Stage"
    ).result_rows
    assert dict(stages) == {
        "": 1,
        "act": 1,
        "complete": 1,
        "decide": 2,
        "ingest": 1,
        "outcome": 1,
        "queue": 1,
        "review": 1,
    }
    decide = client.query(
        f"SELECT DecisionValue, DecisionConfidence, ModelVersion, RolloutCohort, FlagVariant, Shadow, TenantId "
        f"FROM {options.name(clinical.STAGE_SPANS)} WHERE Stage = 'decide' AND WorkflowKind = 'triage' "
        "ORDER BY ifNull(Shadow, 0)"
    ).result_rows
    assert decide[0] == ("ESI-3", 0.71, "4.0.1", "canary", "canary", None, "st-marys")
    assert decide[1][0] == "ESI-2"
    assert decide[1][5] == 1

    columns = ", ".join(clinical.WORKFLOW_COLUMNS)
    rows = client.query(
        f"SELECT WorkflowKind, {columns} FROM {options.name(clinical.WORKFLOWS)} FINAL ORDER BY WorkflowKind"
    ).result_rows
    by_kind = {r[0]: dict(zip(clinical.WORKFLOW_COLUMNS, r[1:], strict=True)) for r in rows}
    assert set(by_kind) == {"scheduling", "triage"}, "the late outcome landed on its workflow's row"
    t = by_kind["triage"]
    assert t["Site"] == "north"
    assert t["Language"] == "es"
    assert t["WorkflowId"] == ct.pseudonymize("ENC-1", b"clinotel-test-pseudonym-key-not-for-production")
    assert t["DecisionValue"] == "ESI-3", "the live decision, not the shadow"
    assert t["ShadowValue"] == "ESI-2"
    assert t["ReviewAction"] == "override"
    assert t["ReviewFinalValue"] == "ESI-2"
    assert t["ReviewLatencyMs"] == 30_000, "the review span's duration when no latency was reported"
    assert t["QueueMs"] == 95_000
    assert t["IngestMs"] == 12
    assert t["OutcomeStatus"] == "completed"
    assert t["OutcomeLabel"] == "ESI-2"
    assert t["EscalationNeeded"] == 1
    assert t["TruthTime"] is not None
    assert t["Spans"] == 8
    s = by_kind["scheduling"]
    assert s["SlotFilled"] == 1
    assert s["SlotsOffered"] == 3
    assert s["DecisionSource"] == "rules"
    assert s["OutcomeLabel"] == ""
