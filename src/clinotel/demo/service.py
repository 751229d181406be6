"""One service of the simulated hospital, in its own OS process.

    CLINOTEL_TENANT=demo-health OTEL_SERVICE_NAME=ed-triage \\
    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 \\
      python -m clinotel.demo.service --kind triage --site north --base-ns N --summary F

Configured as a real service is, from the standard environment (`OTEL_SERVICE_NAME`,
`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_*`, `CLINOTEL_TENANT`, `CLINOTEL_PSEUDONYM_KEY`),
which `clinotel demo` sets. It runs its share of the scenario (the workflows of its kind, and site
if given, in arrival order), records their late ground truth, and writes what it exported, after
the PHI gate, as JSON. `progress N` lines on stdout drive the demo's progress bars. With
`--flagd-file`, a triage service evaluates the canary flag `triage-model-v4` per workflow through
OpenFeature's flagd provider reading that file, and the model follows the flag; with `--stepped`,
the demo advances it stretch by stretch (stdin commands), so the alert evaluator can switch the
flag between stretches and the later workflows follow.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import clinotel.instrumentation as ct
from clinotel.demo.flagread import FlagReader
from clinotel.demo.hospital import SimClock, record_truths, run_workflow
from clinotel.demo.scenario import FLAG_KEY, SITES, TENANT, Scenario, WorkflowPlan, plan, replan
from clinotel.demo.summary import Summariser

__all__ = ["SERVICES", "ServiceSpec", "Stretches", "Tee", "main"]

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


def _flagged(scenario: Scenario, p: WorkflowPlan, flags: FlagReader | None) -> WorkflowPlan:
    """`p` as the flag file decides it: the canary flag evaluated through OpenFeature (file mode)
    for the workflow's site; the model it chooses, the variant and the reason recorded."""
    if flags is None or p.flag_variant is None:
        return p
    result = flags.evaluate({"site": p.site, "workflow_kind": p.kind})
    if result.value != (p.flag_variant == "on"):
        p = replan(scenario, p, flag_on=result.value)
    p.flag_variant = result.variant or ("on" if result.value else "off")
    p.flag_reason = result.reason
    return p


class Stretches:
    """The service's share of the scenario, run stretch by stretch of simulated time: each
    stretch's workflows, then their late ground truth, then a flush, so the collector holds
    everything up to the stretch's end when the service says so."""

    def __init__(self, scenario: Scenario, spec: ServiceSpec, clock: SimClock, flags: FlagReader | None) -> None:
        self.scenario = scenario
        self.clock = clock
        self.flags = flags
        self.plans = (p for p in plan(scenario) if spec.runs(p))
        self.next: WorkflowPlan | None = next(self.plans, None)
        self.done = 0

    def run(self, until_ms: float, telemetry: ct.Telemetry) -> bool:
        """Every workflow arriving before `until_ms`; whether the exporter flushed."""
        truths = []
        while self.next is not None and self.next.offset_ms < until_ms:
            truth = run_workflow(_flagged(self.scenario, self.next, self.flags), self.clock)
            if truth is not None:
                truths.append(truth)
            self.done += 1
            if self.done % PROGRESS_EVERY == 0:
                print(f"progress {self.done}", flush=True)
            self.next = next(self.plans, None)
        print(f"progress {self.done}", flush=True)
        record_truths(truths, self.clock)
        return telemetry.force_flush()


def _follow(flags: FlagReader | None, site: str | None, variant: str) -> str:
    """Wait until the flag serves `variant` at this service's site; how long it took (ms)."""
    if flags is None or site is None:
        return "followed 0"
    started = time.monotonic()
    flags.wait({"site": site, "workflow_kind": "triage"}, lambda r: r.variant == variant)
    return f"followed {(time.monotonic() - started) * 1000:.0f}"


def _is_time(text: str) -> bool:
    """A stretch's end: simulated milliseconds (a number, or `inf` for the rest)."""
    try:
        return float(text) >= 0
    except ValueError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clinotel.demo.service", description=__doc__.split("\n")[0])
    parser.add_argument("--kind", choices=("triage", "scheduling"), required=True)
    parser.add_argument("--site", choices=SITES)
    parser.add_argument("--workflows", type=int, default=20_000, help="the whole scenario's workflows")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--hours", type=float, default=12.0)
    parser.add_argument("--base-ns", type=int, required=True, help="the simulation's start (ns since the epoch)")
    parser.add_argument("--summary", type=Path, required=True, help="where to write what was exported (JSON)")
    parser.add_argument("--flagd-file", type=Path, help="evaluate the canary flag in this flagd file (OpenFeature)")
    parser.add_argument(
        "--stepped", action="store_true",
        help="take commands on stdin: `run MS` (the workflows before MS, then `at MS`), `follow VARIANT` "
        "(wait until the flag serves it here, then `followed MS`), `end`",
    )  # fmt: skip
    parser.add_argument("--no-incidents", action="store_true", help="a clean hospital: none of the incidents")
    args = parser.parse_args(argv)

    scenario = Scenario(workflows=args.workflows, seed=args.seed, hours=args.hours)
    if args.no_incidents:
        scenario = dataclasses.replace(scenario, incidents=())
    spec = ServiceSpec("", "", args.kind, args.site)
    clock = SimClock(args.base_ns)
    summariser = Summariser()
    telemetry = ct.configure(
        exporter=Tee(SummaryExporter(summariser), ct.otlp_exporter()), set_global=False, clock=clock
    )
    wants_flags = args.flagd_file is not None and args.kind == "triage"
    flags = FlagReader(args.flagd_file, FLAG_KEY, tenant=TENANT) if wants_flags else None
    flushed = True
    try:
        if flags is not None:
            flags.ready({"site": args.site or "", "workflow_kind": args.kind})
        stretches = Stretches(scenario, spec, clock, flags)
        commands = sys.stdin if args.stepped else iter(("run inf", "end"))
        for line in commands:
            word, _, value = line.strip().partition(" ")
            if word == "run" and _is_time(value):
                flushed = stretches.run(float(value), telemetry) and flushed
                print(f"at {value}", flush=True)
            elif word == "follow" and value:
                print(_follow(flags, args.site, value), flush=True)
            elif word == "end":
                break
            else:
                print(f"unknown command {line.strip()[:80]!r}: run MS, follow VARIANT or end", file=sys.stderr)
                return 2
        if stretches.next is not None:
            print("stopped before the scenario's end", file=sys.stderr, flush=True)
            return 1
    finally:
        if flags is not None:
            flags.close()
    flushed = telemetry.force_flush() and flushed
    telemetry.shutdown()
    summary = summariser.result(telemetry.dropped())
    args.summary.write_text(json.dumps(summary.to_json()), encoding="utf-8")
    return 0 if flushed else 1


if __name__ == "__main__":
    sys.exit(main())
