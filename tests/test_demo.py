"""`clinotel demo` (today: the simulated hospital through the instrumentation library)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from clinotel.cli import cli
from clinotel.demo.scenario import Scenario, plan


def _run(tmp_path: Path, name: str, seed: int = 3) -> dict[str, object]:
    out = tmp_path / name
    result = CliRunner().invoke(cli, ["demo", "--workflows", "600", "--seed", str(seed), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "workflows" in result.output
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
    assert sum(workflows.values()) == 600
    assert set(workflows) == {"triage", "scheduling"}
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
