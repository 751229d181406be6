"""False pages and detection delay of the default alert rules, on seeded hospitals.

Runs `--runs` clean hospitals (no incident) and as many with injected incidents, each its own
tenant of one embedded store: the demo's scenario generator (`clinotel.demo.scenario`) planned
with its own seed and incidents, run through clinotel's instrumentation (`clinotel.demo.hospital`)
and sent as OTLP/HTTP to the collector, late ground truth included. The default rule pack (the
collector's own rules left out, as in the demo's replay: the collector ran for minutes, not the
simulated hours) is then evaluated over the simulated hours as it would have run live: the
canary rules every 30 s, the others every `--step-s`, each pass the real evaluator with its audit
trail, `for` and minimum samples.

Incidents in each incident run, at seeded times:
- `canary_bias`: the canary model under-triages Spanish speakers (from the canary phase on);
- `model_outage`: a fallback burst (the model unreachable for 6 % of the window);
- `model_slowdown`: a decision latency spike (the model answers in seconds, 6 % of the window).

Printed per rule: the clean runs in which it fired (for a `page` rule, false pages; a `ticket`
rule's firing pages nobody, and the headline counts the two apart), firings in incident runs that
match no incident, and per incident the runs it paged and the detection delay (first
firing after the incident began). Ground truth is in the store when the pass runs, as in the
demo's replay: live, truth arrives hours or days later and delays the ground-truth rules by
as much.

    python benchmarks/false_pages.py [--quick] [--json PATH] [--runs N] [--workflows N] [--keep DIR]

`--keep DIR` keeps the hospitals' store in DIR, and a later run with the same DIR and sizes
evaluates the rules again on it without generating anything (to compare rule settings).

Target: no false page in the clean runs, every incident paged, the delay stated.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import shutil
import statistics
import struct
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

CANARY_STEP_S = 30
KEPT = "kept.json"
EXPECTED: dict[str, dict[str, dict[str, str]]] = {
    "canary_bias": {
        "fairness_under_triage_language": {"cohort": "canary", "Language": "es"},
        "canary_kill_under_triage": {},
        # the biased canary's Spanish-speaking patients are re-triaged by the nurses: overrides rise
        "canary_kill_override_rate": {},
    },
    "model_outage": {"model_fallback": {}, "decision_latency_p95": {}},
    "model_slowdown": {"decision_latency_p95": {}},
}
"""Incident -> the rules that should fire for it (and the labels their instance must have)."""
PAGED_BY: dict[str, tuple[str, ...]] = {
    "canary_bias": ("fairness_under_triage_language", "canary_kill_under_triage", "canary_kill_override_rate"),
    "model_outage": ("model_fallback",),
    "model_slowdown": ("decision_latency_p95",),
}
"""Incident -> the rules whose firing counts as the incident paged (any of them)."""
NAMES = {"canary_bias": "bias in the canary", "model_outage": "fallback burst", "model_slowdown": "latency spike"}


@dataclass(frozen=True)
class Run:
    tenant: str
    seed: int
    incidents: tuple[tuple[str, float, float], ...]
    """(name, start, end) as fractions of the window."""


def _runs(n: int, seed: int) -> list[Run]:
    out = [Run(f"clean-{k:02d}", seed + k, ()) for k in range(n)]
    for k in range(n):
        rng = random.Random(f"incidents:{seed}:{k}")
        outage = rng.uniform(0.28, 0.45)
        slowdown = rng.uniform(0.62, 0.88)
        incidents = (("canary_bias", 0.55, 1.0), ("model_outage", outage, outage + 0.06),
                     ("model_slowdown", slowdown, slowdown + 0.06))  # fmt: skip
        out.append(Run(f"incident-{k:02d}", seed + 1000 + k, incidents))
    return out


def _generate(job: tuple[Run, int, float, int, str]) -> tuple[str, str, int]:
    """One hospital's spans, encoded as OTLP requests into a file: (tenant, file, spans)."""
    run, workflows, hours, base_ns, path = job
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import clinotel.instrumentation as ct
    from clinotel.demo.hospital import SimClock, record_truths, run_workflow
    from clinotel.demo.scenario import Incident, Scenario, plan
    from clinotel.instrumentation.testing import isolated

    incidents = tuple(Incident(name, start, end, name) for name, start, end in run.incidents)
    scenario = Scenario(workflows=workflows, seed=run.seed, hours=hours, incidents=incidents)
    exporter = InMemorySpanExporter()
    clock = SimClock(base_ns)
    with isolated():
        telemetry = ct.configure(service_name="bench-hospital", tenant=run.tenant, pseudonym_key="f" * 32,
                                 exporter=exporter, batch=False, set_global=False, clock=clock)  # fmt: skip
        record_truths([t for p in plan(scenario) if (t := run_workflow(p, clock)) is not None], clock)
        telemetry.shutdown()
    spans = exporter.get_finished_spans()
    with open(path, "wb") as f:
        for i in range(0, len(spans), 1024):
            body = encode_spans(spans[i : i + 1024]).SerializeToString()
            f.write(struct.pack("<I", len(body)) + body)
    return run.tenant, path, len(spans)


def _kept(work: Path, sizes: dict[str, Any]) -> dict[str, Any] | None:
    """What an earlier `--keep` run stored in `work`, if it was these runs."""
    try:
        kept: dict[str, Any] = json.loads((work / KEPT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return kept if all(kept.get(k) == v for k, v in sizes.items()) else None


def _send(url: str, token: str, path: str) -> None:
    data = Path(path).read_bytes()
    pos = 0
    while pos < len(data):
        (size,) = struct.unpack_from("<I", data, pos)
        body = data[pos + 4 : pos + 4 + size]
        pos += 4 + size
        request = urllib.request.Request(url, data=body, method="POST")
        request.add_header("Content-Type", "application/x-protobuf")
        request.add_header("Authorization", f"Bearer {token}")
        urllib.request.urlopen(request, timeout=120).read()


def _token(tenant: str) -> str:
    return f"bench-{tenant}-token-0123456789abcdef"


def _evaluate(client: Any, database: str, pack: Any, start: datetime, end: datetime, step_s: int) -> list[Any]:
    """Every firing (rule, labels, when) of `pack` evaluated every `step_s` from start to end."""
    from clinotel.alerts.evaluator import Evaluator
    from clinotel.alerts.paging import Outbox

    evaluator = Evaluator(client, pack, Outbox([], []), database, lease_s=None)
    fired = []
    t = start
    while t <= end:
        summary = evaluator.evaluate(t)
        if summary.errors:
            raise RuntimeError(f"evaluation failed: {summary.errors[:3]}")
        fired += [(rule, labels, t) for rule, labels, state in summary.transitions if state == "firing"]
        t += timedelta(seconds=step_s)
    return fired


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run (under a minute; figures not judged)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--runs", type=int, help="clean runs, and as many with incidents (default 20; quick 1)")
    parser.add_argument("--workflows", type=int, help="workflows per run (default 4000; quick 1000)")
    parser.add_argument("--hours", type=float, default=12.0, help="simulated hours per run")
    parser.add_argument("--step-s", type=int, help="evaluation interval of the other rules (default 300; quick 1800)")
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--keep", type=Path, help="keep the store here; reuse it when it holds the same runs")
    args = parser.parse_args(argv)
    runs_n = args.runs or (1 if args.quick else 20)
    workflows = args.workflows or (1000 if args.quick else 4000)
    step_s = args.step_s or (3600 if args.quick else 300)
    canary_step_s = 1800 if args.quick else CANARY_STEP_S
    started = time.perf_counter()

    work = args.keep or Path(tempfile.mkdtemp(prefix="clinotel-bench-pages-"))
    runs = _runs(runs_n, args.seed)
    window_s = args.hours * 3600
    sizes = {"runs": runs_n, "workflows": workflows, "hours": args.hours, "seed": args.seed}
    kept = _kept(work, sizes) if args.keep else None
    from clinotel.demo.scenario import Scenario

    # every span in the past, late truth included: the collector refuses spans dated over a day ahead
    base = datetime.fromtimestamp(Scenario(hours=args.hours).base_ns(time.time_ns()) // 10**9, UTC)
    if kept is not None:
        base, spans, generated = datetime.fromisoformat(kept["base"]), int(kept["spans"]), []
    else:
        if args.keep:
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
        base_ns = int(base.timestamp() * 1e9)
        jobs = [(r, workflows, args.hours, base_ns, str(work / f"{r.tenant}.bin")) for r in runs]
        # the hospitals are generated before the engine opens (chDB allows one per process; workers spawn)
        with multiprocessing.get_context("spawn").Pool(min(2, os.cpu_count() or 1)) as pool:
            generated = pool.map(_generate, jobs)
        spans = sum(n for _, _, n in generated)
    generate_s = time.perf_counter() - started

    from clinotel.alerts import default_rules_path
    from clinotel.alerts.rules import Kind, RulePack, load
    from clinotel.collector.service import Collector, CollectorConfig
    from clinotel.collector.tokens import Tokens
    from clinotel.demo.scenario import PHASES
    from clinotel.model import tables

    tokens = work / "tokens.toml"
    tokens.write_text("".join(f'[[token]]\ntenant = "{r.tenant}"\ntoken = "{_token(r.tenant)}"\n\n' for r in runs),
                      encoding="utf-8")  # fmt: skip
    tokens.chmod(0o600)
    config = CollectorConfig(
        data_dir=work / "data", wal_dir=work / "wal", otlp_http=("127.0.0.1", 0), otlp_grpc=None, http=None,
        tokens=Tokens.load(tokens), metrics_interval_s=None,
    )  # fmt: skip
    collector = Collector(config)
    collector.start()
    try:
        assert collector.http is not None
        assert collector.writer is not None
        url = f"http://127.0.0.1:{collector.http.port}/v1/traces"
        for tenant, path, _ in generated:
            _send(url, _token(tenant), path)
            Path(path).unlink()
        collector.writer.drain()
        if args.keep and kept is None:
            (work / KEPT).write_text(json.dumps({**sizes, "base": base.isoformat(), "spans": spans}), encoding="utf-8")
        ingest_s = time.perf_counter() - started - generate_s

        pack = load(default_rules_path())
        rules = [r for r in pack.rules if r.kind is not Kind.COLLECTOR]
        canary = RulePack(rules=tuple(r for r in rules if r.kind is Kind.CANARY))
        others = RulePack(rules=tuple(r for r in rules if r.kind is not Kind.CANARY))
        end = base + timedelta(seconds=window_s)
        client, db = collector.client, collector.config.database
        # a kept store holds the last run's audit trail, which is also the evaluator's state
        client.command(f"TRUNCATE TABLE IF EXISTS {db}.{tables.ALERT_EVENTS}")
        fired = _evaluate(client, db, others, base, end, step_s)
        # before the canary phase no row is in the canary cohort, so a canary rule has nothing to see
        canary_start = next(p.start for p in PHASES if p.canary)
        canary_from = base + timedelta(seconds=window_s * canary_start)
        fired += _evaluate(client, db, canary, canary_from, end, canary_step_s)
        evaluate_s = time.perf_counter() - started - generate_s - ingest_s
    finally:
        collector.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    result = _score(runs, rules, fired, base, window_s)
    result.update({
        "benchmark": "false_pages",
        "calibration": "none: counts of pages and detections, which do not depend on the machine's speed",
        "runs": {"clean": runs_n, "with_incidents": runs_n},
        "workflows_per_run": workflows, "simulated_hours": args.hours, "spans": spans,
        "evaluation_interval_s": {"canary rules": canary_step_s, "other rules": step_s},
        "seconds": {"generate": round(generate_s, 1), "ingest": round(ingest_s, 1), "evaluate": round(evaluate_s, 1)},
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_implementation()} "
        f"{platform.python_version()}",
    })  # fmt: skip
    _print(result, rules)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


def _score(runs: list[Run], rules: list[Any], fired: list[Any], base: datetime, window_s: float) -> dict[str, Any]:
    windows = {r.name: r.window + r.for_ for r in rules}
    per_rule: dict[str, dict[str, Any]] = {
        r.name: {"severity": r.severity, "kind": r.kind.value, "test": r.decided_by.value,
                 "confidence": r.confidence if r.decided_by.value != "none" else None,
                 "clean_runs_fired": 0, "unexpected_in_incident_runs": 0, "detections": {}}
        for r in rules
    }  # fmt: skip
    incidents: dict[str, dict[str, Any]] = {name: {"runs": 0, "paged": 0, "delays_min": []} for name in EXPECTED}
    by_tenant: dict[str, list[Any]] = {}
    for rule, labels, t in fired:
        by_tenant.setdefault(labels.get("tenant", ""), []).append((rule, labels, t))
    for run in runs:
        mine = by_tenant.get(run.tenant, [])
        if not run.incidents:
            for rule in {rule for rule, _, _ in mine}:
                per_rule[rule]["clean_runs_fired"] += 1
            continue
        matched: set[int] = set()
        for name, start_f, end_f in run.incidents:
            start = base + timedelta(seconds=start_f * window_s)
            end = base + timedelta(seconds=end_f * window_s)
            incidents[name]["runs"] += 1
            first: dict[str, datetime] = {}
            for k, (rule, labels, t) in enumerate(mine):
                want = EXPECTED[name].get(rule)
                if want is None or not all(labels.get(a) == b for a, b in want.items()):
                    continue
                if start <= t <= end + timedelta(seconds=windows[rule]):
                    matched.add(k)
                    first[rule] = min(first.get(rule, t), t)
            for rule, t in first.items():
                per_rule[rule]["detections"].setdefault(name, []).append((t - start).total_seconds() / 60)
            paged = [first[r] for r in PAGED_BY[name] if r in first]
            if paged:
                incidents[name]["paged"] += 1
                incidents[name]["delays_min"].append((min(paged) - start).total_seconds() / 60)
        for k, (rule, _, _) in enumerate(mine):
            if k not in matched:
                per_rule[rule]["unexpected_in_incident_runs"] += 1
    clean = sum(not r.incidents for r in runs)
    for figures in per_rule.values():
        figures["false_page_rate"] = figures["clean_runs_fired"] / clean if clean else None
        figures["detections"] = {
            name: {
                "runs": len(d),
                "median_delay_min": round(statistics.median(d), 1),
                "max_delay_min": round(max(d), 1),
            }
            for name, d in figures["detections"].items()
        }
    for figures in incidents.values():
        d = figures.pop("delays_min")
        figures["median_delay_min"] = round(statistics.median(d), 1) if d else None
        figures["max_delay_min"] = round(max(d), 1) if d else None
    severity = {r.name: r.severity for r in rules}
    clean_fired = [{rule for rule, _, _ in by_tenant.get(r.tenant, [])} for r in runs if not r.incidents]
    return {
        "rules": per_rule,
        "incidents": incidents,
        # a ticket is not a page: a clean run that only opened tickets did not page anyone
        "clean_runs_with_a_false_page": sum(1 for f in clean_fired if any(severity[r] == "page" for r in f)),
        "clean_runs_with_a_ticket": sum(1 for f in clean_fired if any(severity[r] != "page" for r in f)),
    }


def _print(result: dict[str, Any], rules: list[Any]) -> None:
    runs = result["runs"]["clean"]
    print(f"false pages and detection delay: {runs} clean and {runs} incident runs of {result['workflows_per_run']:,} "
          f"workflows over {result['simulated_hours']:g} simulated hours ({result['spans']:,} spans; canary rules "
          f"every {result['evaluation_interval_s']['canary rules']} s, the others every "
          f"{result['evaluation_interval_s']['other rules']} s; {result['machine']})")  # fmt: skip
    print(
        f"{'rule':<32} {'sev':<6} {'test':<10} {'clean fired':>11} {'unexpected':>10}   detected (median / max delay)"
    )
    for r in rules:
        f = result["rules"][r.name]
        test = f["test"] if f["confidence"] is None else f"{f['test']} {f['confidence'] * 100:g}%"
        detected = (
            "; ".join(
                f"{NAMES[name]} {d['runs']}/{runs} ({d['median_delay_min']:.0f} / {d['max_delay_min']:.0f} min)"
                for name, d in f["detections"].items()
            )
            or "-"
        )
        print(f"{r.name:<32} {f['severity']:<6} {test:<10} {f['clean_runs_fired']:>5}/{runs:<5} "
              f"{f['unexpected_in_incident_runs']:>10}   {detected}")  # fmt: skip
    print(f"{'incident':<22} {'paged':>7}   delay median / max")
    for name, f in result["incidents"].items():
        delay = "-" if f["median_delay_min"] is None else f"{f['median_delay_min']:.0f} / {f['max_delay_min']:.0f} min"
        print(f"{NAMES[name]:<22} {f['paged']:>3}/{f['runs']:<3}   {delay}")
    paged = sum(f["paged"] for f in result["incidents"].values())
    total = sum(f["runs"] for f in result["incidents"].values())
    delays = ", ".join(
        f"{NAMES[n]} {f['median_delay_min']:.0f} min"
        for n, f in result["incidents"].items()
        if f["median_delay_min"] is not None
    )
    print(f"headline: {result['clean_runs_with_a_false_page']}/{runs} clean runs with a false page "
          f"({result['clean_runs_with_a_ticket']} with a ticket); incidents paged {paged}/{total}; "
          f"median delay {delays or 'n/a'}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
