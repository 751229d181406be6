"""Change events: one `clinotel.change` span each, its own trace, only registered fields, never a person."""

from __future__ import annotations

import pytest

import clinotel.instrumentation as ct
from clinotel.instrumentation.testing import CapturedSpans, capture
from clinotel.semconv import attributes as A


def test_a_change_is_one_span_of_its_own_with_what_who_and_where(spans: CapturedSpans) -> None:
    with ct.workflow("triage"), ct.stage("decide"):
        ct.record_change(
            "model", "triage-model", version="v4.1", actor="pipeline:ml-release",
            scope={"site": "north", "department": "ed", "workflow_kind": "triage", "stage": "decide"},
        )  # fmt: skip
    change = spans.one(A.CHANGE_SPAN_NAME)
    assert change.parent is None  # not part of the workflow that happened to be running
    assert dict(change.attributes or {}) == {
        A.CHANGE_KIND.key: "model",
        A.CHANGE_NAME.key: "triage-model",
        A.CHANGE_VERSION.key: "v4.1",
        A.CHANGE_ACTOR.key: "pipeline:ml-release",
        A.SITE.key: "north",
        A.DEPARTMENT.key: "ed",
        A.CHANGE_WORKFLOW_KIND.key: "triage",
        A.CHANGE_STAGE.key: "decide",
    }
    assert change.start_time == change.end_time
    workflow = spans.one("workflow triage")
    assert change.context.trace_id != workflow.context.trace_id


def test_a_change_at_a_given_time(spans: CapturedSpans) -> None:
    ct.record_change("deploy", "ed-triage", version="2.3.0", at_ns=1_700_000_000_000_000_000)
    assert spans.one(A.CHANGE_SPAN_NAME).start_time == 1_700_000_000_000_000_000


@pytest.mark.parametrize(
    ("fields", "rule"),
    [
        ({"kind": "coffee", "name": "x"}, A.CHANGE_KIND.key),
        ({"kind": "flag", "name": "x", "actor": "jane.smith"}, A.CHANGE_ACTOR.key),
        ({"kind": "flag", "name": "x", "actor": "role:Dr Jane Smith"}, A.CHANGE_ACTOR.key),
        ({"kind": "flag", "name": "MRN 12345678"}, A.CHANGE_NAME.key),
        ({"kind": "flag", "name": "x", "scope": {"patient": "123"}}, "scope.patient"),
        ({"kind": "flag", "name": "x", "scope": {"site": "north'; DROP TABLE x"}}, A.SITE.key),
    ],
)
def test_bad_fields_raise_in_strict_mode_without_the_value(
    spans: CapturedSpans, fields: dict[str, object], rule: str
) -> None:
    with pytest.raises(ct.TelemetryValidationError) as raised:
        ct.record_change(**fields)  # type: ignore[arg-type]
    assert rule in str(raised.value)
    assert "Smith" not in str(raised.value)
    assert "12345678" not in str(raised.value)
    assert spans.named(A.CHANGE_SPAN_NAME) == []


def test_production_mode_drops_the_bad_field_and_keeps_the_event() -> None:
    with capture(mode="production") as spans:
        ct.record_change("flag", "triage-model-v4", version="off", actor="Jane Smith")
        ct.record_change("coffee", "x")  # no valid kind: nothing to annotate, nothing recorded
    [change] = spans.named(A.CHANGE_SPAN_NAME)
    assert A.CHANGE_ACTOR.key not in (change.attributes or {})
    assert change.attributes[A.CHANGE_VERSION.key] == "off"  # type: ignore[index]
    assert spans.telemetry.dropped()["invalid"] >= 2
