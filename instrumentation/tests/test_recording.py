"""One recording path: every public call that records attributes follows the same rules.

A record with one bad field among good ones: strict mode raises naming the rule (never the value);
production mode drops that field only, keeps the rest and counts one refusal under its reason,
with the counters the PHI gate exports (`HEALTH_COUNTERS`). A typed model and the same fields as
keywords record the same attributes, and a model refuses at construction what the keyword path
refuses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pydantic
import pytest

import clinotel.instrumentation as ct
from clinotel.instrumentation.testing import CapturedSpans, capture
from clinotel.semconv import Language
from clinotel.semconv import attributes as A

WID = ct.pseudonymize("ENC-1", b"a key of sixteen bytes or more")
PHI = "MRN 00123456"


@dataclass(frozen=True)
class Case:
    """A call that records one bad field among good ones, on span `span`."""

    run: Callable[[], None]
    span: str
    kept: str
    dropped: str
    reason: str


def _in_stage(record: Callable[[ct.StageHandle], None]) -> Callable[[], None]:
    def run() -> None:
        with ct.workflow("triage", site="north"), ct.stage("decide") as st:
            record(st)

    return run


def _stage_attributes() -> None:
    with ct.workflow("triage"), ct.stage("act", attributes={A.INGEST_SOURCE: "hl7", A.QUEUE_DEPTH: -1}):
        pass


def _workflow_place() -> None:
    with ct.workflow("triage", site="north", department=PHI):
        pass


def _workflow_attributes() -> None:
    with ct.workflow("triage", attributes={A.COHORT_LANGUAGE: "es", A.COHORT_SEX: "x"}):
        pass


def _queued() -> None:
    with ct.workflow("triage") as wf:
        carrier = wf.enqueue("Triage Nurse!", depth=3)
    with ct.dequeue(carrier):
        pass


CASES = {
    "record_decision": Case(
        _in_stage(lambda st: st.record_decision(source="model", value="ESI-2", confidence=7.0)),
        "decide", A.DECISION_VALUE.key, A.DECISION_CONFIDENCE.key, "invalid",
    ),
    "module record_decision": Case(
        _in_stage(lambda st: ct.record_decision(source="model", value="ESI-2", risk="catastrophic")),
        "decide", A.DECISION_VALUE.key, A.DECISION_RISK.key, "invalid",
    ),
    "record_review": Case(
        _in_stage(lambda st: st.record_review(action="override", reason=PHI)),
        "decide", A.REVIEW_ACTION.key, A.REVIEW_REASON.key, "phi",
    ),
    "module record_review": Case(
        _in_stage(lambda st: ct.record_review(action="accept", latency_ms=-5.0)),
        "decide", A.REVIEW_ACTION.key, A.REVIEW_LATENCY_MS.key, "invalid",
    ),
    "record_action": Case(
        _in_stage(lambda st: st.record_action(type="notify", automated="yes")),
        "decide", A.ACTION_TYPE.key, A.ACTION_AUTOMATED.key, "invalid",
    ),
    "module record_action": Case(
        _in_stage(lambda st: ct.record_action(type="notify", priority="high")),
        "decide", A.ACTION_TYPE.key, "priority", "unregistered",
    ),
    "record_outcome": Case(
        _in_stage(lambda st: st.record_outcome(status="completed", label="Dr Smith")),
        "decide", A.OUTCOME_STATUS.key, A.OUTCOME_LABEL.key, "phi",
    ),
    "record_flag": Case(
        _in_stage(lambda st: st.record_flag("triage-v4", "on", reason="because")),
        "decide", A.FEATURE_FLAG_KEY.key, A.FEATURE_FLAG_REASON.key, "invalid",
    ),
    "module record_flag": Case(
        _in_stage(lambda st: ct.record_flag("triage-v4", "on", provider=PHI)),
        "decide", A.FEATURE_FLAG_VARIANT.key, A.FEATURE_FLAG_PROVIDER.key, "phi",
    ),
    "record_shadow": Case(
        _in_stage(lambda st: st.record_shadow(source="model", value="ESI-3", confidence=-1.0)),
        "decide", A.DECISION_SHADOW.key, A.DECISION_CONFIDENCE.key, "invalid",
    ),
    "set": Case(
        _in_stage(lambda st: (st.set(A.DECISION_VALUE, "ESI-2"), st.set("clinical.decision.risk", "dire"))),
        "decide", A.DECISION_VALUE.key, A.DECISION_RISK.key, "invalid",
    ),
    "set_many": Case(
        _in_stage(lambda st: st.set_many({"clinical.decision.value": "ESI-2", "patient.name": "x"})),
        "decide", A.DECISION_VALUE.key, "patient.name", "unregistered",
    ),
    "set_attribute": Case(
        _in_stage(lambda st: (ct.set_attribute(A.DECISION_VALUE.key, "ESI-2"), ct.set_attribute(A.DEPARTMENT, PHI))),
        "decide", A.DECISION_VALUE.key, A.DEPARTMENT.key, "phi",
    ),
    "stage attributes": Case(_stage_attributes, "act", A.INGEST_SOURCE.key, A.QUEUE_DEPTH.key, "invalid"),
    "workflow place": Case(_workflow_place, "workflow triage", A.SITE.key, A.DEPARTMENT.key, "phi"),
    "workflow attributes": Case(
        _workflow_attributes, "workflow triage", A.COHORT_LANGUAGE.key, A.COHORT_SEX.key, "invalid"
    ),
    "late record_outcome": Case(
        lambda: ct.record_outcome("triage", workflow_id=WID, label="ESI-2", adverse_event="no"),
        "outcome", A.OUTCOME_LABEL.key, A.OUTCOME_ADVERSE_EVENT.key, "invalid",
    ),
    "enqueue and dequeue": Case(_queued, "queue", A.QUEUE_DEPTH.key, A.QUEUE_NAME.key, "invalid"),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_production_mode_drops_only_the_bad_field_and_counts_it(case: Case) -> None:
    with capture(mode="production") as spans:
        case.run()
    [span] = [s for s in spans.named(case.span) if case.kept in s.attributes]
    assert case.dropped not in span.attributes
    dropped = spans.telemetry.dropped()
    assert set(dropped) == set(A.HEALTH_COUNTERS), "the gate's counters"
    assert {k: v for k, v in dropped.items() if v} == {case.reason: 1}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_strict_mode_raises_naming_the_rule_not_the_value(case: Case) -> None:
    with capture(), pytest.raises(ct.TelemetryValidationError) as info:
        case.run()
    assert case.dropped.rsplit(".", 1)[-1] in str(info.value)
    assert "00123456" not in str(info.value)
    assert "Smith" not in str(info.value)


MODELS = [
    ct.Decision(
        source="model",
        value="ESI-3",
        confidence=0.71,
        risk="medium",
        model_name="triage-gbm",
        model_version="4.0.1",
        fallback_reason="timeout",
        rollout_mode="recommend",
        rollout_cohort="canary",
    ),
    ct.Review(action="override", actor_role="nurse", reason="clinical_judgement", final_value="ESI-2", latency_ms=4.5),
    ct.Action(type="assign_priority", target="ehr", status="succeeded", automated=False),
    ct.Outcome(status="completed", label="ESI-2", adverse_event=False, escalation_needed=True),
]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: type(m).__name__)
def test_a_model_and_its_fields_as_keywords_record_the_same(model: ct.Decision, spans: CapturedSpans) -> None:
    method = f"record_{type(model).__name__.lower()}"
    with ct.workflow("triage"):
        with ct.stage("decide") as st:
            getattr(st, method)(model)
        with ct.stage("review") as st:
            getattr(st, method)(**model.model_dump(exclude_none=True))
    by_model, by_keywords = (s.attributes for s in spans.spans if s.name in ("decide", "review"))
    expected = model.to_attributes()
    assert len(expected) == len(type(model).FIELDS), "every field set"
    assert {k: v for k, v in by_model.items() if k in expected} == expected
    assert {k: v for k, v in by_keywords.items() if k in expected} == expected


@pytest.mark.parametrize(
    ("model", "fields"),
    [
        (ct.Decision, {"source": "model", "confidence": 7.0}),
        (ct.Decision, {"source": "oracle"}),
        (ct.Decision, {"source": "model", "value": PHI}),
        (ct.Review, {"action": "override", "reason": PHI}),
        (ct.Action, {"type": "notify", "automated": "yes"}),
        (ct.Outcome, {"label": "Dr Smith"}),
        (ct.Cohort, {"language": "Spanish"}),
        (ct.FlagEvaluation, {"key": "flag", "provider": PHI}),
        (ct.Decision, {"source": "model", "score": 1}),
        (ct.Decision, {"value": "ESI-2"}),
    ],
)
def test_a_model_refuses_at_construction_what_the_keywords_path_refuses(
    model: type[ct.Decision], fields: dict[str, object]
) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        model(**fields)  # type: ignore[arg-type]
    assert "00123456" not in str(info.value)
    assert "Smith" not in str(info.value)


def test_a_record_of_the_wrong_kind_or_given_twice_is_an_error(spans: CapturedSpans) -> None:
    with ct.workflow("triage"), ct.stage("decide") as st:
        with pytest.raises(TypeError, match="expected a Decision"):
            st.record_decision(ct.Review(action="accept"))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="not both"):
            st.record_decision(ct.Decision(source="model"), value="ESI-2")
    with capture(mode="production") as production, ct.workflow("triage"), ct.stage("decide") as st:
        st.record_review(ct.Action(type="notify"))  # type: ignore[arg-type]
    assert production.telemetry.dropped()["internal_errors"] == 1
    assert A.ACTION_TYPE.key not in production.one("decide").attributes


def test_registry_enums_are_accepted_wherever_codes_are(spans: CapturedSpans) -> None:
    cohort = ct.Cohort(language=Language.SPANISH, sex=ct.Sex.FEMALE)
    assert cohort.to_attributes() == {A.COHORT_SEX.key: "female", A.COHORT_LANGUAGE.key: "es"}
    with ct.workflow("triage", cohort=cohort), ct.stage("decide") as st:
        st.record_decision(source=ct.DecisionSource.MODEL, risk=ct.Risk.HIGH)
        st.set(A.INGEST_SOURCE, ct.IngestSource.EHR)
    decide = spans.one("decide").attributes
    assert (decide[A.DECISION_SOURCE.key], decide[A.DECISION_RISK.key], decide[A.INGEST_SOURCE.key]) == (
        "model",
        "high",
        "ehr",
    )
    assert type(decide[A.DECISION_SOURCE.key]) is str


def test_a_repeated_record_is_refused_and_counted_every_time() -> None:
    # Records that passed are remembered (a repeat costs one lookup); refusals never are.
    with capture(mode="production") as production:
        for _ in range(3):
            with ct.workflow("triage"), ct.stage("decide") as st:
                st.record_decision(source="model", value=PHI)
                st.record_action(type="notify", automated=1)  # an int is not a boolean
                st.record_action(type="notify", automated=True)
    dropped = production.telemetry.dropped()
    assert (dropped["phi"], dropped["invalid"]) == (3, 3)
    for span in production.named("decide"):
        assert A.DECISION_VALUE.key not in span.attributes
        assert span.attributes[A.ACTION_AUTOMATED.key] is True


def test_a_remembered_record_is_not_confused_with_an_equal_value_of_another_type(spans: CapturedSpans) -> None:
    # True == 1 == 1.0 and hash alike: only the boolean is valid here, whichever came first.
    with ct.workflow("triage"), ct.stage("act") as st:
        st.record_action(type="notify", automated=True)
        st.record_action(type="notify", automated=True)
    with (
        capture(mode="strict"),
        ct.workflow("triage"),
        ct.stage("act") as st,
        pytest.raises(ct.TelemetryValidationError, match="boolean"),
    ):
        st.record_action(type="notify", automated=1)  # type: ignore[arg-type]
    for _ in range(2):  # the second one is built from memory
        assert ct.Action(type="notify", automated=True).automated is True
    with pytest.raises(pydantic.ValidationError):
        ct.Action(type="notify", automated=1.0)  # type: ignore[arg-type]
    assert spans.one("act").attributes[A.ACTION_AUTOMATED.key] is True


def test_an_enum_and_its_text_record_the_same_code_in_either_order(spans: CapturedSpans) -> None:
    with ct.workflow("triage"):
        for risk in (ct.Risk.HIGH, "high", ct.Risk.HIGH, "low", ct.Risk.LOW):
            with ct.stage("decide") as st:
                st.record_decision(source="model", risk=risk, confidence=0.5)
    risks = [s.attributes[A.DECISION_RISK.key] for s in spans.named("decide")]
    assert risks == ["high", "high", "high", "low", "low"]
    assert all(type(r) is str for r in risks)


def test_a_model_built_again_from_the_same_arguments_is_an_equal_separate_instance() -> None:
    first = ct.Cohort(age_band="65-79", sex="female", language="es")
    again = ct.Cohort(age_band="65-79", sex="female", language="es")
    assert again == first
    assert again is not first
    assert again.model_fields_set == first.model_fields_set == {"age_band", "sex", "language"}
    assert again.__dict__ is not first.__dict__
    assert again.to_attributes() == first.to_attributes()
    with pytest.raises(pydantic.ValidationError):
        again.sex = "male"  # type: ignore[misc]
    for _ in range(2):  # a refusal is refused every time
        with pytest.raises(pydantic.ValidationError):
            ct.Cohort(language="Spanish")


def test_long_free_text_is_validated_each_time_and_not_remembered(spans: CapturedSpans) -> None:
    from clinotel.instrumentation._internal.fields import SPAN_ATTRIBUTES

    long_text = "lookup failed " + "x" * 300 + f" {PHI}"
    with ct.workflow("triage"), ct.stage("act") as st:
        for _ in range(2):
            st.set("exception.message", long_text)
            st.set("exception.message", "short text")
    keys = SPAN_ATTRIBUTES.memo.keys()  # each: field names, then values, in one flat tuple
    assert ("exception.message", "short text") in keys
    assert all(len(v) <= 256 for k in keys for v in k if isinstance(v, str))  # type: ignore[attr-defined]


def test_a_workflow_roots_attributes_are_its_own(spans: CapturedSpans) -> None:
    """Workflows of one kind and place share their validated context; what one adds to its root
    (its pseudonym, its cohort, its attributes) is on its root alone."""
    cohort = ct.Cohort(age_band="65-79", payer_class="medicaid")
    with ct.workflow("triage", site="north", identifier="ENC-1", cohort=cohort):
        pass
    with ct.workflow("triage", site="north", attributes={A.ACTION_AUTOMATED.key: True}):
        pass
    with ct.workflow("triage", site="north"):
        pass
    roots = [dict(s.attributes or {}) for s in spans.all if s.name == "workflow triage"]
    context = {A.WORKFLOW_KIND.key: "triage", A.SITE.key: "north"}
    assert roots[0].keys() == {*context, A.WORKFLOW_ID.key, A.COHORT_AGE_BAND.key, A.COHORT_PAYER_CLASS.key}
    assert roots[1] == {**context, A.ACTION_AUTOMATED.key: True}
    assert roots[2] == context


def test_a_workflow_given_something_else_as_its_cohort_is_an_error() -> None:
    wrong = ct.Decision(source="model")
    with capture(), pytest.raises(TypeError, match="expected a Cohort"), ct.workflow("triage", cohort=wrong):  # type: ignore[arg-type]
        pass
    with capture(mode="production") as production, ct.workflow("triage", cohort={"age_band": "65-79"}):  # type: ignore[arg-type]
        pass
    assert production.telemetry.dropped()["internal_errors"] == 1
    assert production.all == []
