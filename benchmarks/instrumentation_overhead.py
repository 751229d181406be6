"""What clinotel costs on top of the OpenTelemetry SDK, per workflow.

A seven-span triage workflow (root, ingest, queue, decide, review, act, complete) written with
clinotel, against the same spans with the same attributes written directly with the SDK. Both
export through a BatchSpanProcessor to an exporter that drops everything, so the figures are
span creation, attribute handling and (for clinotel) validation and the PHI gate, including the
export thread's share of the two cores. The no-op exporter never reads a span, so the gate alone
pays for fetching each span's fields into the export thread's cache; `--exporter otlp-encode`
has both sides encode every batch to OTLP protobuf first, as a real exporter does. Many short
rounds alternate between the two (ABBA, so neither always goes first) and each round's ratio is
taken against its neighbour: drift hits both.

Two clocks: CPU time of the process (both threads; what the library costs a service, and what
other processes on a shared machine barely disturb) is the headline; wall time is printed beside it.

    python benchmarks/instrumentation_overhead.py [--quick] [--json PATH] [--exporter null|otlp-encode]

Target: clinotel / SDK at most 1.10 (median of rounds, CPU time).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult

import clinotel.instrumentation as ct
from clinotel.instrumentation.testing import isolated
from clinotel.semconv import pseudonymize

KEY = b"benchmark-pseudonym-key-0123456789"
QUEUE = 100_000  # large enough that neither pipeline drops spans: both do all their work
TARGET = 1.10


class NullExporter(SpanExporter):
    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


class EncodeExporter(NullExporter):
    """What the OTLP exporter does before it sends: the batch encoded to protobuf bytes."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        encode_spans(spans).SerializeToString()
        return super().export(spans)


EXPORTERS: dict[str, type[NullExporter]] = {"null": NullExporter, "otlp-encode": EncodeExporter}


class KeepExporter(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def _exported(spans: Sequence[ReadableSpan]) -> dict[str, dict[str, object]]:
    return {s.name: dict(s.attributes or {}) for s in spans if s.name != "clinotel.telemetry"}


def same_work(resource: Resource) -> bool:
    """Both sides write the same seven spans with the same attributes (workflow 0: the same
    pseudonym too), so the ratio compares like with like."""
    kept = KeepExporter()
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(kept))
    sdk_workflow_factory(provider.get_tracer("bench"))(0)
    provider.shutdown()
    mine = KeepExporter()
    with isolated():
        telemetry = ct.configure(
            service_name="bench", tenant="bench", pseudonym_key=KEY, exporter=mine, batch=False, set_global=False
        )
        clinotel_workflow(0)
        telemetry.shutdown()
    return _exported(kept.spans) == _exported(mine.spans) and len(mine.spans) == len(kept.spans) == 7


def clinotel_workflow(i: int) -> None:
    cohort = ct.Cohort(age_band="65-79", sex="female", language="es", payer_class="medicaid", acuity="high")
    with ct.workflow(
        "triage", identifier=f"ENC{i:08d}", site="north", department="ed", service_line="emergency", cohort=cohort
    ):
        with ct.stage("ingest", attributes={"clinical.ingest.source": "hl7"}):
            pass
        with ct.stage("queue", attributes={"clinical.queue.name": "triage_nurse", "clinical.queue.depth": 4}):
            pass
        with ct.stage("decide") as st:
            st.record_decision(
                source="model",
                value="ESI-3",
                confidence=0.71,
                risk="medium",
                model_name="triage-gbm",
                model_version="4.0.1",
                rollout_mode="recommend",
                rollout_cohort="canary",
            )
        with ct.stage("review") as st:
            st.record_review(
                action="override", actor_role="nurse", reason="clinical_judgement", final_value="ESI-2", latency_ms=0.01
            )
        with ct.stage("act") as st:
            st.record_action(type="assign_priority", target="ehr", status="succeeded", automated=False)
        with ct.stage("complete") as st:
            st.record_outcome(status="completed")


def sdk_workflow_factory(tracer: trace.Tracer) -> Callable[[int], None]:
    """The same spans and attributes, written by hand with the SDK (pseudonym precomputed)."""
    wid = pseudonymize("ENC00000000", KEY)

    def run(i: int) -> None:
        ctx = {
            "clinical.workflow.kind": "triage",
            "clinical.site": "north",
            "clinical.department": "ed",
            "clinical.service_line": "emergency",
        }
        root_attrs = {
            **ctx,
            "clinical.workflow.id": wid,
            "clinical.cohort.age_band": "65-79",
            "clinical.cohort.sex": "female",
            "clinical.cohort.language": "es",
            "clinical.cohort.payer_class": "medicaid",
            "clinical.cohort.acuity": "high",
        }
        with tracer.start_as_current_span("workflow triage", attributes=root_attrs):
            with tracer.start_as_current_span(
                "ingest", attributes={**ctx, "clinical.workflow.stage": "ingest", "clinical.ingest.source": "hl7"}
            ):
                pass
            with tracer.start_as_current_span(
                "queue",
                attributes={
                    **ctx,
                    "clinical.workflow.stage": "queue",
                    "clinical.queue.name": "triage_nurse",
                    "clinical.queue.depth": 4,
                },
            ):
                pass
            with tracer.start_as_current_span("decide", attributes={**ctx, "clinical.workflow.stage": "decide"}) as s:
                s.set_attributes(
                    {
                        "clinical.decision.source": "model",
                        "clinical.decision.value": "ESI-3",
                        "clinical.decision.confidence": 0.71,
                        "clinical.decision.risk": "medium",
                        "clinical.decision.model.name": "triage-gbm",
                        "clinical.decision.model.version": "4.0.1",
                        "clinical.rollout.mode": "recommend",
                        "clinical.rollout.cohort": "canary",
                    }
                )
            with tracer.start_as_current_span("review", attributes={**ctx, "clinical.workflow.stage": "review"}) as s:
                s.set_attributes(
                    {
                        "clinical.review.action": "override",
                        "clinical.review.actor_role": "nurse",
                        "clinical.review.reason": "clinical_judgement",
                        "clinical.review.final_value": "ESI-2",
                        "clinical.review.latency_ms": 0.01,
                    }
                )
            with tracer.start_as_current_span("act", attributes={**ctx, "clinical.workflow.stage": "act"}) as s:
                s.set_attributes(
                    {
                        "clinical.action.type": "assign_priority",
                        "clinical.action.target": "ehr",
                        "clinical.action.status": "succeeded",
                        "clinical.action.automated": False,
                    }
                )
            with tracer.start_as_current_span(
                "complete", attributes={**ctx, "clinical.workflow.stage": "complete"}
            ) as s:
                s.set_attribute("clinical.outcome.status", "completed")

    return run


def measure(run: Callable[[int], None], flush: Callable[[], object], n: int) -> tuple[float, float]:
    """Microseconds per workflow, CPU time of the process and wall time, including draining the
    export queue."""
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(n):
        run(i)
    flush()
    return (time.process_time() - cpu) / n * 1e6, (time.perf_counter() - wall) / n * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run (under 30 s)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument(
        "--exporter",
        choices=sorted(EXPORTERS),
        default="null",
        help="what both sides export to: nothing (the headline), or the OTLP encoding a real exporter does first",
    )
    args = parser.parse_args(argv)
    exporter_class = EXPORTERS[args.exporter]
    rounds, per_round = (10, 400) if args.quick else (60, 750)

    resource = Resource.create({"service.name": "bench", "clinical.tenant.id": "bench"})
    like_for_like = same_work(resource)
    sdk_provider = TracerProvider(resource=resource)
    sdk_exporter = exporter_class()
    sdk_bsp = BatchSpanProcessor(sdk_exporter, max_queue_size=QUEUE)
    sdk_provider.add_span_processor(sdk_bsp)
    sdk_run = sdk_workflow_factory(sdk_provider.get_tracer("bench"))

    os.environ["OTEL_BSP_MAX_QUEUE_SIZE"] = str(QUEUE)  # clinotel's BatchSpanProcessor reads it
    clin_exporter = exporter_class()
    with isolated():  # the configuration in force before is back afterwards
        telemetry = ct.configure(
            service_name="bench", tenant="bench", pseudonym_key=KEY, exporter=clin_exporter, set_global=False
        )

        for _ in range(2):  # warm-up: caches, imports, branch predictors
            measure(clinotel_workflow, telemetry.force_flush, 300)
            measure(sdk_run, sdk_bsp.force_flush, 300)

        clin, sdk = [], []
        for r in range(rounds):
            pair = [(clin, clinotel_workflow, telemetry.force_flush), (sdk, sdk_run, sdk_bsp.force_flush)]
            for out, run, flush in pair if r % 2 == 0 else reversed(pair):
                out.append(measure(run, flush, per_round))
        telemetry.shutdown()
    ratios = [c[0] / s[0] for c, s in zip(clin, sdk, strict=True)]
    wall_ratios = [c[1] / s[1] for c, s in zip(clin, sdk, strict=True)]
    sdk_provider.shutdown()
    expected = 7 * (per_round * rounds + 2 * 300)
    exported_ok = clin_exporter.spans >= expected and sdk_exporter.spans >= expected

    result = {
        "benchmark": "instrumentation_overhead",
        "spans_per_workflow": 7,
        "exporter": args.exporter,
        "rounds": rounds,
        "workflows_per_round": per_round,
        "sdk_us_per_workflow_median": statistics.median(c for c, _ in sdk),
        "clinotel_us_per_workflow_median": statistics.median(c for c, _ in clin),
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "sdk_wall_us_per_workflow_median": statistics.median(w for _, w in sdk),
        "clinotel_wall_us_per_workflow_median": statistics.median(w for _, w in clin),
        "wall_ratio_median": statistics.median(wall_ratios),
        "wall_ratio_min": min(wall_ratios),
        "wall_ratio_max": max(wall_ratios),
        "target_ratio": TARGET,
        "all_spans_exported": exported_ok,
        "same_spans_and_attributes": like_for_like,
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
    }
    rows = [
        ("OpenTelemetry SDK, by hand (ref)", result["sdk_us_per_workflow_median"], 1.0,
         result["sdk_wall_us_per_workflow_median"], 1.0),
        ("clinotel", result["clinotel_us_per_workflow_median"], result["ratio_median"],
         result["clinotel_wall_us_per_workflow_median"], result["wall_ratio_median"]),
    ]  # fmt: skip
    to = "no-op exporter" if args.exporter == "null" else "exporter that encodes OTLP and drops it"
    print(f"seven-span triage workflow, BatchSpanProcessor -> {to}, {rounds} x {per_round} workflows")
    print(f"{'':<34} {'CPU µs/wf':>10} {'ratio':>6} {'wall µs/wf':>11} {'ratio':>6}")
    for name, cpu, ratio, wall, wall_ratio in rows:
        print(f"{name:<34} {cpu:>10.0f} {ratio:>6.2f} {wall:>11.0f} {wall_ratio:>6.2f}")
    print(
        f"ratio range over rounds: CPU {result['ratio_min']:.2f}..{result['ratio_max']:.2f}, wall "
        f"{result['wall_ratio_min']:.2f}..{result['wall_ratio_max']:.2f}; target <= {TARGET} (CPU, median)"
    )
    verdict = "meets" if result["ratio_median"] <= TARGET else "MISSES"
    print(
        f"headline: clinotel/SDK = {result['ratio_median']:.2f} CPU, {result['wall_ratio_median']:.2f} wall "
        f"({verdict} target {TARGET}); SDK by hand {result['sdk_us_per_workflow_median']:.0f} µs per workflow today"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if not like_for_like:
        print("the two sides did not write the same spans and attributes: the ratio compares unlike work")
    return 0 if exported_ok and like_for_like else 1


if __name__ == "__main__":
    sys.exit(main())
