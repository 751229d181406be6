"""`clinotel demo`: the simulated hospital, end to end.

The hospital's services run as separate processes, record through clinotel.instrumentation and
its PHI gate and export real OTLP into the embedded collector; then the dashboards are built and
every panel is run, the report is written, and the alert rules are replayed over the simulated
hours and paged.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from clinotel.demo.scenario import INCIDENTS, PHASES, SITES, TENANT, Scenario, plan
from clinotel.demo.summary import DemoSummary, disparity, rate
from clinotel.model.tables import DEFAULT_DATABASE
from clinotel.model.terminal import printable

if TYPE_CHECKING:  # `clinotel --help` imports this module: the collector is imported when the demo runs
    from clinotel.demo.pipeline import AlertReplay, Delivered
    from clinotel.demo.service import ServiceSpec

__all__ = ["demo"]

DEMO_PSEUDONYM_KEY = "clinotel-demo-key-do-not-use-in-production"
MARKER = ".clinotel-demo"
"""In OUT: the store and log a demo run created, so `--force` replaces those and nothing else."""


def _is_empty(path: Path) -> bool:
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


def _fresh_store(out: Path, data_dir: Path, wal_dir: Path, force: bool) -> None:
    """Each run starts from an empty store, so one seed gives one set of figures: a store left by
    an earlier run is refused, or with `--force` removed when that run was a demo's (OUT's marker
    names it); any other store is never touched."""
    from clinotel.collector.store.embedded import holder_pid

    if _is_empty(data_dir) and _is_empty(wal_dir):
        return
    held = holder_pid(data_dir) if data_dir.is_dir() else None
    if held is not None:
        raise click.ClickException(f"{data_dir} is in use by process {held}: stop it, or choose another --out")
    if not force:
        raise click.ClickException(
            f"{data_dir} already holds a store (an earlier run?): the demo starts from an empty store, so that one "
            "seed gives one set of figures; give --force to replace the earlier demo's store, or another --out"
        )
    try:
        marker = json.loads((out / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        marker = {}
    ours = {marker.get("data_dir"), marker.get("wal_dir")} if isinstance(marker, dict) else set()
    for path in (data_dir, wal_dir):
        if not _is_empty(path) and str(path) not in ours:
            raise click.ClickException(
                f"{path} was not created by a demo run into {out} (its {MARKER} does not name it): clinotel does not "
                "delete a store it did not create; remove it yourself or choose another --out or --data-dir"
            )
    for path in (data_dir, wal_dir):
        shutil.rmtree(path, ignore_errors=False) if path.is_dir() else path.unlink(missing_ok=True)


@click.command()
@click.option(
    "--workflows", "-n", type=click.IntRange(min=1), default=20_000, show_default=True,
    help="Workflow instances to simulate.",
)  # fmt: skip
@click.option("--seed", default=7, show_default=True, help="Same seed, same figures.")
@click.option(
    "--hours", type=click.FloatRange(min=0, min_open=True, max=24 * 365), default=12.0, show_default=True,
    help="Simulated hospital time.",
)  # fmt: skip
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("clinotel-demo"), show_default=True
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The embedded store's directory [default: OUT/data]; the log goes beside it.",
)
@click.option(
    "--alert-step-min", type=click.IntRange(min=1), default=10, show_default=True,
    help="Simulated minutes between alert evaluations.",
)  # fmt: skip
@click.option("--force", is_flag=True, help="Replace the store an earlier demo run left in OUT.")
@click.option(
    "--no-incidents", is_flag=True,
    help="A clean hospital: the same rollout without the model outage, the EHR timeout spike and the biased "
    "canary (what a clean dataset makes the alert rules do).",
)  # fmt: skip
def demo(
    workflows: int, seed: int, hours: float, out: Path, data_dir: Path | None, alert_step_min: int, force: bool,
    no_incidents: bool,
) -> None:  # fmt: skip
    """Run a simulated hospital (ED triage and scheduling at three sites) end to end.

    Shadow mode, then recommendation, then a canary of triage model v4 at one site behind a
    feature flag; a model outage, an EHR timeout spike and a biased canary model; clinician
    overrides with coded reasons and late ground truth.

    The hospital's services (ED triage at each site, appointment scheduling) run as separate OS
    processes, each recording its workflows through clinotel.instrumentation and its PHI gate and
    exporting OTLP/HTTP into the embedded collector (ClickHouse under OUT/data). Then the Grafana
    dashboards are built (OUT/grafana) and every panel is run, the HTML report is written
    (OUT/report.html), and the alert rules are replayed over the simulated hours, paging through a
    Prometheus Alertmanager on loopback when one is installed, else a local webhook sink.
    """
    from clinotel.collector.cli import exit_if_store_lost
    from clinotel.collector.store.embedded import default_wal_dir
    from clinotel.demo.flags import FLAGD_FILE, write_flagd_file
    from clinotel.demo.pipeline import sim_range, start_collector

    console = Console()
    scenario = Scenario(workflows=workflows, seed=seed, hours=hours, incidents=() if no_incidents else INCIDENTS)
    if out.exists() and not out.is_dir():
        raise click.BadParameter(f"{out} is not a directory", param_hint="--out")
    store = (data_dir if data_dir is not None else out / "data").resolve()
    wal = default_wal_dir(store, None, DEFAULT_DATABASE)
    _fresh_store(out, store, wal, force)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(json.dumps({"data_dir": str(store), "wal_dir": str(wal)}) + "\n", encoding="utf-8")
    collector = start_collector(store, wal)
    assert collector.http is not None
    base_ns = time.time_ns() - scenario.window_ns
    console.print(
        f"[bold]clinotel demo[/] · {workflows:,} workflows · {hours:g} simulated hours · "
        f"sites {', '.join(SITES)} · seed {seed}"
    )
    for phase in PHASES:
        console.print(f"  phase [cyan]{phase.name:<10}[/] {phase.start:>4.0%} → {phase.end:.0%} of the window")
    if not scenario.incidents:
        console.print("  [green]no incidents[/]: a clean hospital (--no-incidents)")
    for incident in scenario.incidents:
        console.print(
            f"  incident [red]{incident.name:<13}[/] {incident.start:>4.0%} → {incident.end:.0%}: "
            f"{incident.description}"
        )

    flagd_file = write_flagd_file(out / FLAGD_FILE)
    span = sim_range(base_ns, scenario.window_ns)
    try:
        sim = _simulate(console, scenario, collector, base_ns, out, span, timedelta(minutes=alert_step_min), flagd_file)
        stored = _stored_by_service(collector)
        workflows_stored = _workflows_stored(collector)
        _print(console, sim.summary, sim.services_s)
        _print_services(console, stored)
        back = _back_end(console, collector, out, span, sim, flagd_file)
    finally:
        collector.stop()
        exit_if_store_lost(collector)
    path = out / "summary.json"
    record = {
        **_as_json(sim.summary, scenario, sim.services_s), "services": stored, "workflows_stored": workflows_stored,
        **back,
    }  # fmt: skip
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    console.print(f"\nwrote [bold]{path}[/]")


@dataclass
class Simulation:
    """What the simulated hours produced: the services' merged figures, their run time (without
    the alert evaluations between stretches), the alerts, and how long the services took to
    follow each switch."""

    summary: DemoSummary
    services_s: float
    replay: AlertReplay
    alertmanager: bool
    deliveries: list[dict[str, Any]]
    followed_ms: list[float] = field(default_factory=list)


class _Service:
    """A service process driven stretch by stretch over stdin (`python -m clinotel.demo.service --stepped`)."""

    def __init__(self, spec: ServiceSpec, proc: subprocess.Popen[str], log: IO[str], progress: Progress, task: TaskID):
        self.spec = spec
        self.proc = proc
        self.log = log
        self.replies: queue.Queue[str | None] = queue.Queue()
        self.reader = threading.Thread(target=self._read, args=(progress, task), daemon=True)
        self.reader.start()

    def _read(self, progress: Progress, task: TaskID) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            word, _, number = line.strip().partition(" ")
            if word == "progress":
                progress.update(task, completed=int(number))
            else:
                self.replies.put(line.strip())
        self.replies.put(None)

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        except OSError:
            pass  # it exited: `reply` says so

    def reply(self, word: str, logs: Path) -> str:
        """The service's answer to the last command (`word ...`); ClickException when it died."""
        try:
            line = self.replies.get(timeout=_REPLY_S)
        except queue.Empty:
            raise click.ClickException(
                f"{self.spec.instance} did not answer within {_REPLY_S:g} s; see {logs / (self.spec.instance + '.log')}"
            ) from None
        if line is None or not line.startswith(word + " "):
            code = self.proc.wait()
            raise click.ClickException(
                f"{self.spec.instance} exited with {code}; see {logs / (self.spec.instance + '.log')}"
            )
        return line.partition(" ")[2]


_REPLY_S: Final = 600.0
"""The longest a service may take over one stretch (a hang guard)."""


def _in_scope(spec: ServiceSpec, scope: dict[str, str]) -> bool:
    place = {"site": spec.site, "workflow_kind": spec.kind}
    return spec.kind == "triage" and all(place.get(k) == v for k, v in scope.items())


def _simulate(
    console: Console, scenario: Scenario, collector: Any, base_ns: int, out: Path, span: tuple[datetime, datetime],
    step: timedelta, flagd_file: Path,
) -> Simulation:  # fmt: skip
    """The services (one process each, exporting to the collector) and the alert evaluator, in
    step over the simulated hours. Until the canary starts the services run in one stretch (no
    flag is on anywhere, so no switch could change a decision); through the canary they run one
    evaluation step at a time and the rules are evaluated on what the collector stored; once a
    rule's kill switch has rewritten the flag file and the services in its scope follow it, they
    run to the end, and the evaluations finish."""
    from clinotel.alerts.local_alertmanager import LocalAlertmanager, find_binary
    from clinotel.demo.pipeline import AlertReplayer, PageSink
    from clinotel.demo.service import SERVICES

    endpoint = f"http://127.0.0.1:{collector.http.port}"
    _record_changes(scenario, endpoint, base_ns)
    share = Counter(next(i for i, spec in enumerate(SERVICES) if spec.runs(p)) for p in plan(scenario))
    logs = out / "services"
    logs.mkdir(parents=True, exist_ok=True)
    start, end = span
    times = [start + k * step for k in range(int((end - start) / step) + 1)]
    canary_ms = next(p.start for p in PHASES if p.canary) * scenario.window_ns / 1e6
    sink = PageSink()
    binary = find_binary()
    am = LocalAlertmanager(binary, f"{sink.url}/am", out / "alertmanager") if binary else None
    columns = (TextColumn("{task.description:<24}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    services: list[_Service] = []
    evaluating_s = 0.0
    followed: list[float] = []
    started = time.perf_counter()
    try:
        if am is not None:
            am.start()
        replayer = AlertReplayer(collector, sink, am.url if am else None, flagd_file)
        with Progress(*columns, console=console, transient=False) as progress:
            for i, spec in enumerate(SERVICES):
                task = progress.add_task(f"{spec.instance} (pid …)", total=share[i])
                proc, log = _start_service(spec, scenario, endpoint, base_ns, logs, share[i], flagd_file)
                progress.update(task, description=f"{spec.instance} (pid {proc.pid})")
                services.append(_Service(spec, proc, log, progress, task))
            evaluations = progress.add_task("alert evaluations", total=len(times))
            position = 0.0
            switched = False

            def advance(target: float) -> None:
                for s in services:
                    s.send(f"run {target}")
                for s in services:
                    s.reply("at", logs)
                collector.writer.drain()

            try:
                for t in times:
                    offset = (t - start).total_seconds() * 1000
                    target = math.inf if switched else max(offset, canary_ms)
                    if target > position:
                        advance(target)
                        position = target
                    began = time.perf_counter()
                    actions = replayer.evaluate(t)
                    evaluating_s += time.perf_counter() - began
                    progress.advance(evaluations)
                    for rule, _, result, _ in actions:
                        action = replayer.action_of(rule)
                        if action is None or result != "applied":
                            continue
                        switched = True
                        following = [s for s in services if _in_scope(s.spec, action.scope)]
                        for s in following:
                            s.send(f"follow {action.variant}")
                        followed += [float(s.reply("followed", logs)) for s in following]
                if position < math.inf:
                    advance(math.inf)
                for s in services:
                    s.send("end")
            finally:
                replayer.close()
                failed = []
                for s in services:
                    if s.proc.stdin is not None:
                        with contextlib.suppress(OSError):
                            s.proc.stdin.close()  # after `end`; or on an error, EOF stops the service
                for s in services:
                    try:
                        code = s.proc.wait(timeout=_REPLY_S)
                    except subprocess.TimeoutExpired:
                        s.proc.kill()
                        code = s.proc.wait()
                    s.reader.join()
                    s.log.close()
                    if code != 0:
                        failed.append(f"{s.spec.instance} exited with {code}; see {logs / (s.spec.instance + '.log')}")
            if failed:
                raise click.ClickException("; ".join(failed))
            stored = progress.add_task("stored in ClickHouse", total=1)
            collector.writer.drain()
            if collector.recorder is not None:
                collector.recorder.record()
            if collector.rollups is not None:
                collector.rollups.refresh_once(full=True)  # the dashboards' hourly rollup, now
            progress.update(stored, completed=1)
        services_s = time.perf_counter() - started - evaluating_s
        if am is not None:
            time.sleep(3)  # Alertmanager's group_wait, then its webhook delivery
    finally:
        if am is not None:
            am.stop()
        sink.close()
    summary = DemoSummary()
    for spec in SERVICES:
        summary.merge(DemoSummary.from_json(json.loads((logs / f"{spec.instance}.json").read_text())))
    return Simulation(summary, services_s, replayer.replay, am is not None, list(sink.deliveries), followed)


def _start_service(
    spec: ServiceSpec, scenario: Scenario, endpoint: str, base_ns: int, logs: Path, share: int, flagd_file: Path
) -> tuple[subprocess.Popen[str], IO[str]]:
    """The service's process, configured from the standard environment as a real one is."""
    env = {
        **os.environ,
        "OTEL_SERVICE_NAME": spec.name,
        "OTEL_RESOURCE_ATTRIBUTES": f"service.instance.id={spec.instance},deployment.environment.name=demo",
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        # the simulation outruns real time: a queue that holds the whole run, so no span is dropped
        "OTEL_BSP_MAX_QUEUE_SIZE": str(max(2048, share * 12)),
        "CLINOTEL_TENANT": TENANT,
        "CLINOTEL_PSEUDONYM_KEY": DEMO_PSEUDONYM_KEY,
    }
    argv = [sys.executable, "-m", "clinotel.demo.service", *spec.argv(), "--workflows",
            str(scenario.workflows), "--seed", str(scenario.seed), "--hours", str(scenario.hours),
            "--base-ns", str(base_ns), "--summary", str(logs / f"{spec.instance}.json"), "--stepped",
            "--flagd-file", str(flagd_file), *([] if scenario.incidents else ["--no-incidents"])]  # fmt: skip
    log = (logs / f"{spec.instance}.log").open("w", encoding="utf-8")
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, env=env, bufsize=1
    )
    return proc, log


def _record_changes(scenario: Scenario, endpoint: str, base_ns: int) -> None:
    """The hospital's pipelines record their changes as `clinotel changes add` does, over OTLP."""
    from datetime import UTC, datetime

    from clinotel.demo.scenario import CHANGES
    from clinotel.instrumentation.changes import ChangeSpec, send_changes

    specs = [
        ChangeSpec(c.kind, c.name, c.version, c.actor, dict(c.scope),
                   at=datetime.fromtimestamp((base_ns + c.at * scenario.window_ns) / 1e9, UTC))
        for c in CHANGES
    ]  # fmt: skip
    send_changes(specs, endpoint=endpoint, tenant=TENANT, service="clinotel-demo-pipeline")


def _stored_by_service(collector: Any) -> dict[str, dict[str, object]]:
    """Spans stored per service instance, as the collector received them (the pipelines' change
    events are not a service's; the SDK's health spans, one per export batch with something to
    report, are left out as the summary leaves them out)."""
    from clinotel.collector.store import schema
    from clinotel.semconv import attributes as A

    rows = collector.client.query(
        f"SELECT ResourceAttributes['service.instance.id'] AS instance, any(ServiceName), count() "
        f"FROM {collector.options.name(schema.TRACES)} "
        f"WHERE SpanName NOT IN ('{A.CHANGE_SPAN_NAME}', '{A.HEALTH_SPAN_NAME}') "
        "GROUP BY instance ORDER BY instance"
    ).result_rows
    return {str(instance): {"service": str(name), "spans_stored": int(n)} for instance, name, n in rows}


def _workflows_stored(collector: Any) -> int:
    """Workflow instances in the store (what the report counts)."""
    from clinotel.model import clinical

    return int(collector.client.command(f"SELECT count() FROM {collector.options.name(clinical.WORKFLOWS)} FINAL"))


def _print_services(console: Console, stored: dict[str, dict[str, object]]) -> None:
    table = Table(title="Services (one OS process each) and the spans the collector stored from them")
    for col in ("service.instance.id", "service.name", "spans stored"):
        table.add_column(col, justify="right" if col == "spans stored" else "left")
    for instance, row in stored.items():
        table.add_row(instance, str(row["service"]), f"{row['spans_stored']:,}")
    console.print(table)


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


def _back_end(
    console: Console, collector: Any, out: Path, span: tuple[datetime, datetime], sim: Simulation, flagd_file: Path
) -> dict[str, Any]:
    """Dashboards built and checked, what the alerts and the kill switch did, the report."""
    from clinotel.alerts.config import AlertingConfig
    from clinotel.alerts.wiring import load_rules
    from clinotel.dashboards import build_all
    from clinotel.dashboards.check import panel_queries, run
    from clinotel.dashboards.macros import TimeRange
    from clinotel.dashboards.provisioning import write as write_dashboards
    from clinotel.dashboards.report import render
    from clinotel.demo.flags import INVENTORY_FILE, write_inventory
    from clinotel.demo.pipeline import delivered
    from clinotel.rollout.inventory import load as load_flags

    database = collector.config.database
    start, end = span
    tr = TimeRange(start, end)  # each panel's interval is Grafana's own (dashboards.interval)
    inventory = load_flags(write_inventory(out / INVENTORY_FILE, end.date()))
    flags = tuple((f.key, f.expiry) for f in inventory.flags)
    written = write_dashboards(out / "grafana", flags=flags)
    queries = list(panel_queries(build_all(database, flags)))
    results = list(run(collector.client, queries, tr))
    failed = [r for r in results if r.error]
    empty = [r for r in results if not r.error and r.rows == 0]
    console.print(
        f"\n[bold]Dashboards[/]: {len(written) - 2} dashboards, {len(results)} panel queries run: "
        f"{len(results) - len(failed) - len(empty)} with rows, {len(empty)} empty, {len(failed)} failed"
    )
    for r in failed + empty:
        said = printable(f"{r.query.dashboard} / {r.query.panel}: {r.error or 'no rows'}")
        console.print(f"  [yellow]{escape(said)}[/]")

    replay = sim.replay
    alerts = Table(title=f"Alerts evaluated over the simulated hours ({replay.evaluations} evaluations)")
    for col in ("rule", "first fired", "resolved"):
        alerts.add_column(col)
    for rule, when in sorted(replay.fired.items(), key=lambda kv: kv[1]):
        resolved = replay.resolved.get(rule)
        alerts.add_row(rule, f"+{_offset(start, when)}", f"+{_offset(start, resolved)}" if resolved else "still firing")
    console.print(alerts)
    tickets = delivered(sim.deliveries, "/ticket")
    if sim.alertmanager:
        relayed = delivered(sim.deliveries, "/am")
        console.print(
            f"{replay.pages} page alerts started firing and went to Prometheus Alertmanager (re-sent while "
            f"firing), which notified its webhook receiver {relayed.notifications} times "
            f"({_told(relayed, 'page')}); {replay.tickets} ticket alerts started firing: "
            f"the webhook received {_told(tickets, 'ticket')}"
        )
    else:
        console.print(
            f"{replay.pages} page and {replay.tickets} ticket alerts started firing: the local webhook sink "
            f"received {_told(tickets, 'page')} and {_told(tickets, 'ticket')} "
            "(install prometheus-alertmanager to page through it)"
        )

    switched = [
        {"rule": rule, "at": f"+{_offset(start, t)}", "switched": what, "result": result, "flagd_file": flagd_file.name}
        for rule, what, result, t in replay.actions
    ]
    for a in switched:
        console.print(
            f"[bold]Kill switch[/]: {a['rule']} fired at {a['at']} and switched {a['switched']} in "
            f"[bold]{flagd_file}[/] ({a['result']}; audited, recorded as a change event)"
        )
    if not switched:
        console.print("[yellow]Kill switch: no rule switched a flag[/]")
    recovery = _recovery(collector, replay)
    if sim.followed_ms:
        console.print(
            "  the services in its scope read the flag through OpenFeature's flagd provider (file mode) and "
            f"served the switched variant before their next stretch (waited {max(sim.followed_ms):,.0f} ms); "
            "the canary site's triage decisions after the switch: "
            + ", ".join(f"model {v} {n:,}" for v, n in sorted(recovery.get("after_switch", {}).items()))
        )
        ut = recovery.get("under_triage_after_switch", {})
        if ut:
            console.print(
                "  model under-triage after the switch (ground truth arrived): canary site "
                f"{_share(ut['canary_site'])}, the other sites {_share(ut['other_sites'])}"
            )
    rules = load_rules(AlertingConfig()).rules
    report = render(collector.client, build_all(database, flags), tr, title="clinotel demo report", database=database,
                    rules=rules)  # fmt: skip
    report_path = out / "report.html"
    report_path.write_text(report.html, encoding="utf-8")
    console.print(f"\nwrote [bold]{report_path}[/] ({report.panels} panels), [bold]{out / 'grafana'}[/] "
                  f"(Grafana provisioning), the store in [bold]{collector.config.data_dir}[/], "
                  f"the services' logs in [bold]{out / 'services'}[/]")  # fmt: skip
    return {
        "panels": {"queries": len(results), "failed": len(failed), "empty": len(empty)},
        "alerts_fired": sorted(replay.fired),
        "alerts_started": {"page": replay.pages, "ticket": replay.tickets},
        # what the webhook sink received (Alertmanager's own notifications depend on its timers: printed only)
        "alert_deliveries": {
            severity: {"firing": tickets.firing.get(severity, 0), "resolved": tickets.resolved.get(severity, 0)}
            for severity in sorted({*tickets.firing, *tickets.resolved})
        },
        "paged_through": "alertmanager" if sim.alertmanager else "webhook",
        "alert_errors": len(replay.errors),
        "kill_switch": switched,
        "recovery": recovery,
    }


def _recovery(collector: Any, replay: AlertReplay) -> dict[str, Any]:
    """After the first kill switch: the canary site's triage decisions by model version, and the
    model's under-triage there against the other sites (workflows whose ground truth arrived)."""
    from clinotel.demo.scenario import CANARY_SITE
    from clinotel.model import clinical
    from clinotel.model.indicators import INDICATORS

    applied = [t for _, _, result, t in replay.actions if result == "applied"]
    if not applied:
        return {}
    table = collector.options.name(clinical.WORKFLOWS)
    since = f"toDateTime64('{applied[0].strftime('%Y-%m-%d %H:%M:%S.%f')}', 6, 'UTC')"
    where = f"WorkflowKind = 'triage' AND StartTime >= {since}"
    versions = collector.client.query(
        f"SELECT ModelVersion, count() FROM {table} FINAL WHERE {where} AND Site = '{CANARY_SITE}' "
        "AND DecisionSource = 'model' GROUP BY ModelVersion ORDER BY ModelVersion"
    ).result_rows
    under = INDICATORS["under_triage_rate"]
    rates = collector.client.query(
        f"SELECT Site = '{CANARY_SITE}' AS canary_site, countIf(({under.where}) AND ({under.hit})), "
        f"countIf({under.where}) FROM {table} FINAL WHERE {where} GROUP BY canary_site"
    ).result_rows
    by_site = {bool(c): {"under": int(u), "n": int(n)} for c, u, n in rates}
    return {
        "after_switch": {str(v): int(n) for v, n in versions},
        "under_triage_after_switch": {
            "canary_site": by_site.get(True, {"under": 0, "n": 0}),
            "other_sites": by_site.get(False, {"under": 0, "n": 0}),
        },
    }


def _told(got: Delivered, severity: str) -> str:
    """`got`'s alerts of `severity` by status, as the sink received them."""
    return f"{got.firing.get(severity, 0)} firing and {got.resolved.get(severity, 0)} resolved {severity} alerts"


def _share(counts: dict[str, int]) -> str:
    return f"{counts['under'] / counts['n']:.1%} (n={counts['n']:,})" if counts["n"] else "— (n=0)"


def _offset(start: Any, t: Any) -> str:
    minutes = int((t - start).total_seconds() // 60)
    return f"{minutes // 60}h{minutes % 60:02d}"


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
