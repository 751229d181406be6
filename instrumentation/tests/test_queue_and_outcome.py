"""Queue hand-off across threads and processes, and late outcomes from another process."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

import clinotel.instrumentation as ct
from clinotel.instrumentation.testing import TEST_PSEUDONYM_KEY, CapturedSpans
from clinotel.semconv import attributes as A

# Runs in a child process: configures clinotel on its own, dequeues the carrier read from stdin,
# runs the rest of the workflow, and prints the exported spans as JSON.
_WORKER = """
import json, sys
import clinotel.instrumentation as ct
from clinotel.instrumentation.testing import capture, span_to_dict
message = json.loads(sys.stdin.read())
with capture() as spans:
    if message["op"] == "dequeue":
        with ct.dequeue(message["carrier"]) as dq:
            with ct.stage("decide") as st:
                st.record_decision(source="model", value="ESI-3")
    else:
        ct.record_outcome("triage", identifier=message["identifier"], link=message.get("link"),
                          label="ESI-2", adverse_event=False, escalation_needed=True)
print(json.dumps([span_to_dict(s) for s in spans.spans]))
"""


def _run_worker(message: dict[str, Any]) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-c", _WORKER],
        input=json.dumps(message),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    spans: list[dict[str, Any]] = json.loads(done.stdout)
    return spans


def test_queue_wait_across_a_thread_hand_off(spans: CapturedSpans) -> None:
    work: queue.Queue[dict[str, str]] = queue.Queue()
    results: list[ct.Dequeued] = []

    def worker() -> None:
        carrier = work.get(timeout=10)
        time.sleep(0.05)  # the item waits in the queue
        with ct.dequeue(carrier) as dq, ct.stage("decide") as st:
            st.record_decision(source="rules", value="ESI-4")
        results.append(dq)

    t = threading.Thread(target=worker)
    t.start()
    with ct.workflow("triage", site="north", department="ed") as wf:
        work.put(wf.enqueue("triage_nurse", depth=7))
    t.join(timeout=10)

    root = spans.one("workflow triage")
    q = spans.one("queue")
    decide = spans.one("decide")
    assert q.context.trace_id == root.context.trace_id == decide.context.trace_id
    assert q.parent.span_id == root.context.span_id
    assert decide.parent.span_id == root.context.span_id
    assert q.attributes[A.QUEUE_NAME.key] == "triage_nurse"
    assert q.attributes[A.QUEUE_DEPTH.key] == 7
    assert q.attributes[A.SITE.key] == "north"
    assert decide.attributes[A.WORKFLOW_KIND.key] == "triage"
    # the spans fixture's clock does not move: the wait is measured on that clock, here zero
    assert results[0].queue == "triage_nurse"
    assert results[0].kind == "triage"


def test_queue_wait_measured_on_the_wall_clock_across_threads(production_spans: CapturedSpans) -> None:
    with ct.workflow("triage") as wf:
        carrier = wf.enqueue("worklist")
    done: list[ct.Dequeued] = []

    def later() -> None:
        with ct.dequeue(carrier) as dq:
            done.append(dq)

    timer = threading.Timer(0.2, later)
    timer.start()
    timer.join()
    q = production_spans.one("queue")
    wait_ms = (q.end_time - q.start_time) / 1e6
    assert wait_ms >= 190
    assert done[0].wait_ms == pytest.approx(wait_ms)


def test_queue_wait_across_a_subprocess(spans: CapturedSpans) -> None:
    with ct.workflow("triage", site="south", department="ed") as wf:
        carrier = wf.enqueue("model_workers")
    root = spans.one("workflow triage")
    time.sleep(0.3)
    child = _run_worker({"op": "dequeue", "carrier": carrier})
    by_name = {s["name"]: s for s in child}
    q, decide = by_name["queue"], by_name["decide"]
    assert q["trace_id"] == decide["trace_id"] == f"{root.context.trace_id:032x}"
    assert q["parent_span_id"] == decide["parent_span_id"] == f"{root.context.span_id:016x}"
    assert (q["end_time"] - q["start_time"]) / 1e6 >= 290, "the wait runs from enqueue to dequeue"
    assert decide["attributes"][A.SITE.key] == "south"
    assert decide["attributes"][A.WORKFLOW_STAGE.key] == "decide"


def test_malformed_carrier(spans: CapturedSpans) -> None:
    with pytest.raises(ct.TelemetryValidationError, match="carrier"), ct.dequeue({"traceparent": "garbage"}):
        pass


def test_malformed_carrier_in_production_still_runs_the_block(production_spans: CapturedSpans) -> None:
    ran = False
    with ct.dequeue({}) as dq, ct.stage("decide"):
        ran = True
    assert ran
    assert dq.queue is None
    assert production_spans.telemetry.dropped()["invalid"] >= 1


def test_late_outcome_from_another_process_joins_by_pseudonym_and_link(spans: CapturedSpans) -> None:
    with ct.workflow("triage", identifier="ENC-2024-77") as wf:
        traceparent = wf.traceparent
    root = spans.one("workflow triage")
    [outcome] = _run_worker({"op": "outcome", "identifier": "ENC-2024-77", "link": traceparent})
    assert outcome["name"] == "outcome"
    assert outcome["trace_id"] != f"{root.context.trace_id:032x}", "a late outcome is its own trace"
    assert outcome["attributes"][A.WORKFLOW_ID.key] == root.attributes[A.WORKFLOW_ID.key]
    assert outcome["attributes"][A.WORKFLOW_STAGE.key] == "outcome"
    assert outcome["attributes"][A.OUTCOME_LABEL.key] == "ESI-2"
    assert outcome["attributes"][A.OUTCOME_ESCALATION_NEEDED.key] is True
    assert outcome["links"] == [f"{root.context.trace_id:032x}-{root.context.span_id:016x}"]
    assert "ENC-2024-77" not in json.dumps(outcome)


def test_late_outcome_without_link_still_carries_the_pseudonym(spans: CapturedSpans) -> None:
    ct.record_outcome("triage", identifier="ENC-5", label="ESI-1", adverse_event=True)
    span = spans.one("outcome")
    assert span.attributes[A.WORKFLOW_ID.key] == ct.pseudonymize("ENC-5", TEST_PSEUDONYM_KEY.encode())
    assert span.links == ()


def test_late_outcome_refuses_bad_links_and_missing_identity(spans: CapturedSpans) -> None:
    with pytest.raises(ct.TelemetryValidationError, match="traceparent"):
        ct.record_outcome("triage", identifier="ENC-5", link="not-a-traceparent", label="ESI-1")
    with pytest.raises(ct.TelemetryValidationError, match="identifier or a workflow_id"):
        ct.record_outcome("triage", label="ESI-1")
