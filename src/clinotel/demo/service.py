"""One service of the simulated hospital, in its own OS process.

    CLINOTEL_TENANT=demo-health OTEL_SERVICE_NAME=ed-triage \\
    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 \\
      python -m clinotel.demo.service --kind triage --site north --base-ns N --summary F

Configured as a real service is, from the standard environment (`OTEL_SERVICE_NAME`,
`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_*`, `CLINOTEL_TENANT`, `CLINOTEL_PSEUDONYM_KEY`),
which `clinotel demo` sets. It runs its share of the scenario (the workflows of its kind, and site
if given, in arrival order), records their late ground truth, and writes what it exported, after
the PHI gate, as JSON. `progress N` lines on stdout drive the demo's progress bars.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import clinotel.instrumentation as ct
from clinotel.demo.hospital import SimClock, record_truths, run_workflow
from clinotel.demo.scenario import SITES, Scenario, WorkflowPlan, plan
from clinotel.demo.summary import Summariser

__all__ = ["SERVICES", "ServiceSpec", "Tee", "main"]

PROGRESS_EVERY = 100


@dataclass(frozen=True)
class ServiceSpec:
    """A service of the hospital: its name, instance, and which workflows it runs."""

    name: str
    instance: str
    kind: str
    site: str | None = None

    def runs(self, p: WorkflowPlan) -> bool:
        return p.kind == self.kind and (self.site is None or p.site == self.site)

    def argv(self) -> list[str]:
        return ["--kind", self.kind] + (["--site", self.site] if self.site else [])


SERVICES: tuple[ServiceSpec, ...] = (
    *(ServiceSpec("ed-triage", f"ed-triage-{site}", "triage", site) for site in SITES),
    ServiceSpec("appointment-scheduling", "scheduling-1", "scheduling"),
)
"""Emergency triage, deployed per site (the canary runs at one), and one scheduling service."""


class Tee(SpanExporter):
    """Every batch to each exporter; the result is the last one's (the OTLP exporter)."""

    def __init__(self, *exporters: SpanExporter) -> None:
        self.exporters = exporters

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = SpanExportResult.SUCCESS
        for e in self.exporters:
            result = e.export(spans)
        return result

    def shutdown(self) -> None:
        for e in self.exporters:
            e.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all(e.force_flush(timeout_millis) for e in self.exporters)


class SummaryExporter(SpanExporter):
    """Feeds exported spans (after the PHI gate) to a Summariser."""

    def __init__(self, summariser: Summariser) -> None:
        self.summariser = summariser

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            self.summariser.add(span)
        return SpanExportResult.SUCCESS


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clinotel.demo.service", description=__doc__.split("\n")[0])
    parser.add_argument("--kind", choices=("triage", "scheduling"), required=True)
    parser.add_argument("--site", choices=SITES)
    parser.add_argument("--workflows", type=int, default=20_000, help="the whole scenario's workflows")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--hours", type=float, default=12.0)
    parser.add_argument("--base-ns", type=int, required=True, help="the simulation's start (ns since the epoch)")
    parser.add_argument("--summary", type=Path, required=True, help="where to write what was exported (JSON)")
    args = parser.parse_args(argv)

    scenario = Scenario(workflows=args.workflows, seed=args.seed, hours=args.hours)
    spec = ServiceSpec("", "", args.kind, args.site)
    clock = SimClock(args.base_ns)
    summariser = Summariser()
    telemetry = ct.configure(
        exporter=Tee(SummaryExporter(summariser), ct.otlp_exporter()), set_global=False, clock=clock
    )
    truths = []
    done = 0
    for p in plan(scenario):
        if not spec.runs(p):
            continue
        truth = run_workflow(p, clock)
        if truth is not None:
            truths.append(truth)
        done += 1
        if done % PROGRESS_EVERY == 0:
            print(f"progress {done}", flush=True)
    print(f"progress {done}", flush=True)
    record_truths(truths, clock)
    print(f"truths {len(truths)}", flush=True)
    flushed = telemetry.force_flush()
    telemetry.shutdown()
    summary = summariser.result(telemetry.dropped())
    args.summary.write_text(json.dumps(summary.to_json()), encoding="utf-8")
    return 0 if flushed else 1


if __name__ == "__main__":
    sys.exit(main())
