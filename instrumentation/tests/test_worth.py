"""Issue 17's records: decision inputs and data quality (drift), effort and rework (efficiency),
and clinicians' coded feedback; codes only, free text refused."""

from __future__ import annotations

import pytest

import clinotel.instrumentation as ct
from clinotel.instrumentation.testing import CapturedSpans
from clinotel.semconv import attributes as A


def test_inputs_data_quality_and_effort_land_on_the_stage(spans: CapturedSpans) -> None:
    with ct.workflow("triage", identifier="ENC1", site="north", department="ed"), ct.stage("decide") as st:
        st.record_inputs(arrival_mode="ambulance", heart_rate_band="high", has_allergies=False)
        ct.record_data_quality(context_missing=True, demographics_age_h=30.5, lab_delay_min=12.0, mapping_errors=2)
        ct.record_effort(ct.Effort(minutes=4.5, touches=3, actor_role=ct.ActorRole.NURSE))
    attrs = spans.one("decide").attributes or {}
    assert attrs[A.INPUT_ARRIVAL_MODE.key] == "ambulance"
    assert attrs[A.INPUT_HEART_RATE_BAND.key] == "high"
    assert attrs[A.INPUT_HAS_ALLERGIES.key] is False
    assert attrs[A.DATA_CONTEXT_MISSING.key] is True
    assert attrs[A.DATA_DEMOGRAPHICS_AGE_H.key] == 30.5
    assert attrs[A.DATA_MAPPING_ERRORS.key] == 2
    assert (attrs[A.EFFORT_MINUTES.key], attrs[A.EFFORT_TOUCHES.key], attrs[A.EFFORT_ACTOR_ROLE.key]) == (
        4.5,
        3,
        "nurse",
    )


@pytest.mark.parametrize(
    "call",
    [
        lambda: ct.record_inputs(arrival_mode="came in by bus with his daughter"),
        lambda: ct.record_inputs(heart_rate_band="132"),
        lambda: ct.record_data_quality(demographics_age_h=-1.0),
        lambda: ct.record_effort(minutes=5000.0),
        lambda: ct.record_effort(actor_role="Dr. Smith"),
        lambda: ct.record_feedback("the model ignored her chest pain", "major"),
        lambda: ct.record_feedback("wrong_priority", "really bad"),
        lambda: ct.record_rework("nurse had to call patient back at 555-123-4567"),
    ],
)
def test_free_text_and_out_of_range_values_are_refused(spans: CapturedSpans, call: object) -> None:
    with (
        ct.workflow("triage", identifier="ENC1"),
        ct.stage("decide"),
        pytest.raises(ct.TelemetryValidationError),
    ):
        call()  # type: ignore[operator]


def test_feedback_inside_a_workflow_links_to_it_and_counts_as_no_workflow(spans: CapturedSpans) -> None:
    with ct.workflow("triage", identifier="ENC1", site="north", department="ed") as wf:
        with ct.stage("review"):
            ct.record_feedback("wrong_priority", "major", actor_role="nurse")
        ct.record_feedback(ct.FeedbackCategory.TOO_SLOW, ct.FeedbackSeverity.MINOR, workflow=wf)
    feedback = spans.named(A.FEEDBACK_SPAN_NAME)
    assert len(feedback) == 2
    root = spans.one("workflow triage")
    assert root.context is not None
    for span in feedback:
        attrs = span.attributes or {}
        assert A.WORKFLOW_KIND.key not in attrs  # never a workflow of its own
        assert attrs[A.ABOUT_KIND.key] == "triage"
        assert attrs[A.SITE.key] == "north"
        assert attrs[A.DEPARTMENT.key] == "ed"
        assert span.context is not None
        assert span.context.trace_id != root.context.trace_id
        assert [link.context.trace_id for link in span.links] == [root.context.trace_id]
    assert (feedback[0].attributes or {})[A.FEEDBACK_CATEGORY.key] == "wrong_priority"
    assert (feedback[1].attributes or {})[A.WORKFLOW_ID.key] == wf.workflow_id


def test_late_rework_joins_by_pseudonym_and_traceparent(spans: CapturedSpans) -> None:
    with ct.workflow("scheduling", identifier="APT7") as wf:
        pass
    ct.record_rework(
        "rescheduled", kind="scheduling", identifier="APT7", link=wf.traceparent, minutes=6.0, touches=4,
        actor_role="scheduler", site="south",
    )  # fmt: skip
    span = spans.one(A.REWORK_SPAN_NAME)
    attrs = span.attributes or {}
    assert attrs[A.WORKFLOW_ID.key] == wf.workflow_id
    assert attrs[A.REWORK_KIND.key] == "rescheduled"
    assert attrs[A.EFFORT_MINUTES.key] == 6.0
    assert attrs[A.SITE.key] == "south"
    assert A.WORKFLOW_KIND.key not in attrs


def test_a_record_about_nothing_is_refused(spans: CapturedSpans) -> None:
    with pytest.raises(ct.TelemetryValidationError, match="outside a workflow"):
        ct.record_feedback("wrong_priority", "minor")
    with pytest.raises(ct.TelemetryValidationError, match="identifier"):
        ct.record_rework("callback", kind="triage")


def test_production_mode_drops_and_counts_without_raising(production_spans: CapturedSpans) -> None:
    with ct.workflow("triage", identifier="ENC1"):
        ct.record_feedback("free text about the patient", "major")
        ct.record_feedback("missing_context", "moderate")
    production_spans.telemetry.force_flush()
    feedback = production_spans.named(A.FEEDBACK_SPAN_NAME)
    assert [(s.attributes or {})[A.FEEDBACK_CATEGORY.key] for s in feedback] == ["missing_context"]
