"""`clinotel demo`: the simulated hospital, end to end.

Today it runs the hospital through clinotel.instrumentation and its PHI gate and summarises the
exported telemetry. The collector, dashboards and alerts join this command as they are built.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import click
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

import clinotel.instrumentation as ct
from clinotel.demo.hospital import SimClock, record_truths, run_workflow
from clinotel.demo.scenario import INCIDENTS, PHASES, SITES, Scenario, plan
from clinotel.demo.summary import DemoSummary, Summariser, disparity, rate

__all__ = ["demo"]

DEMO_PSEUDONYM_KEY = "clinotel-demo-key-do-not-use-in-production"


class _SummaryExporter(SpanExporter):
    def __init__(self, summariser: Summariser) -> None:
        self.summariser = summariser

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            self.summariser.add(span)
        return SpanExportResult.SUCCESS


@click.command()
@click.option("--workflows", "-n", default=20_000, show_default=True, help="Workflow instances to simulate.")
@click.option("--seed", default=7, show_default=True, help="Same seed, same figures.")
@click.option("--hours", default=12.0, show_default=True, help="Simulated hospital time.")
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("clinotel-demo"), show_default=True
)
def demo(workflows: int, seed: int, hours: float, out: Path) -> None:
    """Run a simulated hospital (ED triage and scheduling at three sites) end to end.

    Shadow mode, then recommendation, then a canary of triage model v4 at one site behind a
    feature flag; a model outage, an EHR timeout spike and a biased canary model; clinician
    overrides with coded reasons and late ground truth. Every workflow is recorded through
    clinotel.instrumentation and its PHI gate, exactly as a hospital service would record it.

    Not yet part of the demo (their issues are open): the OTLP collector into ClickHouse, the
    Grafana dashboards, alert evaluation and paging, the HTML report.
    """
    console = Console()
    scenario = Scenario(workflows=workflows, seed=seed, hours=hours)
    summariser = Summariser()
    clock = SimClock(base_ns=time.time_ns() - scenario.window_ns)
    telemetry = ct.configure(
        service_name="clinotel-demo-hospital",
        tenant="demo-health",
        environment="demo",
        pseudonym_key=DEMO_PSEUDONYM_KEY,
        exporter=_SummaryExporter(summariser),
        batch=False,
        set_global=False,
        clock=clock,
    )
    console.print(
        f"[bold]clinotel demo[/] · {workflows:,} workflows · {hours:g} simulated hours · "
        f"sites {', '.join(SITES)} · seed {seed}"
    )
    for phase in PHASES:
        console.print(f"  phase [cyan]{phase.name:<10}[/] {phase.start:>4.0%} → {phase.end:.0%} of the window")
    for incident in INCIDENTS:
        console.print(
            f"  incident [red]{incident.name:<13}[/] {incident.start:>4.0%} → {incident.end:.0%}: "
            f"{incident.description}"
        )

    started = time.perf_counter()
    truths = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("workflows", total=workflows)
        for i, p in enumerate(plan(scenario)):
            truth = run_workflow(p, clock)
            if truth is not None:
                truths.append(truth)
            if i % 200 == 0:
                progress.update(task, completed=i)
        progress.update(task, completed=workflows)
        t2 = progress.add_task("late ground truth", total=len(truths))
        record_truths(truths, clock)
        progress.update(t2, completed=len(truths))
    elapsed = time.perf_counter() - started
    telemetry.shutdown()
    summary = summariser.result(telemetry.dropped())

    _print(console, summary, elapsed)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "summary.json"
    path.write_text(json.dumps(_as_json(summary, scenario, elapsed), indent=2) + "\n", encoding="utf-8")
    console.print(f"\nwrote [bold]{path}[/]")
    console.print(
        "[dim]Next in the demo as their issues land: OTLP into the embedded ClickHouse collector, "
        "Grafana dashboards, alerts paged through Alertmanager, and the HTML report.[/]"
    )


def _print(console: Console, s: DemoSummary, elapsed: float) -> None:
    total = sum(s.workflows.values())
    console.print(
        f"\n[bold]{total:,}[/] workflows ({', '.join(f'{k} {v:,}' for k, v in sorted(s.workflows.items()))}), "
        f"[bold]{s.spans:,}[/] spans exported in {elapsed:.1f} s ({s.spans / elapsed:,.0f} spans/s)"
    )
    stages = Table(title="Stage latency (simulated time)", title_justify="left")
    for col in ("stage", "spans", "p50", "p95", "p99"):
        stages.add_column(col, justify="right" if col != "stage" else "left")
    for stage in ("ingest", "queue", "decide", "review", "act", "complete"):
        values = s.stage_ms.get(stage, [])
        stages.add_row(stage, f"{len(values):,}", *(_ms(s.percentile(stage, q)) for q in (0.5, 0.95, 0.99)))
    console.print(stages)

    safety = Table(title="Triage model: overrides and under-triage (ground truth joined by pseudonym)")
    for col in ("rollout cohort", "reviews", "override rate", "under-triage en", "under-triage es", "es / en"):
        safety.add_column(col, justify="right" if col != "rollout cohort" else "left")
    for cohort in ("baseline", "canary"):
        rate_o, n = s.override_rate(cohort)
        en = s.under_triage.get((cohort, "en"), [0, 0])
        es = s.under_triage.get((cohort, "es"), [0, 0])
        ratio, _, _ = disparity(s, cohort, "es", "en")
        flag = "" if ratio is None or 0.8 <= ratio <= 1.25 else " [red]outside 0.8–1.25[/]"
        safety.add_row(
            cohort,
            f"{n:,}",
            f"{rate_o:.1%}",
            f"{rate(en):.1%} (n={en[1]:,})",
            f"{rate(es):.1%} (n={es[1]:,})",
            ("—" if ratio is None else f"{ratio:.2f}") + flag,
        )
    console.print(safety)

    incidents = Table(title="Incidents as the telemetry saw them")
    incidents.add_column("signal")
    incidents.add_column("count", justify="right")
    for reason, n in sorted(s.fallbacks.items()):
        incidents.add_row(f"fallback decisions ({reason})", f"{n:,}")
    for stage, n in sorted(s.errors.items()):
        incidents.add_row(f"{stage} spans ending in error", f"{n:,}")
    incidents.add_row("late outcomes recorded / joined to a model decision", f"{s.outcomes:,} / {s.outcomes_joined:,}")
    incidents.add_row("exception messages and stack traces with PHI redacted", f"{s.redacted_strings:,}")
    for reason, n in sorted(s.dropped.items()):
        if n:
            incidents.add_row(f"clinotel dropped or redacted ({reason})", f"{n:,}")
    console.print(incidents)


def _ms(v: float | None) -> str:
    if v is None:
        return "—"
    if v >= 60_000:
        return f"{v / 60_000:.1f} min"
    if v >= 1000:
        return f"{v / 1000:.1f} s"
    return f"{v:.0f} ms"


def _as_json(s: DemoSummary, scenario: Scenario, elapsed: float) -> dict[str, object]:
    return {
        "scenario": {"workflows": scenario.workflows, "seed": scenario.seed, "hours": scenario.hours},
        "elapsed_s": round(elapsed, 2),
        "workflows": dict(s.workflows),
        "spans": s.spans,
        "stage_latency_ms": {
            st: {f"p{int(q * 100)}": s.percentile(st, q) for q in (0.5, 0.95, 0.99)} for st in s.stage_ms
        },
        "override_rate": {c: s.override_rate(c)[0] for c in ("baseline", "canary")},
        "under_triage": {f"{c}/{lang}": {"under": v[0], "n": v[1]} for (c, lang), v in sorted(s.under_triage.items())},
        "fallbacks": dict(s.fallbacks),
        "errors": dict(s.errors),
        "outcomes": s.outcomes,
        "outcomes_joined": s.outcomes_joined,
        "redacted_exception_messages": s.redacted_strings,
        "clinotel_dropped": s.dropped,
    }
