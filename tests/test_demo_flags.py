"""The demo's services follow the canary flag: each canary-phase triage workflow evaluates
`triage-model-v4` through the real OpenFeature SDK and flagd provider (file mode) on the demo's
flagd file, and the model follows the flag, also after the kill switch rewrites the file.
(The whole demo's loop is checked in the store by tests/test_demo.py.)"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from clinotel.alerts.actions import DisableFlag, FlagdFile
from clinotel.demo.flagread import FlagReader
from clinotel.demo.flags import write_flagd_file
from clinotel.demo.scenario import (
    BASELINE_MODEL,
    CANARY_MODEL,
    CANARY_SITE,
    FLAG_KEY,
    Scenario,
    WorkflowPlan,
    plan,
    replan,
)
from clinotel.demo.service import _flagged

SCENARIO = Scenario(workflows=400, seed=5, hours=2)


def _canary(site: str) -> WorkflowPlan:
    """A canary-phase triage workflow at `site` that the model decides."""
    return next(
        p
        for p in plan(SCENARIO)
        if p.kind == "triage" and p.phase == "canary" and p.site == site and p.decision["source"] == "model"
    )


@pytest.fixture
def reader(tmp_path: Path) -> Iterator[tuple[FlagReader, Path]]:
    path = write_flagd_file(tmp_path / "flags.flagd.json")
    r = FlagReader(path, FLAG_KEY)
    try:
        r.ready({"site": CANARY_SITE, "workflow_kind": "triage"})
        yield r, path
    finally:
        r.close()


def test_replan_is_the_same_patient_with_the_model_the_flag_chose() -> None:
    p = _canary(CANARY_SITE)
    assert p.decision["model_version"] == CANARY_MODEL
    assert replan(SCENARIO, p, flag_on=True) == p
    off = replan(SCENARIO, p, flag_on=False)
    same = ("index", "offset_ms", "identifier", "site", "cohort", "truth", "truth_after_ms", "queue_ms", "review_ms")
    assert all(getattr(off, f) == getattr(p, f) for f in same)
    assert off.decision["model_version"] == BASELINE_MODEL
    assert off.decision["rollout_cohort"] == "baseline"
    assert off.flag_variant == "off"


def test_the_service_decides_as_the_flag_file_says_and_follows_the_switch(
    reader: tuple[FlagReader, Path],
) -> None:
    flags, path = reader
    north, south = _canary(CANARY_SITE), _canary("south")
    p = _flagged(SCENARIO, north, flags)
    assert (p.decision["model_version"], p.flag_variant, p.flag_reason) == (CANARY_MODEL, "on", "targeting_match")
    q = _flagged(SCENARIO, south, flags)
    assert (q.decision["model_version"], q.flag_variant) == (BASELINE_MODEL, "off")

    outcome = FlagdFile(path).disable(DisableFlag(key=FLAG_KEY, scope={"site": CANARY_SITE}), "kill", dry_run=False)
    assert outcome.result == "applied"
    flags.wait({"site": CANARY_SITE, "workflow_kind": "triage"}, lambda r: r.variant == "off", timeout_s=30)
    p = _flagged(SCENARIO, _canary(CANARY_SITE), flags)
    # from the file's targeting (the switch's rule), not a default: the reason says so
    assert (p.decision["model_version"], p.flag_variant, p.flag_reason) == (BASELINE_MODEL, "off", "targeting_match")
    assert p.decision["rollout_cohort"] == "baseline"
    q = _flagged(SCENARIO, _canary("south"), flags)
    assert (q.decision["model_version"], q.flag_variant) == (BASELINE_MODEL, "off"), "outside the scope: unchanged"


def test_a_flag_the_file_lacks_falls_back_to_the_baseline_and_says_error(tmp_path: Path) -> None:
    path = tmp_path / "flags.flagd.json"
    path.write_text('{"flags": {"other": {"state": "ENABLED", "variants": {"a": true}, "defaultVariant": "a"}}}')
    flags = FlagReader(path, FLAG_KEY)
    try:
        result = flags.wait({"site": CANARY_SITE}, lambda r: r.reason != "", timeout_s=30)
        assert (result.value, result.reason) == (False, "error")
        p = _flagged(SCENARIO, _canary(CANARY_SITE), flags)
        assert (p.decision["model_version"], p.flag_reason) == (BASELINE_MODEL, "error")
    finally:
        flags.close()


@pytest.mark.parametrize("command", ["run abc", "run nan", "run -5", "follow", "drop table", "run 1e999999x"])
def test_the_stepped_service_refuses_a_bad_command_in_one_line(tmp_path: Path, command: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "clinotel.demo.service", "--kind", "scheduling", "--workflows", "10", "--base-ns", "0",
         "--summary", str(tmp_path / "s.json"), "--stepped"],
        input=command + "\n", capture_output=True, text=True, timeout=120, check=False,
        env={"PATH": "/usr/bin:/bin", "CLINOTEL_TENANT": "demo-health", "OTEL_SERVICE_NAME": "t",
             "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "unknown command" in done.stderr
    assert not (tmp_path / "s.json").exists()
