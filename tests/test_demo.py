"""`clinotel demo`: the simulated hospital over real OTLP into the embedded collector, the
dashboards run panel by panel, the report, and the incident alerts fired and paged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from clinotel.alerts.local_alertmanager import find_binary
from clinotel.demo.scenario import Scenario, plan

WORKFLOWS = 2000
HOURS = 6  # 2,000 workflows over six simulated hours: enough per hour for every hourly panel


def _run(tmp_path: Path, name: str, seed: int = 7) -> dict[str, object]:
    out = tmp_path / name
    # a process of its own: the demo opens its own embedded engine (chDB allows one per process)
    done = subprocess.run(
        [sys.executable, "-m", "clinotel.cli", "demo", "--workflows", str(WORKFLOWS), "--hours", str(HOURS),
         "--seed", str(seed), "--out", str(out)],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name not in ("a", "b")) == [], "nothing written outside --out"
    assert "workflows" in done.stdout
    assert (out / "report.html").is_file()
    assert (out / "grafana" / "dashboards" / "clinotel" / "safety.json").is_file()
    summary: dict[str, object] = json.loads((out / "summary.json").read_text())
    return summary


def test_demo_tells_the_story_and_repeats_with_the_same_seed(tmp_path: Path) -> None:
    first = _run(tmp_path, "a")
    second = _run(tmp_path, "b")
    first.pop("elapsed_s")
    second.pop("elapsed_s")
    assert first == second, "the same seed must give the same figures"

    workflows = first["workflows"]
    assert isinstance(workflows, dict)
    assert sum(workflows.values()) == WORKFLOWS
    panels = first["panels"]
    assert isinstance(panels, dict)
    assert panels["failed"] == 0
    assert panels["queries"] > 80
    assert panels["empty"] == 0, "every dashboard panel returns rows (dashboards check --require-rows)"
    fired = first["alerts_fired"]
    assert isinstance(fired, list)
    for incident in ("model_fallback", "canary_kill_under_triage", "fairness_under_triage_language"):
        assert incident in fired, f"the {incident} incident must fire"
    assert first["alert_deliveries"]["page"] >= 3  # type: ignore[index]
    if find_binary() is not None:
        assert first["paged_through"] == "alertmanager"
    assert set(workflows) == {"triage", "scheduling"}
    services = first["services"]
    assert isinstance(services, dict)
    assert set(services) == {"ed-triage-north", "ed-triage-south", "ed-triage-east", "scheduling-1"}
    assert {s["service"] for s in services.values()} == {"ed-triage", "appointment-scheduling"}
    stored = sum(s["spans_stored"] for s in services.values())
    assert stored == first["spans"], "every span a service process exported is stored, once"
    assert first["fallbacks"] == {"model_unavailable": first["fallbacks"]["model_unavailable"]}  # type: ignore[index]
    assert first["fallbacks"]["model_unavailable"] > 0  # type: ignore[index]
    assert first["errors"].get("ingest", 0) > 0, "the EHR timeout incident shows as ingest errors"  # type: ignore[attr-defined]
    assert first["redacted_exception_messages"] > 0, "PHI in EHR error messages is redacted"  # type: ignore[operator]
    assert first["outcomes_joined"] > 0, "late ground truth joins its workflow by pseudonym"  # type: ignore[operator]


def test_plans_are_sliceable_and_deterministic() -> None:
    scenario = Scenario(workflows=200, seed=11)
    whole = [p.identifier for p in plan(scenario)]
    parts = [p.identifier for p in plan(scenario, start=0, stop=120)] + [
        p.identifier for p in plan(scenario, start=120)
    ]
    assert whole == parts
    again = list(plan(scenario))
    assert [(p.kind, p.site, p.decision) for p in again] == [(p.kind, p.site, p.decision) for p in plan(scenario)]
