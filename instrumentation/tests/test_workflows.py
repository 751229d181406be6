"""Span trees, names, attributes and durations of realistic workflows, through the real SDK."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from opentelemetry.trace import StatusCode

import clinotel.instrumentation as ct
from clinotel.instrumentation.testing import TEST_PSEUDONYM_KEY, CapturedSpans, FakeClock
from clinotel.instrumentation.testing.workflows import schedule, triage
from clinotel.semconv import attributes as A


def _ms(span: object) -> float:
    return (span.end_time - span.start_time) / 1e6  # type: ignore[attr-defined]


def test_triage_workflow_span_tree(spans: CapturedSpans, clock: FakeClock) -> None:
    traceparent = triage(clock, "ENC-0042")
    root = spans.one("workflow triage")
    kids = spans.children(root)
    assert [s.name for s in kids] == ["ingest", "queue", "decide", "review", "act", "complete"]
    assert {s.context.trace_id for s in spans.spans} == {root.context.trace_id}
    version, trace_id, span_id, flags = traceparent.split("-")
    assert (version, trace_id, span_id) == ("00", f"{root.context.trace_id:032x}", f"{root.context.span_id:016x}")
    assert int(flags, 16) & 1, "sampled"

    # root: identity, where and cohort, with a pseudonym instead of the encounter id
    attrs = root.attributes
    assert attrs[A.WORKFLOW_KIND.key] == "triage"
    assert attrs[A.WORKFLOW_ID.key] == ct.pseudonymize("ENC-0042", TEST_PSEUDONYM_KEY.encode())
    assert attrs[A.SITE.key] == "north"
    assert attrs[A.COHORT_LANGUAGE.key] == "es"
    assert attrs[A.COHORT_ACUITY.key] == "high"
    assert A.WORKFLOW_STAGE.key not in attrs

    # every stage repeats the workflow context and names its stage
    for s in kids:
        assert s.attributes[A.WORKFLOW_KIND.key] == "triage"
        assert s.attributes[A.SITE.key] == "north"
        assert s.attributes[A.DEPARTMENT.key] == "ed"
        assert s.attributes[A.WORKFLOW_STAGE.key] == s.name
        assert A.WORKFLOW_ID.key not in s.attributes

    # durations follow the clock exactly
    by_name = {s.name: s for s in kids}
    assert _ms(by_name["ingest"]) == 12
    assert _ms(by_name["queue"]) == 95_000
    assert _ms(by_name["decide"]) == 40
    assert _ms(root) == 12 + 95_000 + 40 + 30_000 + 150

    decide = by_name["decide"]
    assert decide.attributes[A.DECISION_VALUE.key] == "ESI-3"
    assert decide.attributes[A.DECISION_CONFIDENCE.key] == 0.71
    assert decide.attributes[A.ROLLOUT_COHORT.key] == "canary"
    assert decide.attributes[A.FEATURE_FLAG_VARIANT.key] == "canary"
    assert [e.name for e in decide.events] == ["feature_flag.evaluation"]
    assert decide.events[0].attributes[A.FEATURE_FLAG_KEY.key] == "triage-model-v4"

    [shadow] = spans.children(decide)
    assert shadow.name == "decide"
    assert shadow.attributes[A.DECISION_SHADOW.key] is True
    assert shadow.attributes[A.DECISION_MODEL_VERSION.key] == "3.9.0"
    assert A.DECISION_SHADOW.key not in decide.attributes

    review = by_name["review"]
    assert review.attributes[A.REVIEW_ACTION.key] == "override"
    assert review.attributes[A.REVIEW_FINAL_VALUE.key] == "ESI-2"
    assert _ms(review) == 30_000, "the review span's duration is the review latency"
    assert A.REVIEW_LATENCY_MS.key not in review.attributes
    assert by_name["act"].attributes[A.ACTION_AUTOMATED.key] is False
    assert by_name["complete"].attributes[A.OUTCOME_STATUS.key] == "completed"


def test_scheduling_workflow(spans: CapturedSpans, clock: FakeClock) -> None:
    schedule(clock, "APPT-7781")
    root = spans.one("workflow scheduling")
    assert [s.name for s in spans.children(root)] == ["ingest", "decide", "act", "complete"]
    act = spans.one("act")
    assert act.attributes[A.SCHEDULING_SLOTS_OFFERED.key] == 3
    assert act.attributes[A.SCHEDULING_SLOT_FILLED.key] is True
    assert act.attributes[A.ACTION_AUTOMATED.key] is True
    decide = next(s for s in spans.named("decide") if A.DECISION_SHADOW.key not in s.attributes)
    assert decide.attributes[A.DECISION_SOURCE.key] == "rules"
    assert decide.attributes[A.ROLLOUT_MODE.key] == "shadow"
    assert spans.health() == {}, "a clean workflow drops nothing"


def test_resource_carries_service_and_tenant(spans: CapturedSpans, clock: FakeClock) -> None:
    schedule(clock, "APPT-1")
    resource = spans.one("workflow scheduling").resource.attributes
    assert resource["service.name"] == "clinotel-test"
    assert resource[A.TENANT_ID.key] == "test-tenant"


def test_review_latency_reported_by_another_system_is_kept(spans: CapturedSpans, clock: FakeClock) -> None:
    with ct.workflow("triage"), ct.stage("review") as st:
        clock.advance_ms(500)
        st.record_review(action="accept", latency_ms=42.0)
    assert spans.one("review").attributes[A.REVIEW_LATENCY_MS.key] == 42.0


def test_custom_stage_and_nesting(spans: CapturedSpans) -> None:
    with ct.workflow("scheduling"), ct.stage("eligibility_check"), ct.stage("insurance_lookup"):
        pass
    outer = spans.one("eligibility_check")
    inner = spans.one("insurance_lookup")
    assert inner.parent.span_id == outer.context.span_id
    assert inner.attributes[A.WORKFLOW_STAGE.key] == "insurance_lookup"


def test_clinical_exceptions_propagate_unchanged_and_are_recorded(spans: CapturedSpans) -> None:
    class EhrTimeoutError(Exception):
        pass

    error = EhrTimeoutError("EHR did not answer in 5 s")
    with pytest.raises(EhrTimeoutError) as info, ct.workflow("triage"), ct.stage("ingest"):
        raise error
    assert info.value is error
    ingest = spans.one("ingest")
    assert ingest.status.status_code is StatusCode.ERROR
    assert ingest.attributes["error.type"].endswith("EhrTimeoutError")
    [event] = ingest.events
    assert event.name == "exception"
    assert event.attributes["exception.message"] == "EHR did not answer in 5 s"
    assert event.attributes["exception.escaped"] in ("True", "False"), "the SDK's own attribute passes the gate"
    assert spans.one("workflow triage").status.status_code is StatusCode.ERROR


# -- decorators ----------------------------------------------------------------------------------


@ct.workflow("triage", identifier=lambda request: request["encounter"], site="east", department="ed")
def handle(request: dict[str, str]) -> str:
    return decide(request)


@ct.stage("decide")
def decide(request: dict[str, str]) -> str:
    ct.record_decision(source="rules", value="ESI-4")
    return "ESI-4"


def test_sync_decorators_and_identifier_from_arguments(spans: CapturedSpans) -> None:
    assert handle({"encounter": "ENC-9"}) == "ESI-4"
    assert handle({"encounter": "ENC-10"}) == "ESI-4"
    roots = spans.named("workflow triage")
    ids = {r.attributes[A.WORKFLOW_ID.key] for r in roots}
    assert ids == {ct.pseudonymize(e, TEST_PSEUDONYM_KEY.encode()) for e in ("ENC-9", "ENC-10")}
    for d in spans.named("decide"):
        assert d.attributes[A.DECISION_VALUE.key] == "ESI-4"
        assert d.attributes[A.SITE.key] == "east"
    assert handle.__name__ == "handle"


@ct.workflow("scheduling")
async def handle_async(delay: float) -> str:
    await asyncio.sleep(delay)
    return await decide_async()


@ct.stage("decide")
async def decide_async() -> str:
    await asyncio.sleep(0)
    ct.record_decision(source="model", value="slot_a")
    return "slot_a"


def test_async_decorators_keep_concurrent_workflows_apart(spans: CapturedSpans) -> None:
    async def main() -> list[str]:
        return await asyncio.gather(*(handle_async(0.001 * (i % 3)) for i in range(6)))

    assert asyncio.run(main()) == ["slot_a"] * 6
    roots = spans.named("workflow scheduling")
    assert len(roots) == 6
    root_ids = {r.context.span_id for r in roots}
    decides = spans.named("decide")
    assert len(decides) == 6
    assert {d.parent.span_id for d in decides} == root_ids, "each decide belongs to its own workflow"


@ct.stage("ingest")
def read_batch(n: int) -> Iterator[int]:
    for i in range(n):
        ct.set_attribute("clinical.ingest.source", "fhir")
        yield i


def test_generator_span_covers_iteration_and_is_not_current_between_items(spans: CapturedSpans) -> None:
    with ct.workflow("triage"):
        for _ in read_batch(3):
            with ct.stage("decide"):
                pass
    ingest = spans.one("ingest")
    root = spans.one("workflow triage")
    assert ingest.attributes["clinical.ingest.source"] == "fhir"
    for d in spans.named("decide"):
        assert d.parent.span_id == root.context.span_id, "consumer spans must not nest under the generator"
    assert ingest.end_time >= max(d.end_time for d in spans.named("decide"))


def test_generator_closed_early_ends_its_span(spans: CapturedSpans) -> None:
    with ct.workflow("triage"):
        gen = read_batch(10)
        assert next(gen) == 0
        gen.close()
    ingest = spans.one("ingest")
    assert ingest.end_time is not None
    assert ingest.status.status_code is StatusCode.UNSET


def test_generator_exception_is_recorded_and_raised(spans: CapturedSpans) -> None:
    @ct.stage("ingest")
    def broken() -> Iterator[int]:
        yield 1
        raise KeyError("missing field")

    with ct.workflow("triage"), pytest.raises(KeyError):
        list(broken())
    assert spans.one("ingest").status.status_code is StatusCode.ERROR


def test_generator_send_and_return_value(spans: CapturedSpans) -> None:
    @ct.stage("review")
    def reviewer() -> Iterator[str | None]:
        got = yield "ready"
        yield f"got {got}"

    with ct.workflow("triage"):
        g = reviewer()
        assert next(g) == "ready"
        assert g.send("accept") == "got accept"
        assert list(g) == []
    assert len(spans.named("review")) == 1


@ct.stage("ingest")
async def stream(n: int) -> AsyncIterator[int]:
    for i in range(n):
        await asyncio.sleep(0)
        yield i


def test_async_generator_decorator(spans: CapturedSpans) -> None:
    async def main() -> list[int]:
        with ct.workflow("scheduling"):
            return [i async for i in stream(4)]

    assert asyncio.run(main()) == [0, 1, 2, 3]
    ingest = spans.one("ingest")
    assert ingest.parent.span_id == spans.one("workflow scheduling").context.span_id


def test_async_context_managers(spans: CapturedSpans) -> None:
    async def main() -> None:
        async with ct.workflow("triage"), ct.stage("act") as st:
            st.record_action(type="notify", target="paging", status="succeeded")

    asyncio.run(main())
    assert spans.one("act").attributes[A.ACTION_TYPE.key] == "notify"


def test_a_scope_object_is_entered_once(spans: CapturedSpans) -> None:
    """Entered again, in any mode: which entry an exit belongs to cannot be told when entries
    interleave, and a fresh copy per entry ended another request's span with this one's error."""
    scope = ct.workflow("triage")
    with scope, pytest.raises(RuntimeError, match="entered once: call workflow"), scope:
        pass
    with pytest.raises(RuntimeError, match="fails on the second request"), scope:
        pass


def test_a_scope_is_its_own_handle_and_is_spent_after_its_exit(spans: CapturedSpans) -> None:
    scope = ct.stage("decide")
    with ct.workflow("triage") as wf, scope as st:
        assert st is scope
        assert isinstance(st, ct.StageHandle)
        assert isinstance(wf, ct.WorkflowHandle)
        assert wf.name == "workflow triage"
        st.record_outcome(status="completed")  # one attribute
    assert spans.one("decide").attributes[A.OUTCOME_STATUS.key] == "completed"
    st.record_outcome(status="abandoned")  # spent: its span has ended
    assert spans.one("decide").attributes[A.OUTCOME_STATUS.key] == "completed"
    assert len(spans.named("decide")) == 1


def test_a_scope_never_entered_records_nothing_and_raises_nothing(spans: CapturedSpans) -> None:
    scope = ct.stage("decide")
    scope.record_decision(source="model", value="ESI-2")
    scope.set(A.SITE, "north")
    assert not scope.span.is_recording()
    assert spans.spans == []


def test_a_stage_decorates_classmethods_and_async_callable_objects(spans: CapturedSpans) -> None:
    """`@stage` above `@classmethod` raised TypeError at every call; an object with an async
    `__call__` was wrapped as a plain function, so its span ended before the coroutine ran."""

    class Triage:
        @ct.stage("decide")  # type: ignore[arg-type]
        @classmethod
        def decide(cls, value: str) -> str:
            ct.record_decision(source="model", value=value)
            return value

    class Scorer:
        async def __call__(self, value: str) -> str:
            await asyncio.sleep(0)
            ct.record_decision(source="model", value=value)
            return value

    scored = ct.stage("decide")(Scorer())

    async def main() -> str:
        with ct.workflow("triage"):
            return await scored("ESI-3")

    with ct.workflow("triage"):
        assert Triage.decide("ESI-2") == "ESI-2"
    assert asyncio.run(main()) == "ESI-3"
    values = sorted(s.attributes[A.DECISION_VALUE.key] for s in spans.named("decide"))
    assert values == ["ESI-2", "ESI-3"], "the async call's decision is recorded on its own span"


def test_two_threads_entering_one_scope_object_at_once_one_is_refused() -> None:
    """The check and the claim were apart: two threads entering a module-level stage object at
    once both passed, and one's exit ended the other's span with its own error (a review). A
    sampler holding the first entry inside its span's start keeps the window wide open."""
    import threading
    import time

    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Sampler

    from clinotel.instrumentation.testing import TEST_PSEUDONYM_KEY, isolated

    inside = threading.Event()

    class Slow(Sampler):
        def should_sample(self, *args: Any, **kwargs: Any) -> Any:
            if args[2] == "decide":
                inside.set()
                time.sleep(0.3)
            return ALWAYS_ON.should_sample(*args, **kwargs)

        def get_description(self) -> str:
            return "slow"

    exporter = InMemorySpanExporter()
    outcomes: dict[str, str] = {}
    with isolated():
        tel = ct.configure(exporter=exporter, batch=False, set_global=False, mode="strict", sampler=Slow(),
                           pseudonym_key=TEST_PSEUDONYM_KEY)  # fmt: skip
        decide = ct.stage("decide")

        def request(name: str) -> None:
            try:
                with ct.workflow("triage"), decide:
                    raise ValueError(name)
            except (ValueError, RuntimeError) as e:
                outcomes[name] = type(e).__name__

        first = threading.Thread(target=request, args=("first",))
        first.start()
        assert inside.wait(5)
        request("second")
        first.join(10)
        tel.shutdown()
    assert outcomes == {"first": "ValueError", "second": "RuntimeError"}
    [span] = [s for s in exporter.get_finished_spans() if s.name == "decide"]
    assert [e.attributes["exception.message"] for e in span.events] == ["first"]
